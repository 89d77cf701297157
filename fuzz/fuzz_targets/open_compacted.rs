//! The frozen compacted store (`tests/fixtures/log-v2/compacted`) damaged by a little program (see
//! `src/compacted.rs`): opening it and reading everything must never panic or yield an event it never held.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    annals_fuzz::compacted::run(data);
});
