//! The standard event of `WORKLOADS.md`: stream names `account-{n}`, type `MoneyDeposited`, a fresh 256-byte
//! incompressible payload and a fresh random 16-byte id, empty metadata.
//!
//! Every random byte comes from a `fastrand::Rng` with a fixed seed, so every engine gets the same events and
//! two runs append the same events. The seed is the one the library's own benches use.

use bytes::Bytes;

/// The seed of every generator; a workload that needs several streams of randomness derives seeds from it.
pub const SEED: u64 = 0x616e_6e61_6c73; // "annals"
/// Event type of every event.
pub const EVENT_TYPE: &str = "MoneyDeposited";
/// Payload bytes of every event.
pub const PAYLOAD_BYTES: usize = 256;

/// The name of stream `n`.
pub fn stream_name(n: u64) -> String {
    format!("account-{n}")
}

/// The name of W9's stream `n`: `order-{n:012}`.
pub fn order_name(n: u64) -> String {
    format!("order-{n:012}")
}

/// One event, before an engine stores it. The commit time is taken by the engine's adapter at append.
#[derive(Debug, Clone)]
pub struct Event {
    pub id: [u8; 16],
    /// [`EVENT_TYPE`] in every workload but W10, which mixes types so that a type filter has something to skip.
    pub event_type: &'static str,
    pub data: Bytes,
}

/// One event bound for a stream. A batch of these is one atomic, durable append; the workloads never put two
/// events of the same stream in one batch unless they are adjacent.
#[derive(Debug, Clone)]
pub struct Pending {
    pub stream: String,
    pub event: Event,
}

/// Makes standard events.
pub struct EventSource {
    rng: fastrand::Rng,
}

impl EventSource {
    pub fn new(seed: u64) -> Self {
        EventSource { rng: fastrand::Rng::with_seed(seed) }
    }

    pub fn event(&mut self) -> Event {
        self.event_of(PAYLOAD_BYTES)
    }

    /// An event with a payload of `bytes` random bytes (W9's 100-byte events and 512 KiB lone appends).
    pub fn event_of(&mut self, bytes: usize) -> Event {
        let mut payload = vec![0u8; bytes];
        self.rng.fill(&mut payload);
        Event { id: self.rng.u128(..).to_be_bytes(), event_type: EVENT_TYPE, data: Bytes::from(payload) }
    }

    pub fn pending(&mut self, stream: u64) -> Pending {
        Pending { stream: stream_name(stream), event: self.event() }
    }
}

/// Nanoseconds since the Unix epoch: the commit time the peers' adapters store in `ts`.
pub fn now_nanos() -> i64 {
    let since = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("the clock is after 1970");
    i64::try_from(since.as_nanos()).expect("nanoseconds since 1970 fit in i64 until 2262")
}

/// Touches every byte of a payload (W4 reads every byte, not just the pointer).
pub fn touch(data: &[u8]) -> u64 {
    data.iter().map(|&byte| u64::from(byte)).sum()
}
