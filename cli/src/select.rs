//! The event filters that `dump` and `tail` share, and how they combine: a start (the later of
//! `--from-position` and `--since`), an end in time (`--until`), a category and event types. The category,
//! else the event types, pick the records read, through the index; the rest are checked on each event read.

use std::time::{Duration, UNIX_EPOCH};

use annals::{Filter, RecordedEvent, Store, SubscribeFrom, Subscription, SubscriptionMessage};

/// The filters, as given on the command line. Several filters combine: an event is shown if it passes all.
#[derive(clap::Args)]
pub struct EventFilter {
    /// Start at this global position (the first event is at 0).
    #[arg(long, value_name = "P")]
    from_position: Option<u64>,

    /// Only events committed at or after TIME (RFC 3339, like 2026-05-01T12:00:00Z or
    /// 2026-05-01T14:00:00.5+02:00). Found through the index's time entries, not by a scan.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    since: Option<jiff::Timestamp>,

    /// Only events committed at or before TIME (RFC 3339). Commit times never go backwards along positions,
    /// so the output stops at the first event committed later.
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    until: Option<jiff::Timestamp>,

    /// Only events of streams of category C (`account` holds `account-42`); read through the category index.
    #[arg(long, value_name = "C")]
    category: Option<String>,

    /// Only events of type T; give it again for several types. Read through the event-type index, unless
    /// --category is given too (then checked on each event of the category).
    #[arg(long = "type", value_name = "T")]
    event_types: Vec<String>,
}

/// A time given on the command line, as RFC 3339 with an offset (`Z` for UTC).
fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse().map_err(|err| format!("{err} (expected RFC 3339 with an offset, like 2026-05-01T12:00:00Z)"))
}

/// The filters resolved against one store: positions instead of a start time.
pub struct Selection {
    /// The first position to read.
    pub from: u64,
    until_nanos: Option<u64>,
    category: Option<String>,
    event_types: Vec<String>,
}

impl EventFilter {
    /// Resolves the filters against `store`: `--since` becomes the first position committed at or after it
    /// ([`Store::position_at`]), or the committed end when every event is older.
    pub fn select(self, store: &Store) -> Selection {
        let mut from = self.from_position.unwrap_or(0);
        if let Some(since) = self.since {
            let committed_end = store.head_position().map_or(0, |head| head + 1);
            from = from.max(
                store.position_at(UNIX_EPOCH + Duration::from_nanos(nanos_since_epoch(since))).unwrap_or(committed_end),
            );
        }
        Selection {
            from,
            until_nanos: self.until.map(nanos_since_epoch),
            category: self.category,
            event_types: self.event_types,
        }
    }
}

/// Nanoseconds since the Unix epoch, as commit times are stored: 0 before it, the largest value after the
/// year 2554.
fn nanos_since_epoch(at: jiff::Timestamp) -> u64 {
    u64::try_from(at.as_nanosecond().max(0)).unwrap_or(u64::MAX)
}

impl Selection {
    /// The committed events from [`from`](Self::from) on that pass every filter, in position order, ending
    /// before the first event committed after `--until`. With no category or type, the whole log (annals' own
    /// `$` streams included); else a subscription's history, which reads through the category or event-type
    /// index (several types merged in position order).
    pub fn history(&self, store: &Store) -> annals::Result<Box<dyn Iterator<Item = annals::Result<RecordedEvent>>>> {
        let read: Box<dyn Iterator<Item = annals::Result<RecordedEvent>>> = match self.subscription_filter() {
            // A subscription to `All` leaves out the `$` streams; a dump shows the log as it is.
            Filter::All => Box::new(store.read_all(self.from)?),
            filter => Box::new(history_of(store.subscribe(self.subscribe_from(), filter)?)),
        };
        let until = self.until_nanos;
        let types = self.event_types.clone();
        Ok(Box::new(
            read.take_while(move |event| event.as_ref().map_or(true, |event| !is_after(event, until)))
                .filter(move |event| event.as_ref().map_or(true, |event| has_type(event, &types))),
        ))
    }

    /// Where a subscription starts to deliver from [`from`](Self::from) on.
    pub fn subscribe_from(&self) -> SubscribeFrom {
        match self.from.checked_sub(1) {
            None => SubscribeFrom::Start,
            Some(before) => SubscribeFrom::After(before),
        }
    }

    /// The subscription filter that reads what this selection wants through an index where one serves;
    /// [`passes`](Self::passes) checks the rest.
    pub fn subscription_filter(&self) -> Filter {
        match (&self.category, &self.event_types) {
            (Some(category), _) => Filter::Category(category.clone()),
            (None, types) if !types.is_empty() => Filter::EventTypes(types.clone()),
            (None, _) => Filter::All,
        }
    }

    /// Whether `event`, delivered through [`subscription_filter`](Self::subscription_filter), is one to show.
    pub fn passes(&self, event: &RecordedEvent) -> bool {
        has_type(event, &self.event_types)
    }

    /// Whether `event` was committed after `--until`: it and every later event are out.
    pub fn is_past_until(&self, event: &RecordedEvent) -> bool {
        is_after(event, self.until_nanos)
    }
}

/// The events a subscription delivers before it says it has caught up: the history of its filter.
fn history_of(subscription: Subscription) -> impl Iterator<Item = annals::Result<RecordedEvent>> {
    subscription
        .map_while(|message| match message {
            Ok(SubscriptionMessage::Event(event)) => Some(Some(Ok(event))),
            Ok(SubscriptionMessage::CaughtUp) => None,
            // Progress through skipped positions, or a backlog to read: no event.
            Ok(_) => Some(None),
            Err(err) => Some(Some(Err(err))),
        })
        .flatten()
}

fn has_type(event: &RecordedEvent, event_types: &[String]) -> bool {
    event_types.is_empty() || event_types.iter().any(|event_type| event_type == event.event_type())
}

fn is_after(event: &RecordedEvent, until_nanos: Option<u64>) -> bool {
    until_nanos.is_some_and(|until| event.timestamp_nanos() > until)
}
