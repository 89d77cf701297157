//! With the `metrics` and `tracing` features, the figures of `Store::metrics` also reach the `metrics` facade's
//! recorder, and spans for open, recovery, roll, backup and compaction reach the `tracing` subscriber. Both are installed
//! globally (the writer works on its own thread), so this binary holds this one test: no other store's work
//! can reach them.

mod support;

use std::sync::{Arc, Mutex};

use annals::{EventData, ExpectedVersion, Store};

fn event() -> EventData {
    EventData::new("Deposited", vec![1u8; 100])
}

/// Records the names of the spans opened anywhere in the process.
struct SpanNames(Arc<Mutex<Vec<String>>>);

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanNames {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        self.0.lock().unwrap().push(attrs.metadata().name().to_owned());
    }
}

#[test]
fn the_metrics_facade_and_tracing_see_the_same_work() {
    use tracing_subscriber::layer::SubscriberExt;
    let recorder = metrics_util::debugging::DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("the only recorder of this test binary");
    let spans = Arc::new(Mutex::new(Vec::new()));
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(SpanNames(spans.clone())))
        .expect("the only subscriber of this test binary");

    let dir = tempfile::tempdir().unwrap();
    let backups = tempfile::tempdir().unwrap();
    // Compaction by hand only (0), of any hidden share.
    let options = annals::Options { compaction_dead_percent: 0, ..support::small_options(8 << 10) };
    let store = Store::open_with(dir.path(), options).unwrap();
    for i in 0..100u64 {
        store.append(&format!("account-{}", i % 4), ExpectedVersion::Any, &[event()]).unwrap();
    }
    store.backup(backups.path().join("copy")).unwrap();
    store.delete_stream("account-1", ExpectedVersion::Any).unwrap();
    store.flush_index().unwrap();
    store.compact().unwrap();
    let metrics = store.metrics();
    assert!(metrics.compactions > 0 && metrics.bytes_reclaimed > 0, "{metrics:?}");
    store.close().unwrap();

    let counters: std::collections::HashMap<String, u64> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .filter_map(|(key, _, _, value)| match value {
            metrics_util::debugging::DebugValue::Counter(count) => Some((key.key().name().to_owned(), count)),
            _ => None,
        })
        .collect();
    assert_eq!(counters.get("annals_appends_total"), Some(&metrics.appends));
    // The 100 appends and the deletion's metadata event.
    assert_eq!(counters.get("annals_events_written_total"), Some(&101));
    assert_eq!(counters.get("annals_syncs_total"), Some(&metrics.syncs));
    assert_eq!(counters.get("annals_rolls_total"), Some(&metrics.rolls));
    assert_eq!(counters.get("annals_compactions_total"), Some(&metrics.compactions));
    assert_eq!(counters.get("annals_compaction_reclaimed_bytes_total"), Some(&metrics.bytes_reclaimed));
    let spans = spans.lock().unwrap().clone();
    for name in ["annals.open", "annals.recovery", "annals.roll", "annals.backup", "annals.compact"] {
        assert!(spans.iter().any(|span| span == name), "{name} in {spans:?}");
    }
}
