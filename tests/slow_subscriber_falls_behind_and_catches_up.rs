//! A slow subscriber under 16 durable writers (W2's shape) never slows them down or makes anything buffer for
//! it: it says `FellBehind` once its backlog passes `FALL_BEHIND_POSITIONS`, reads the backlog from the log at
//! its own pace, and says `CaughtUp` when it has read everything, with every event once and in order.
//!
//! Memory is measured with a counting global allocator: while the subscriber reads a backlog of tens of
//! thousands of events (the writers stopped), the live heap grows by less than 1 MiB. A subscription that
//! queued its backlog, even as references into the mapping, would hold about 100 bytes per event.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

use annals::{EventData, ExpectedVersion, Filter, Store, SubscribeFrom, SubscriptionMessage, FALL_BEHIND_POSITIONS};

struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is forwarded to the system allocator unchanged; the counters only observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's layout, as `GlobalAlloc::alloc` requires.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            let live = LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator with `layout`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            let delta = new_size as isize - layout.size() as isize;
            let live = LIVE.fetch_add(delta, Ordering::Relaxed) + delta;
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Checks one message read while behind: events come once and in order.
fn check(message: SubscriptionMessage, next_position: &mut u64) {
    match message {
        SubscriptionMessage::Event(event) => {
            assert_eq!(event.position(), *next_position, "every event once, in order");
            *next_position += 1;
        }
        SubscriptionMessage::Checkpoint(_) => {}
        other => panic!("unexpected while behind: {other:?}"),
    }
}

const WRITERS: usize = 16;
const EVENTS_PER_WRITER: usize = 2_500;

/// 16 writers append `EVENTS_PER_WRITER` events each, from their own threads.
fn spawn_writers(store: &Store, wave: usize) -> Vec<std::thread::JoinHandle<()>> {
    (0..WRITERS)
        .map(|writer| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..EVENTS_PER_WRITER {
                    let payload = vec![writer as u8; 100 + i % 50];
                    let stream = format!("account-{wave}-{writer}-{}", i % 7);
                    store.append(&stream, ExpectedVersion::Any, &[EventData::new("D", payload)]).unwrap();
                }
            })
        })
        .collect()
}

#[test]
fn a_slow_subscriber_falls_behind_reads_its_backlog_in_bounded_memory_and_catches_up() {
    let dir = tempfile::tempdir().unwrap();
    let store =
        Store::open_with(dir.path(), annals::Options { segment_size_bytes: 1 << 20, ..Default::default() }).unwrap();
    let mut subscription = store.subscribe(SubscribeFrom::Start, Filter::All).unwrap();
    assert!(matches!(subscription.next(), Some(Ok(SubscriptionMessage::CaughtUp))));
    let wave = (WRITERS * EVENTS_PER_WRITER) as u64;

    // Wave 1: the subscriber reads while the writers run, at 1 ms per event, far below their rate, until it
    // falls behind; then it reads the rest and catches up.
    let writers = spawn_writers(&store, 1);
    let mut next_position = 0u64;
    loop {
        match subscription.next().expect("live").unwrap() {
            SubscriptionMessage::FellBehind => break,
            message => check(message, &mut next_position),
        }
        std::thread::sleep(Duration::from_millis(1));
        assert!(next_position < wave, "the writers finished before the subscriber fell behind");
    }
    for writer in writers {
        writer.join().unwrap();
    }
    loop {
        match subscription.next().expect("live").unwrap() {
            SubscriptionMessage::CaughtUp => break,
            message => check(message, &mut next_position),
        }
    }
    assert_eq!(next_position, wave, "caught up once every event was read");

    // Wave 2: the subscriber stalls while the writers append a whole wave, then reads the backlog. What the
    // heap gains from here is the subscriber's (the writers are done).
    for writer in spawn_writers(&store, 2) {
        writer.join().unwrap();
    }
    let before = LIVE.load(Ordering::SeqCst);
    PEAK.store(before, Ordering::SeqCst);
    assert!(matches!(subscription.next(), Some(Ok(SubscriptionMessage::FellBehind))));
    loop {
        match subscription.next().expect("live").unwrap() {
            SubscriptionMessage::CaughtUp => break,
            message => check(message, &mut next_position),
        }
    }
    let growth = PEAK.load(Ordering::SeqCst) - before;
    assert_eq!(next_position, 2 * wave, "caught up once every event was read");
    assert!(growth < 1 << 20, "reading a backlog of {wave} events grew the heap by {growth} bytes");
    println!("backlog of {wave} events read with {growth} bytes of heap growth; backlog > {FALL_BEHIND_POSITIONS}");
}
