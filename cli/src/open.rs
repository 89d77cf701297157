//! Opening the store every command works on: read-only, with messages that say what is wrong with the path.

use std::path::Path;

use annals::{Error, Options, Store};
use anyhow::{bail, Context};

/// Opens the store in `dir` with [`Store::open_read_only_with`]: no lock, never a byte written, following
/// what its writer (if one runs) makes durable.
///
/// A missing path, a file, and a directory that holds no store each get their own message instead of the
/// engine's `Io` or `NoStore`, because the reader of the message typed the path.
pub fn read_only(dir: &Path, options: Options) -> anyhow::Result<Store> {
    if !dir.exists() {
        bail!("{} does not exist", dir.display());
    }
    if !dir.is_dir() {
        bail!("{} is not a directory (give the store's directory)", dir.display());
    }
    match Store::open_read_only_with(dir, options) {
        Ok(store) => Ok(store),
        Err(Error::NoStore { .. }) => {
            bail!("{} holds no annals store (no segment files in it)", dir.display())
        }
        Err(err) => Err(err).with_context(|| format!("opening the store in {}", dir.display())),
    }
}
