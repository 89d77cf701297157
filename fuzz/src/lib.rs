//! Shared code of the annals fuzz targets (see `README.md`).
//!
//! The targets in `fuzz_targets/` are thin wrappers around [`directory::run`] and [`model::run`], so that the
//! same code also serves the seed generator (`examples/make_seeds.rs`) and can be stepped through without
//! libFuzzer.
//!
//! The byte layouts written here (frames, segment headers, index tables) are re-implemented from
//! `format-spec.md` / the engine's module docs on purpose: the fuzz targets craft files the engine never
//! writes (bad CRCs, impossible positions, tables that do not match the log), which the engine's encoders can not produce.

pub mod compacted;
pub mod directory;
pub mod format;
pub mod model;
pub mod table;

use std::path::PathBuf;

/// A fresh temporary directory, on tmpfs when the machine has one (`/dev/shm`): the store syncs on every
/// append and on open, which costs milliseconds on a disk and nothing on tmpfs. `TMPDIR` wins if set.
pub fn tempdir() -> tempfile::TempDir {
    let base = match std::env::var_os("TMPDIR") {
        Some(dir) => PathBuf::from(dir),
        None if std::path::Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
        None => std::env::temp_dir(),
    };
    tempfile::Builder::new().prefix("annals-fuzz-").tempdir_in(base).expect("a temporary directory")
}
