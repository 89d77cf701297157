//! The async forms work under tokio and under `futures::executor`, need no runtime of their own, and never
//! block an executor thread: on a single-threaded runtime a subscriber task waits for events that another task
//! on the same thread appends (if either blocked the thread, the test would time out instead of passing).

use std::time::Duration;

use annals::{EventData, ExpectedVersion, Filter, Store, StreamAppend, SubscribeFrom, SubscriptionMessage};
use futures::StreamExt;

fn deposit(i: u64) -> EventData {
    EventData::new("Deposited", i.to_le_bytes().to_vec())
}

#[test]
fn on_a_single_threaded_tokio_runtime_a_subscriber_task_follows_appends_of_another_task() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    runtime.block_on(async {
        let mut subscription =
            store.subscribe(SubscribeFrom::Start, Filter::Category("account".into())).unwrap().into_stream();
        let subscriber = tokio::spawn(async move {
            let mut positions = Vec::new();
            while positions.len() < 100 {
                match subscription.next().await {
                    Some(Ok(SubscriptionMessage::Event(event))) => positions.push(event.position()),
                    Some(Ok(_)) => {}
                    other => panic!("{other:?}"),
                }
            }
            positions
        });
        for i in 0..100u64 {
            // Every other append goes to another category, which the subscriber does not see.
            store.append_async("order-1", ExpectedVersion::Any, &[deposit(i)]).await.unwrap();
            let appended = store.append_async("account-1", ExpectedVersion::Any, &[deposit(i)]).await.unwrap();
            assert_eq!(appended.first_offset, i);
            if i % 10 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let positions = tokio::time::timeout(Duration::from_secs(60), subscriber).await.expect("no hang").unwrap();
        assert_eq!(positions, (0..100).map(|i| 2 * i + 1).collect::<Vec<u64>>());
    });
}

#[test]
fn on_a_multi_threaded_tokio_runtime_many_concurrent_async_appends_are_all_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..64u64)
            .map(|task| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut positions = Vec::new();
                    for i in 0..20 {
                        let parts = [
                            StreamAppend {
                                stream: format!("account-{task}"),
                                expected: ExpectedVersion::Any,
                                events: vec![deposit(i)],
                            },
                            StreamAppend {
                                stream: "ledger".into(),
                                expected: ExpectedVersion::Any,
                                events: vec![deposit(i)],
                            },
                        ];
                        let results = store.append_multi_async(&parts).await.unwrap();
                        assert_eq!(results[0].first_offset, i);
                        positions.extend([results[0].first_position, results[1].first_position]);
                    }
                    positions
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(tokio::time::timeout(Duration::from_secs(60), task).await.expect("no hang").unwrap());
        }
        all
    });
    let mut sorted = results.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..64 * 20 * 2).collect::<Vec<u64>>(), "every position given once");
    assert_eq!(store.stream_version("ledger"), Some(64 * 20 - 1));
}

#[test]
fn under_futures_executor_the_stream_and_the_append_future_work_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    futures::executor::block_on(async {
        let refused = store.append_async("", ExpectedVersion::Any, &[deposit(0)]).await;
        assert!(matches!(refused, Err(annals::Error::InvalidStreamName { .. })), "validation errors come as results");
        let conflict = store.append_async("account-1", ExpectedVersion::Exact(3), &[deposit(0)]).await;
        assert!(matches!(conflict, Err(annals::Error::WrongExpectedVersion { .. })));
        for i in 0..10 {
            store.append_async("account-1", ExpectedVersion::Any, &[deposit(i)]).await.unwrap();
        }
        let subscription =
            store.subscribe(SubscribeFrom::Start, Filter::Stream("account-1".into())).unwrap().into_stream();
        let messages: Vec<SubscriptionMessage> = subscription.take(11).map(Result::unwrap).collect().await;
        let offsets: Vec<u64> = messages
            .iter()
            .filter_map(|message| match message {
                SubscriptionMessage::Event(event) => Some(event.offset()),
                _ => None,
            })
            .collect();
        assert_eq!(offsets, (0..10).collect::<Vec<_>>());
        assert!(matches!(messages[10], SubscriptionMessage::CaughtUp));
    });
    // A live stream waits on a waker, with a thread appending meanwhile.
    let mut subscription = store.subscribe(SubscribeFrom::End, Filter::All).unwrap().into_stream();
    let appender = {
        let store = store.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            store.append("account-2", ExpectedVersion::Any, &[deposit(1)]).unwrap();
        })
    };
    futures::executor::block_on(async {
        assert!(matches!(subscription.next().await, Some(Ok(SubscriptionMessage::CaughtUp))));
        assert!(
            matches!(subscription.next().await, Some(Ok(SubscriptionMessage::Event(e))) if e.stream() == "account-2")
        );
    });
    appender.join().unwrap();
    // Closing wakes a waiting task with `Closed`.
    let closer = std::thread::spawn({
        let store = store.clone();
        move || {
            std::thread::sleep(Duration::from_millis(50));
            store.close().unwrap();
        }
    });
    futures::executor::block_on(async {
        assert!(matches!(subscription.next().await, Some(Err(annals::Error::Closed))));
        assert!(subscription.next().await.is_none());
    });
    closer.join().unwrap();
}
