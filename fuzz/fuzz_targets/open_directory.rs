//! A crafted store directory (segments with valid headers, frames, index.ckpt; see `src/directory.rs`) must
//! open or fail with a typed error, never panic, and read back consistently.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    annals_fuzz::directory::run(data);
});
