//! How readers wait for commits without polling: the writer calls [`Notifier::notify`] after every publish,
//! which wakes the threads blocked in [`Notifier::wait_past`] and the async tasks whose wakers are registered.
//!
//! No lost wake-up: a waiter checks the committed position while it holds the notifier's lock, and the writer
//! moves that position before it takes the lock to notify. Cost to the writer per group: one uncontended lock,
//! a `notify_all` and the registered wakers (none when nothing waits).

use std::sync::atomic::{AtomicU64, Ordering};
use std::task::Waker;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// What a wait came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Woken {
    /// The committed position is past the one waited on.
    Committed,
    /// The store is closed: nothing will be committed any more.
    Closed,
    /// The deadline passed first.
    TimedOut,
}

#[derive(Default)]
struct State {
    closed: bool,
    /// Registered async waiters, by id (one entry each, replaced when it registers again).
    wakers: Vec<(u64, Waker)>,
    next_id: u64,
}

/// Shared by the writer (which notifies) and every waiting reader.
#[derive(Default)]
pub(crate) struct Notifier {
    state: Mutex<State>,
    changed: Condvar,
}

impl Notifier {
    /// Wakes every waiter: called by the writer after it moved the committed position.
    pub fn notify(&self) {
        let wakers = {
            let mut state = self.state.lock();
            if state.wakers.is_empty() {
                Vec::new()
            } else {
                std::mem::take(&mut state.wakers)
            }
        };
        self.changed.notify_all();
        for (_, waker) in wakers {
            waker.wake();
        }
    }

    /// Wakes every waiter for good: the store is closing (or its writer is gone).
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.notify();
    }

    /// Whether [`close`](Self::close) was called: nothing more will be committed.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// A fresh id for an async waiter.
    pub fn waiter_id(&self) -> u64 {
        let mut state = self.state.lock();
        state.next_id += 1;
        state.next_id
    }

    /// Blocks until `committed` is past `position`, the store closes, or `deadline` passes.
    pub fn wait_past(&self, committed: &AtomicU64, position: u64, deadline: Option<Instant>) -> Woken {
        let mut state = self.state.lock();
        loop {
            if committed.load(Ordering::Acquire) > position {
                return Woken::Committed;
            }
            if state.closed {
                return Woken::Closed;
            }
            match deadline {
                Some(deadline) => {
                    if self.changed.wait_until(&mut state, deadline).timed_out()
                        && committed.load(Ordering::Acquire) <= position
                    {
                        return if state.closed { Woken::Closed } else { Woken::TimedOut };
                    }
                }
                None => self.changed.wait(&mut state),
            }
        }
    }

    /// For async waiters: `Some` if `committed` is already past `position` or the store is closed; otherwise
    /// registers `waker` under `id` (replacing an earlier registration) and returns `None`. The waker is woken
    /// once at the next notification.
    pub fn register_past(&self, committed: &AtomicU64, position: u64, id: u64, waker: &Waker) -> Option<Woken> {
        let mut state = self.state.lock();
        if committed.load(Ordering::Acquire) > position {
            return Some(Woken::Committed);
        }
        if state.closed {
            return Some(Woken::Closed);
        }
        match state.wakers.iter_mut().find(|(registered, _)| *registered == id) {
            Some((_, registered)) => registered.clone_from(waker),
            None => state.wakers.push((id, waker.clone())),
        }
        None
    }

    /// Drops the registration of `id` (a subscription that is dropped while it waits).
    pub fn unregister(&self, id: u64) {
        self.state.lock().wakers.retain(|(registered, _)| *registered != id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn a_waiter_wakes_when_the_position_moves_and_when_the_store_closes() {
        let notifier = Arc::new(Notifier::default());
        let committed = Arc::new(AtomicU64::new(5));
        assert_eq!(notifier.wait_past(&committed, 4, None), Woken::Committed);
        let soon = Some(Instant::now() + Duration::from_millis(20));
        assert_eq!(notifier.wait_past(&committed, 5, soon), Woken::TimedOut);

        let waiter = {
            let (notifier, committed) = (notifier.clone(), committed.clone());
            std::thread::spawn(move || notifier.wait_past(&committed, 5, None))
        };
        committed.store(6, Ordering::Release);
        notifier.notify();
        assert_eq!(waiter.join().unwrap(), Woken::Committed);

        let waiter = {
            let (notifier, committed) = (notifier.clone(), committed.clone());
            std::thread::spawn(move || notifier.wait_past(&committed, 6, None))
        };
        notifier.close();
        assert_eq!(waiter.join().unwrap(), Woken::Closed);
    }

    #[test]
    fn a_registered_waker_is_woken_once_and_replaced_not_duplicated() {
        use std::sync::atomic::AtomicUsize;
        use std::task::Wake;
        struct Count(AtomicUsize);
        impl Wake for Count {
            fn wake(self: Arc<Self>) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let notifier = Notifier::default();
        let committed = AtomicU64::new(1);
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(count.clone());
        let id = notifier.waiter_id();
        assert_eq!(notifier.register_past(&committed, 0, id, &waker), Some(Woken::Committed));
        assert_eq!(notifier.register_past(&committed, 1, id, &waker), None);
        assert_eq!(notifier.register_past(&committed, 1, id, &waker), None);
        notifier.notify();
        notifier.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "one registration, one wake");
        assert_eq!(notifier.register_past(&committed, 1, id, &waker), None);
        notifier.unregister(id);
        notifier.notify();
        assert_eq!(count.0.load(Ordering::SeqCst), 1, "an unregistered waker is not woken");
    }
}
