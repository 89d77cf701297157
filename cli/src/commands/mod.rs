//! One module per command: its arguments (`Args`, with the `--help` text) and `run`.

pub mod info;
pub mod verify;
