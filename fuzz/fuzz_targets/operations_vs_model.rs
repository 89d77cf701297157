//! Appends, reads, reopens and tail damage against the real store and an in-memory model (see
//! `src/model.rs`): every result must match the model.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(input) = annals_fuzz::model::decode(data) {
        annals_fuzz::model::run(&input);
    }
});
