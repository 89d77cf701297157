//! `Store::metrics` counts what the store did (appends, events, bytes, syncs, groups, rolls, latencies, head
//! cache hits) exactly, and reports each live subscription's lag. (The `metrics` and `tracing` features have
//! their own test binary, `metrics_facade_and_tracing.rs`: their recorder and subscriber are global.)

mod support;

use annals::{EventData, ExpectedVersion, Filter, Store, StreamAppend, SubscribeFrom, SubscriptionMessage};

fn event() -> EventData {
    EventData::new("Deposited", vec![1u8; 100])
}

#[test]
fn metrics_count_what_the_store_did() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_with(dir.path(), support::small_options(8 << 10)).unwrap();
    let fresh = store.metrics();
    assert_eq!((fresh.appends, fresh.events_written, fresh.syncs, fresh.rolls), (0, 0, 0, 0));
    for i in 0..200u64 {
        store.append(&format!("account-{}", i % 4), ExpectedVersion::Any, &[event(), event()]).unwrap();
    }
    let parts = [
        StreamAppend { stream: "a".into(), expected: ExpectedVersion::Any, events: vec![event()] },
        StreamAppend { stream: "b".into(), expected: ExpectedVersion::Any, events: vec![event(), event()] },
    ];
    store.append_multi(&parts).unwrap();
    // Refused: answered, nothing written.
    assert!(store.append("a", ExpectedVersion::NoStream, &[event()]).is_err());

    let metrics = store.metrics();
    assert_eq!(metrics.appends, 201, "committed appends");
    assert_eq!(metrics.events_written, 403);
    let segments = support::segment_paths(dir.path()).len() as u64;
    assert_eq!(metrics.rolls, segments - 1);
    // One thread, durable appends: each append is its own group, synced once; a roll finds the group before
    // it synced already, and the refused append's group wrote nothing and syncs nothing.
    assert_eq!(metrics.groups, 202, "every answered group, the refused one included");
    assert_eq!(metrics.syncs, 201);
    assert_eq!(metrics.group_events.count(), 202);
    assert_eq!(metrics.group_events.sum, 403);
    assert_eq!(metrics.append_latency_micros.count(), 202, "every answered append");
    assert_eq!(metrics.sync_latency_micros.count(), metrics.syncs);
    assert!(metrics.bytes_written >= 403 * 188, "{}", metrics.bytes_written);
    assert!(metrics.head_cache_hits + metrics.head_cache_misses > 0);
    assert!(metrics.segments_mapped >= 1 && metrics.open_files == 2);
    assert!(metrics.append_latency_micros.quantile(0.5) <= metrics.append_latency_micros.quantile(1.0));
    store.close().unwrap();
}

#[test]
fn each_live_subscription_reports_its_lag() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for _ in 0..10 {
        store.append("account-1", ExpectedVersion::Any, &[event()]).unwrap();
    }
    let mut behind = store.subscribe(SubscribeFrom::Start, Filter::Category("account".into())).unwrap();
    let durable = store.subscribe_durable("audit", Filter::All).unwrap();
    let lags = store.metrics().subscriptions;
    assert_eq!(lags.len(), 2);
    assert!(lags.iter().all(|lag| lag.lag == 10 && lag.position == 0), "{lags:?}");
    assert!(lags.iter().any(|lag| lag.name.as_deref() == Some("audit")));
    for _ in 0..4 {
        assert!(matches!(behind.next(), Some(Ok(SubscriptionMessage::Event(_)))));
    }
    let lag = store.metrics().subscriptions.into_iter().find(|lag| lag.name.is_none()).unwrap();
    assert_eq!((lag.position, lag.lag), (4, 6));
    assert!(lag.filter.contains("Category"), "{}", lag.filter);
    drop(behind);
    drop(durable);
    assert!(store.metrics().subscriptions.is_empty(), "dropped subscriptions leave the list");
}
