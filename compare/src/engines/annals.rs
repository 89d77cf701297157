//! annals with its default options: `Durability::SyncData` (every append returns after `fdatasync`), 64 MiB
//! segments, group commit. Appends use `ExpectedVersion::Any`, as the library's own benches do: the store
//! assigns the next offset. A batch of single events for different streams is one `append_multi`.
//!
//! W10's subscribers are `Store::subscribe` iterators (blocking: each on its own thread), with `Filter::All`,
//! `Filter::Category` (read through the category index) and `Filter::EventTypes` of one type (through the
//! event-type index).

use std::ops::ControlFlow;
use std::path::Path;

use annals::{
    EventData, ExpectedVersion, Filter, Options, StreamAppend, SubscribeFrom, Subscription, SubscriptionMessage,
};
use uuid::Uuid;

use super::{Delivery, Engine, Follow, FollowFrom, Store, Subscriber, Writer};
use crate::event::Pending;
use crate::Result;

pub struct Annals;

impl Engine for Annals {
    fn name(&self) -> &'static str {
        "annals"
    }

    fn subscribes(&self) -> bool {
        true
    }

    fn open(&self, dir: &Path) -> Result<Box<dyn Store>> {
        Ok(Box::new(AnnalsStore(annals::Store::open_with(dir, Options::default())?)))
    }
}

struct AnnalsStore(annals::Store);

fn event_data(pending: &Pending) -> EventData {
    EventData::new(pending.event.event_type, pending.event.data.clone()).with_id(Uuid::from_bytes(pending.event.id))
}

impl Store for AnnalsStore {
    fn writer(&self) -> Result<Box<dyn Writer + '_>> {
        Ok(Box::new(AnnalsWriter(self.0.clone())))
    }

    /// With `Store::scan`, the borrowed visitor: annals' fastest way to read everything, as each peer uses
    /// its own (every record's CRC is still checked).
    fn scan_all(&self, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let mut count = 0;
        self.0.scan(0, |event| {
            visit(event.data());
            count += 1;
            std::ops::ControlFlow::Continue(())
        })?;
        Ok(count)
    }

    fn read_stream(&self, stream: &str, max_events: u64, visit: &mut dyn FnMut(&[u8])) -> Result<u64> {
        let mut count = 0;
        for event in self.0.read_stream(stream, 0)? {
            visit(event?.data());
            count += 1;
            if count == max_events {
                break;
            }
        }
        Ok(count)
    }

    fn close(self: Box<Self>) -> Result<()> {
        Ok(self.0.close()?)
    }

    /// Subscriptions need nothing prepared: the writer wakes them at every commit.
    fn prepare_subscriptions(&self) -> Result<()> {
        Ok(())
    }

    fn subscribe(&self, filter: Follow, from: FollowFrom) -> Result<Box<dyn Subscriber + '_>> {
        let filter = match filter {
            Follow::All => Filter::All,
            Follow::Category(category) => Filter::Category(category.to_owned()),
            Follow::EventType(event_type) => Filter::EventTypes(vec![event_type.to_owned()]),
        };
        let from = match from {
            FollowFrom::Start => SubscribeFrom::Start,
            FollowFrom::End => SubscribeFrom::End,
        };
        Ok(Box::new(AnnalsSubscriber(self.0.subscribe(from, filter)?)))
    }

    /// The index tables under `<store>/index/` (`*.tbl`; a merge's unfinished `*.tmp` output is not counted).
    /// They hold the stream, category and event-type entries, the sparse position entries and the bloom
    /// filters; the entries of the last segment are in memory until the next roll or close.
    fn index_bytes(&self) -> Result<Option<u64>> {
        let mut bytes = 0;
        for entry in std::fs::read_dir(self.0.dir().join("index"))? {
            let entry = entry?;
            if entry.path().extension().is_some_and(|ext| ext == "tbl") {
                bytes += entry.metadata()?.len();
            }
        }
        Ok(Some(bytes))
    }
}

struct AnnalsWriter(annals::Store);

impl Writer for AnnalsWriter {
    fn append(&mut self, batch: &[Pending]) -> Result<()> {
        if let [pending] = batch {
            self.0.append(&pending.stream, ExpectedVersion::Any, &[event_data(pending)])?;
            return Ok(());
        }
        // Group adjacent events of one stream into one part.
        let mut parts: Vec<StreamAppend> = Vec::new();
        for pending in batch {
            match parts.last_mut() {
                Some(part) if part.stream == pending.stream => part.events.push(event_data(pending)),
                _ => parts.push(StreamAppend {
                    stream: pending.stream.clone(),
                    expected: ExpectedVersion::Any,
                    events: vec![event_data(pending)],
                }),
            }
        }
        self.0.append_multi(&parts)?;
        Ok(())
    }
}

struct AnnalsSubscriber(Subscription);

impl Subscriber for AnnalsSubscriber {
    fn follow(&mut self, visit: &mut dyn FnMut(Delivery<'_>) -> ControlFlow<()>) -> Result<()> {
        for message in self.0.by_ref() {
            let flow = match message? {
                SubscriptionMessage::Event(event) => {
                    std::hint::black_box((
                        event.position(),
                        event.offset(),
                        event.event_type(),
                        event.timestamp_nanos(),
                    ));
                    let id = event.event_id().into_bytes();
                    visit(Delivery::Event { id, stream: event.stream(), data: event.data() })
                }
                SubscriptionMessage::CaughtUp => visit(Delivery::CaughtUp),
                // Progress reports and a fall behind need nothing from this subscriber: it keeps no checkpoint,
                // and the events it fell behind on still come, in order.
                _ => ControlFlow::Continue(()),
            };
            if flow.is_break() {
                return Ok(());
            }
        }
        Err("the annals subscription ended while it was followed".into())
    }
}
