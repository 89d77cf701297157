//! What a store has done and where it stands: counters and histograms kept with relaxed atomics on the paths
//! that do the work (a few nanoseconds each), read with [`Store::metrics`](crate::Store::metrics) as a plain
//! [`Metrics`] value. With the `metrics` feature the same figures also go to the `metrics` facade (so that any
//! exporter, Prometheus included, works unchanged).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

/// Buckets of a histogram: bucket `i` counts values below `2^i` (and at least `2^(i-1)`); the last one
/// everything larger.
const BUCKETS: usize = 40;

/// A histogram of values (microseconds, or events per group) in powers of two.
#[derive(Debug)]
pub(crate) struct AtomicHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum: AtomicU64,
}

impl Default for AtomicHistogram {
    fn default() -> Self {
        AtomicHistogram { buckets: std::array::from_fn(|_| AtomicU64::new(0)), sum: AtomicU64::new(0) }
    }
}

impl AtomicHistogram {
    pub fn record(&self, value: u64) {
        let bucket = (u64::BITS - value.leading_zeros()) as usize;
        self.buckets[bucket.min(BUCKETS - 1)].fetch_add(1, Ordering::Relaxed);
        self.sum.fetch_add(value, Ordering::Relaxed);
    }

    pub fn record_duration(&self, elapsed: Duration) {
        self.record(u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX));
    }

    fn snapshot(&self) -> Histogram {
        let counts: Vec<u64> = self.buckets.iter().map(|bucket| bucket.load(Ordering::Relaxed)).collect();
        Histogram { counts, sum: self.sum.load(Ordering::Relaxed) }
    }
}

/// A histogram as read: how many values fell in each power-of-two bucket.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let store = annals::Store::open(dir.path()).unwrap();
/// store.append("s", annals::ExpectedVersion::Any, &[annals::EventData::new("E", &b"x"[..])]).unwrap();
/// let latency = store.metrics().append_latency_micros;
/// assert_eq!(latency.count(), 1);
/// assert!(latency.quantile(0.99) >= latency.quantile(0.5));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Histogram {
    /// `counts[i]`: values from `2^(i-1)` (0 for `i = 0`) to below `2^i`; the last bucket holds everything
    /// larger.
    pub counts: Vec<u64>,
    /// The sum of all values.
    pub sum: u64,
}

impl Histogram {
    /// How many values were recorded.
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// An upper bound of the `q` quantile (0.0 ..= 1.0): the top of the bucket it falls in; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return if bucket == self.counts.len() - 1 { u64::MAX } else { (1u64 << bucket) - 1 };
            }
        }
        u64::MAX
    }

    /// The mean value; 0 when empty.
    pub fn mean(&self) -> u64 {
        self.sum.checked_div(self.count()).unwrap_or(0)
    }
}

/// The counters of one store, shared by the writer, the index and the readers.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub appends: AtomicU64,
    pub events: AtomicU64,
    pub bytes: AtomicU64,
    pub syncs: AtomicU64,
    pub groups: AtomicU64,
    pub rolls: AtomicU64,
    pub compactions: AtomicU64,
    pub compacted_bytes: AtomicU64,
    pub group_events: AtomicHistogram,
    pub sync_latency: AtomicHistogram,
    pub append_latency: AtomicHistogram,
    pub subscriptions: Mutex<Vec<Weak<SubscriptionProgress>>>,
}

/// What a live subscription publishes for [`Metrics::subscriptions`].
#[derive(Debug)]
pub(crate) struct SubscriptionProgress {
    pub filter: String,
    pub name: Option<String>,
    pub position: AtomicU64,
}

impl Stats {
    /// Registers a subscription; it leaves the list when its `Arc` is dropped.
    pub fn register(&self, filter: String, name: Option<String>, position: u64) -> Arc<SubscriptionProgress> {
        let progress = Arc::new(SubscriptionProgress { filter, name, position: AtomicU64::new(position) });
        let mut subscriptions = self.subscriptions.lock();
        subscriptions.retain(|weak| weak.strong_count() > 0);
        subscriptions.push(Arc::downgrade(&progress));
        progress
    }

    /// One committed group: its transactions, events and bytes.
    pub fn group(&self, transactions: u64, events: u64, bytes: u64) {
        self.appends.fetch_add(transactions, Ordering::Relaxed);
        self.events.fetch_add(events, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.groups.fetch_add(1, Ordering::Relaxed);
        self.group_events.record(events);
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("annals_appends_total").increment(transactions);
            metrics::counter!("annals_events_written_total").increment(events);
            metrics::counter!("annals_bytes_written_total").increment(bytes);
            metrics::histogram!("annals_group_events").record(events as f64);
        }
    }

