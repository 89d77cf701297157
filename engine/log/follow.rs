//! Read-only opening: a store's files read by a process (or a `Store` in this one) that does not hold the
//! directory's lock, while one writer may be appending.
//!
//! Nothing here writes a byte, creates or deletes a file, or takes a lock, so a read-only opener can neither
//! damage the store nor keep its writer from opening. It shows only what the writer has made durable: the
//! position in the writer's `HEAD` file ([`super::head`]); a store with no `HEAD` (last written by an older
//! build, so not being written by this one) shows every complete transaction. The index is the writer's
//! tables as they stand, plus memtables replayed from the log after them; following the writer replays what
//! it syncs next, and adopts the tables it writes at its rolls so that memory stays bounded.

use std::path::Path;
use std::sync::Arc;

use super::head::HeadReader;
use super::io::Io;
use super::recovery::{scan, RecoveryReport, Tail};
use super::segment::{self, locator, split_locator, PreadWindow, SEGMENT_HEADER_LEN};
use super::Log;
use crate::error::{Error, IoContext, Result};
use crate::index::{at_least_one, Access, Index};
use crate::Options;

/// Replays what a writer makes durable into a read-only index.
pub(crate) struct Follower {
    log: Arc<Log>,
    index: Arc<Index>,
    io: Io,
    head: HeadReader,
    /// Where the next record is: segment ordinal and byte offset.
    ordinal: u32,
    at: usize,
    tail: Tail,
}

impl Follower {
    /// Opens the store in `dir` read-only and replays the log up to the durable end.
    pub fn open(dir: &Path, options: &Options) -> Result<(Follower, RecoveryReport)> {
        let mut bases: Vec<u64> = std::fs::read_dir(dir)
            .context(|| format!("listing {}", dir.display()))?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| segment::parse_file_name(&entry.file_name().to_string_lossy()))
            .collect();
        bases.sort_unstable();
        match bases.first() {
            None => return Err(Error::NoStore { dir: dir.to_owned() }),
            Some(&first) if first != 0 => {
                return Err(Error::corrupt(dir.join(segment::file_name(first)), 0, "the first segment is missing"))
            }
            Some(_) => {}
        }
        let log = Arc::new(Log::new(dir.to_owned(), bases, at_least_one(options.open_segments_max)));
        let io = Io::default();
        let (index, resume, opened) = Index::open(dir, log.clone(), io.clone(), options, Access::ReadOnly)?;
        let (ordinal, at) = split_locator(resume.locator);
        let mut follower = Follower {
            log,
            index,
            io,
            head: HeadReader::new(dir),
            ordinal,
            at: at as usize,
            tail: Tail { next_position: resume.position, last_timestamp: resume.last_timestamp },
        };
        let mut report =
            RecoveryReport { index_tables: opened.tables, index_rejected: opened.dropped, ..RecoveryReport::default() };
        follower.catch_up(&mut report)?;
        Ok((follower, report))
    }

    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }

    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Positions below this are replayed into the index.
    pub fn next_position(&self) -> u64 {
        self.tail.next_position
    }

    /// Replays the records the writer has made durable since the last call. Returns the new next position.
    pub fn follow(&mut self) -> Result<u64> {
        self.catch_up(&mut RecoveryReport::default())
    }

    fn catch_up(&mut self, report: &mut RecoveryReport) -> Result<u64> {
        // With no `HEAD`, no writer of this build is at work: every complete transaction counts.
        let limit = self.head.read().map_or(u64::MAX, |durable| durable.position);
        while self.tail.next_position < limit {
            if self.ordinal >= self.log.segment_count() && !self.log.discover()? {
                break;
            }
            // The writer may have compacted it since this reader mapped it: the scan reads the file by name.
            let segment = self.log.current_segment(self.ordinal)?;
            if segment.is_compacted() {
                // The writer compacted a sealed segment this reader had not finished: `at` is an original
                // offset (this reader read the file as the writer sealed it), which the relocation translates.
                super::recovery::replay_compacted(
                    &self.log,
                    &self.io,
                    &self.index,
                    &segment,
                    self.at as u32,
                    &mut self.tail,
                    report,
                )?;
                let next_base = self.log.base(self.ordinal + 1).expect("a compacted segment is sealed");
                self.ordinal += 1;
                self.at = SEGMENT_HEADER_LEN;
                self.index.freeze(next_base, locator(self.ordinal, SEGMENT_HEADER_LEN as u32));
                continue;
            }
            let mut window = PreadWindow::new(&segment, &self.io);
            let scanned = scan(&mut window, &self.log, &self.io, &self.index, self.at, &mut self.tail, limit, report)?;
            self.at = scanned.committed.0;
            if self.tail.next_position >= limit {
                break;
            }
            if let Some(reason) = scanned.stop {
                if limit == u64::MAX {
                    // A torn tail that the next writer will cut: not ours to judge.
                    break;
                }
                return Err(Error::corrupt(segment.path(), scanned.at as u64, reason));
            }
            if scanned.pending_at.is_some() {
                // An incomplete transaction at the end of what is written (only without `HEAD`).
                break;
            }
            // The segment's records end here: the next one must begin at this position.
            if self.log.base(self.ordinal + 1).is_none() && !self.log.discover()? {
                break;
            }
            let next_base = self.log.base(self.ordinal + 1).expect("discovered");
            if next_base != self.tail.next_position {
                if limit == u64::MAX {
                    break;
                }
                return Err(Error::corrupt(
                    segment.path(),
                    self.at as u64,
                    format!(
                        "segment ends at position {}, its successor starts at {next_base}",
                        self.tail.next_position
                    ),
                ));
            }
            self.ordinal += 1;
            self.at = SEGMENT_HEADER_LEN;
            self.index.freeze(next_base, locator(self.ordinal, SEGMENT_HEADER_LEN as u32));
            // The writer wrote the sealed segment's table after its roll (perhaps not yet): take its tables if
            // they reach that far, so that memory does not grow with what this reader follows.
            if let Err(err) = self.index.adopt_tables() {
                ::log::warn!("annals: a read-only store could not take the writer's index tables: {err}");
            }
        }
        Ok(self.tail.next_position)
    }
}
