//! One index table file, raw or a valid table with mutations (see `src/table.rs`), through
//! `annals::__fuzz::check_table`: it must never panic, and a valid table must check out.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    annals_fuzz::table::run(data);
});