    pub fn sync(&self, elapsed: Duration) {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.sync_latency.record_duration(elapsed);
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("annals_syncs_total").increment(1);
            metrics::histogram!("annals_sync_seconds").record(elapsed.as_secs_f64());
        }
    }

    pub fn append_answered(&self, elapsed: Duration) {
        self.append_latency.record_duration(elapsed);
        #[cfg(feature = "metrics")]
        metrics::histogram!("annals_append_seconds").record(elapsed.as_secs_f64());
    }

    pub fn roll(&self) {
        self.rolls.fetch_add(1, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        metrics::counter!("annals_rolls_total").increment(1);
    }

    pub fn compacted(&self, bytes_reclaimed: u64) {
        self.compactions.fetch_add(1, Ordering::Relaxed);
        self.compacted_bytes.fetch_add(bytes_reclaimed, Ordering::Relaxed);
        #[cfg(feature = "metrics")]
        {
            metrics::counter!("annals_compactions_total").increment(1);
            metrics::counter!("annals_compaction_reclaimed_bytes_total").increment(bytes_reclaimed);
        }
    }

    pub fn snapshot(&self, committed: u64, gauges: Gauges) -> Metrics {
        let subscriptions = self
            .subscriptions
            .lock()
            .iter()
            .filter_map(Weak::upgrade)
            .map(|progress| {
                let position = progress.position.load(Ordering::Relaxed);
                SubscriptionLag {
                    filter: progress.filter.clone(),
                    name: progress.name.clone(),
                    position,
                    lag: committed.saturating_sub(position),
                }
            })
            .collect();
        #[cfg(feature = "metrics")]
        {
            metrics::gauge!("annals_segments_mapped").set(gauges.segments_mapped as f64);
            metrics::gauge!("annals_index_tables").set(gauges.index_tables as f64);
        }
        Metrics {
            appends: self.appends.load(Ordering::Relaxed),
            events_written: self.events.load(Ordering::Relaxed),
            bytes_written: self.bytes.load(Ordering::Relaxed),
            syncs: self.syncs.load(Ordering::Relaxed),
            groups: self.groups.load(Ordering::Relaxed),
            rolls: self.rolls.load(Ordering::Relaxed),
            compactions: self.compactions.load(Ordering::Relaxed),
            bytes_reclaimed: self.compacted_bytes.load(Ordering::Relaxed),
            group_events: self.group_events.snapshot(),
            sync_latency_micros: self.sync_latency.snapshot(),
            append_latency_micros: self.append_latency.snapshot(),
            segments_mapped: gauges.segments_mapped,
            index_tables: gauges.index_tables,
            open_files: gauges.open_files,
            head_cache_hits: gauges.head_cache_hits,
            head_cache_misses: gauges.head_cache_misses,
            subscriptions,
        }
    }
}

/// Figures read from the parts of the store at the moment of the snapshot.
pub(crate) struct Gauges {
    pub segments_mapped: usize,
    pub index_tables: usize,
    pub open_files: usize,
    pub head_cache_hits: u64,
    pub head_cache_misses: u64,
}

/// A snapshot of a store's metrics, from [`Store::metrics`](crate::Store::metrics). Counters count since the
/// store was opened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// Committed appends (`append` and `append_multi` calls that wrote).
    pub appends: u64,
    /// Events written.
    pub events_written: u64,
    /// Bytes written to segments (frames and their padding).
    pub bytes_written: u64,
    /// `fdatasync` calls on segments.
    pub syncs: u64,
    /// Groups committed (each one write, and under `SyncData` one sync).
    pub groups: u64,
    /// Segment rolls.
    pub rolls: u64,
    /// Segments compaction rewrote to reclaim the space of events their streams' lifecycles hide.
    pub compactions: u64,
    /// Bytes of segment files compaction gave back (old sizes minus new ones).
    pub bytes_reclaimed: u64,
    /// Events per group.
    pub group_events: Histogram,
    /// `fdatasync` latency, in microseconds.
    pub sync_latency_micros: Histogram,
    /// Latency of appends, from the call until the writer answered, in microseconds.
    pub append_latency_micros: Histogram,
    /// Segments mapped now.
    pub segments_mapped: usize,
    /// Index tables in use now.
    pub index_tables: usize,
    /// File descriptors the store holds open now (the lock, the active segment, a spare being prepared).
    pub open_files: usize,
    /// Stream heads the writer found in the head cache.
    pub head_cache_hits: u64,
    /// Stream heads the writer had to look up in the index tables.
    pub head_cache_misses: u64,
    /// Each live subscription and how far behind the committed end it is.
    pub subscriptions: Vec<SubscriptionLag>,
}

/// One live subscription's progress.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubscriptionLag {
    /// Its filter, as `Debug` prints it.
    pub filter: String,
    /// Its name if it is durable.
    pub name: Option<String>,
    /// Every matching event below this position has been delivered.
    pub position: u64,
    /// Committed positions it has not read yet.
    pub lag: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_power_of_two_buckets() {
        let histogram = AtomicHistogram::default();
        for value in [0, 1, 2, 3, 100, 1_000, u64::MAX] {
            histogram.record(value);
        }
        let snapshot = histogram.snapshot();
        assert_eq!(snapshot.count(), 7);
        assert_eq!(snapshot.quantile(0.0), 0);
        assert_eq!(snapshot.quantile(0.25), 1, "the 2nd value, 1, lies in [1, 2)");
        assert_eq!(snapshot.quantile(0.5), 3, "the 4th value, 3, lies in [2, 4)");
        assert_eq!(snapshot.quantile(0.7), 127, "100 lies in [64, 128)");
        assert_eq!(snapshot.quantile(1.0), u64::MAX);
        assert_eq!(Histogram { counts: vec![0; BUCKETS], sum: 0 }.quantile(0.5), 0);
    }
}
