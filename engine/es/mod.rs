//! The event-sourcing layer: typed events with a name and a schema version, upcasters that turn old versions
//! into the current one on read, aggregates rebuilt from their events, and a repository that loads them from
//! the latest snapshot plus the tail of their stream and saves new events with optimistic concurrency.
//!
//! Everything here is built on the public [`Store`] API and the snapshot files; nothing knows the log's bytes.
//!
//! # How a typed event is stored
//!
//! - event type: the event's [`name`](Event::name), followed by `.v{n}` when its schema version `n` is 2 or
//!   more (`MoneyDeposited`, `MoneyDeposited.v2`). A type that never changed carries no suffix, and a stream
//!   written before its type had versions reads as version 1. [`split_event_type`] parses it.
//! - codec id: the [`Codec`] that wrote the payload ([`EventData::with_codec`]), so a reader decodes with that
//!   codec, whatever it writes with.
//! - payload: the whole event value in that codec.
//!
//! A snapshot's state is the codec id (one byte) followed by the aggregate's state in that codec, written with
//! the aggregate's [`SNAPSHOT_VERSION`](Aggregate::SNAPSHOT_VERSION) as the snapshot's schema version.

mod aggregate;
pub(crate) mod codec;
mod erasure;
mod event;
mod projection;
mod repository;

pub use self::aggregate::{Aggregate, Loaded, SnapshotPolicy};
pub use self::erasure::{
    Erasure, Personal, ERASURE_EVENT_TYPE, ERASURE_STREAM, KEYS_DIR, KEY_FILE, KEY_FILE_FORMAT_VERSION,
    SUBJECT_BYTES_MAX,
};
pub use self::event::{split_event_type, Event, EventCodec, EventError, Upcasters};
pub use self::projection::{
    Projection, ProjectionOptions, ProjectionRunner, PROJECTION_EVENT_TYPE, PROJECTION_STREAM_PREFIX,
};
pub use self::repository::{Repository, RepositoryError, Saved};

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};

    use super::event::{stored_event_type, variant_name};
    use super::*;

    #[derive(Serialize, Deserialize)]
    struct Plain {
        a: u8,
    }

    #[derive(Serialize, Deserialize)]
    struct Newtype(u8);

    #[derive(Serialize, Deserialize)]
    enum Every {
        Unit,
        Newtype(u8),
        Tuple(u8, u8),
        Struct {
            a: u8,
        },
        #[serde(rename = "Renamed")]
        Other,
    }

    #[test]
    fn names_come_from_serde() {
        assert_eq!(variant_name::of(&Plain { a: 1 }), Some("Plain"));
        assert_eq!(variant_name::of(&Newtype(1)), Some("Newtype"));
        assert_eq!(variant_name::of(&Every::Unit), Some("Unit"));
        assert_eq!(variant_name::of(&Every::Newtype(1)), Some("Newtype"));
        assert_eq!(variant_name::of(&Every::Tuple(1, 2)), Some("Tuple"));
        assert_eq!(variant_name::of(&Every::Struct { a: 1 }), Some("Struct"));
        assert_eq!(variant_name::of(&Every::Other), Some("Renamed"));
        assert_eq!(variant_name::of(&7u8), None);
        assert_eq!(variant_name::of("text"), None);
    }

    #[test]
    fn stored_event_types_round_trip() {
        for (name, version) in [("A", 1), ("MoneyDeposited", 2), ("x.v", 17), ("a.v2.b", u32::MAX)] {
            let stored = stored_event_type(name, version);
            assert_eq!(split_event_type(&stored), (name, version), "{stored}");
        }
        for odd in ["A.v", "A.v0", "A.v02", "A.v1", "A.vx", "A.v99999999999"] {
            assert_eq!(split_event_type(odd), (odd, 1));
        }
    }

    impl Event for Every {}

    #[derive(Serialize, Deserialize, Default)]
    struct Total(i64);

    impl Aggregate for Total {
        type Event = Every;
        type Error = String;
        const CATEGORY: &'static str = "total";
        fn apply(&mut self, _: &Every) {
            self.0 += 1;
        }
    }

    #[test]
    fn the_typed_layer_can_be_shared_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<Repository<Total>>();
        send_sync::<EventCodec<Every>>();
        send_sync::<Upcasters<Every>>();
        send_sync::<crate::Snapshot>();
        send_sync::<Erasure>();
        send_sync::<Personal<String>>();
    }

    #[test]
    fn the_policy_snapshots_when_a_multiple_is_crossed() {
        let policy = SnapshotPolicy::every(10);
        assert!(!policy.due(0, 9));
        assert!(policy.due(9, 10));
        assert!(policy.due(5, 25));
        assert!(!policy.due(10, 19));
        assert!(!SnapshotPolicy::NEVER.due(0, 1_000));
    }
}
