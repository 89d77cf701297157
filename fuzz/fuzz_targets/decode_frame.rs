//! Arbitrary bytes through the frame decoder (must never panic), and the frame encoder's round trip from
//! arbitrary parts. (Index tables have their own target, `decode_table`.)
#![no_main]

use annals::__fuzz;
use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Parts<'a> {
    stream: &'a str,
    event_type: &'a str,
    metadata: &'a [u8],
    data: &'a [u8],
    position: u64,
    offset: u64,
}

fuzz_target!(|bytes: &[u8]| {
    if let Some(len) = __fuzz::decode_frame(bytes) {
        // A frame is at least its header, lies within the buffer, and does not depend on what follows it.
        assert!((88..=bytes.len()).contains(&len), "decoded length {len} of {} bytes", bytes.len());
        assert_eq!(__fuzz::decode_frame(&bytes[..len]), Some(len));
        assert_eq!(__fuzz::decode_frame(&bytes[..len - 1]), None);
    }

    if let Ok(parts) = Parts::arbitrary(&mut Unstructured::new(bytes)) {
        __fuzz::round_trip_frame(
            parts.stream,
            parts.event_type,
            parts.metadata,
            parts.data,
            parts.position,
            parts.offset,
        );
    }
});
