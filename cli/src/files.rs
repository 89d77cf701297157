//! The store's files as the file system lists them: how many and how large (for `info`, and for `verify`'s
//! progress bar). Where they are is format-spec §2: segments `*.seg` in the store's directory, index tables
//! `*.tbl` in its `index/`.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;

const SEGMENT_EXTENSION: &str = "seg";
const INDEX_DIR: &str = "index";
const TABLE_EXTENSION: &str = "tbl";

/// Sizes of the files of one directory whose names end in `.{extension}`.
#[derive(Default)]
pub struct Files {
    sizes: Vec<u64>,
}

impl Files {
    /// The segment files of the store in `dir`.
    pub fn segments(dir: &Path) -> anyhow::Result<Files> {
        Files::list(dir, SEGMENT_EXTENSION)
    }

    /// The index table files of the store in `dir` (none while it has no `index/`).
    pub fn index_tables(dir: &Path) -> anyhow::Result<Files> {
        let index = dir.join(INDEX_DIR);
        if !index.is_dir() {
            return Ok(Files::default());
        }
        Files::list(&index, TABLE_EXTENSION)
    }

    fn list(dir: &Path, extension: &str) -> anyhow::Result<Files> {
        let mut sizes = Vec::new();
        for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
            let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
            if entry.path().extension().is_none_or(|ext| ext != extension) {
                continue;
            }
            match entry.metadata() {
                Ok(metadata) if metadata.is_file() => sizes.push(metadata.len()),
                Ok(_) => {}
                // Deleted since the listing (a live writer merges index tables): not there any more.
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(err).with_context(|| format!("reading {}", entry.path().display())),
            }
        }
        Ok(Files { sizes })
    }

    pub fn count(&self) -> usize {
        self.sizes.len()
    }

    pub fn total_bytes(&self) -> u64 {
        self.sizes.iter().sum()
    }

    /// Each distinct file size with how many files have it, smallest first.
    pub fn sizes(&self) -> BTreeMap<u64, usize> {
        let mut sizes = BTreeMap::new();
        for &size in &self.sizes {
            *sizes.entry(size).or_default() += 1;
        }
        sizes
    }
}
