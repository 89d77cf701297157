//! One module per command: its arguments (`Args`, with the `--help` text) and `run`.

pub mod backup;
pub mod dump;
pub mod info;
pub mod read;
pub mod streams;
pub mod tail;
pub mod verify;
