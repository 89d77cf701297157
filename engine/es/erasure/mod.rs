//! Erasure (GDPR) by crypto-shredding: personal fields of events are sealed with a key of their subject (a
//! customer, a patient), kept in a key file beside the log; forgetting a subject destroys its key, so its
//! sealed fields can never be read again, while the log itself, its positions, offsets and ids stay as they
//! are. Events of a forgotten subject still decode: their personal fields read as forgotten.
//!
//! - [`Personal<T>`]: the wrapper that marks a field personal and names its subject.
//! - [`Erasure`]: the key store. Codecs use it while they encode and decode ([`EventCodec::with_erasure`],
//!   [`Repository::with_erasure`], [`ProjectionRunner::start_with_erasure`], or [`Erasure::scope`]).
//! - `key_file.rs`: the key file's bytes; `sealed.rs`: a sealed value's bytes. Both are in `format-spec.md` §18.
//!
//! [`EventCodec::with_erasure`]: crate::EventCodec::with_erasure
//! [`Repository::with_erasure`]: crate::Repository::with_erasure
//! [`ProjectionRunner::start_with_erasure`]: crate::ProjectionRunner::start_with_erasure

mod key_file;
mod personal;
mod sealed;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use zeroize::Zeroizing;

pub use self::key_file::{KEY_FILE_FORMAT_VERSION, SUBJECT_BYTES_MAX};
pub use self::personal::Personal;

use self::key_file::{Damage, KeyId, Keys, SubjectKey, KEY_ID_LEN, KEY_LEN};
use crate::error::{Error, IoContext, Result};
use crate::log::io::Io;
use crate::{EventData, ExpectedVersion, Store};

/// The directory inside the store that holds the key file.
///
/// ```
/// # use annals::{Erasure, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path()).unwrap();
/// let erasure = Erasure::open(&store).unwrap();
/// assert_eq!(erasure.key_file(), store.dir().join(annals::KEYS_DIR).join(annals::KEY_FILE));
/// ```
pub const KEYS_DIR: &str = "keys";
/// The key file's name inside [`KEYS_DIR`] (see [`KEYS_DIR`]'s example).
pub const KEY_FILE: &str = "subjects.keys";
/// The system stream whose one event records that this store's erasure keys were created, so that a key file
/// lost later is told from a store that never had one (`format-spec.md` §18.6).
///
/// ```
/// # use annals::{Erasure, Store};
/// # let dir = tempfile::tempdir().unwrap();
/// let store = Store::open(dir.path()).unwrap();
/// assert_eq!(store.stream_version(annals::ERASURE_STREAM), None);
/// let _erasure = Erasure::open(&store).unwrap(); // the first use
/// let created = store.read_stream(annals::ERASURE_STREAM, 0).unwrap().next().unwrap().unwrap();
/// assert_eq!(created.event_type(), annals::ERASURE_EVENT_TYPE);
/// ```
pub const ERASURE_STREAM: &str = "$erasure";
/// The event type of the one event of [`ERASURE_STREAM`] (see its example).
pub const ERASURE_EVENT_TYPE: &str = "$keys-created";

/// The temporary name a new key file is written under, in `keys/`, before it is renamed over the old one.
const KEY_FILE_TMP: &str = "subjects.keys.tmp";
/// The temporary name of `keys/` while the first, empty key file is made inside it.
const KEYS_DIR_TMP: &str = "keys.tmp";
/// Locked while an `Erasure` of the store is open, so that two never rewrite the key file.
const LOCK_FILE: &str = "LOCK";

/// The first use of erasure in a store creates `keys/`; this lock keeps two first uses in this process apart
/// (the store's own directory lock keeps other processes out: only a writable store creates keys).
static CREATING: Mutex<()> = Mutex::new(());

/// The key store of one store directory: one key per subject, in `<store>/keys/subjects.keys`.
///
/// Codecs seal and open [`Personal`] fields with it: an [`EventCodec`](crate::EventCodec) given one with
/// [`with_erasure`](crate::EventCodec::with_erasure), a [`Repository`](crate::Repository) and a
/// [`ProjectionRunner`](crate::ProjectionRunner) likewise, or any serde code run inside
/// [`scope`](Self::scope). The first value sealed for a subject creates its key; [`forget`](Self::forget)
/// destroys it for good, and from then on every value sealed with it reads as forgotten.
///
/// `Clone` shares one key store (`Send + Sync`: clone it into every thread and component). Only one
/// `Erasure` of a store may be open at a time, in any process: a second [`open`](Self::open) gets
/// `Error::Locked` until every clone of the first is dropped.
///
/// Durability: a key is on stable storage before the first value sealed with it is returned, and a forgotten
/// key is gone from the key file (rewritten, synced and renamed over the old one, its directory synced) before
/// [`forget`](Self::forget) returns. Each of these rewrites the whole file: adding a subject costs one
/// rewrite (concurrent first uses of new subjects share one), so import many subjects at once with
/// [`add_subjects`](Self::add_subjects). Every key is held in memory (about 100 bytes a subject).
///
/// ```
/// use annals::{Erasure, Event, EventCodec, ExpectedVersion, Personal, Store};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize, Debug, PartialEq)]
/// enum CustomerEvent {
///     Registered { customer: u64, name: Personal<String>, country: String },
/// }
/// impl Event for CustomerEvent {}
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path())?;
/// let erasure = Erasure::open(&store)?;
/// let events = EventCodec::<CustomerEvent>::default().with_erasure(erasure.clone());
///
/// let registered = CustomerEvent::Registered {
///     customer: 42,
///     name: Personal::new("customer-42", "Ada Lovelace".to_owned()),
///     country: "UK".into(),
/// };
/// store.append("customer-42", ExpectedVersion::Any, &[events.encode(&registered)?])?;
///
/// let read = |store: &Store| -> Result<CustomerEvent, Box<dyn std::error::Error>> {
///     Ok(events.decode(&store.read_stream("customer-42", 0)?.next().unwrap()?)?)
/// };
/// assert_eq!(read(&store)?, registered);
///
/// // The customer asks to be forgotten: the key is destroyed, the event stays where it is.
/// assert!(erasure.forget("customer-42")?);
/// let CustomerEvent::Registered { name, country, .. } = read(&store)?;
/// assert!(name.is_forgotten());
/// assert_eq!((name.subject(), name.value(), country.as_str()), ("customer-42", None, "UK"));
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Erasure {
    inner: Arc<Inner>,
}

struct Inner {
    /// `<store>/keys`.
    dir: PathBuf,
    /// `<store>/keys/subjects.keys`.
    path: PathBuf,
    /// `None`: opened on a read-only store, never writes.
    io: Option<Io>,
    /// What the key file holds: a key is added only after the file holding it is durable, and removed only
    /// after the file without it is (or may be) in place.
    keys: RwLock<Keys>,
    /// Serialises the rewrites of the key file.
    writes: Mutex<Writes>,
    /// Subjects whose first seal waits for a key: the next rewrite makes keys for all of them.
    waiting: Mutex<BTreeSet<String>>,
    /// The lock on `keys/LOCK`, held while any clone lives.
    _lock: Option<File>,
}

#[derive(Default)]
struct Writes {
    /// Set when a rewrite was renamed into place but its directory could not be synced: whether the file on
    /// disk is the old or the new one is unknown until it is opened again, so no later rewrite is trusted.
    poisoned: Option<Arc<io::Error>>,
}

/// A rewrite of the key file that failed.
struct RewriteFailed {
    error: Error,
    /// The new file was renamed into place (only its directory's sync failed): the file that readers see now
    /// is the new one.
    renamed: bool,
}

impl Erasure {
    /// Opens the key store of `store` (`<store>/keys/subjects.keys`), creating it at the first use.
    ///
    /// The first use creates `keys/` with an empty key file, durably, and records it in the log with one event
    /// of [`ERASURE_STREAM`]. From then on a missing key file is damage, not a first use: it is
    /// `Error::KeyFileMissing` (restore `keys/` from a backup, or accept the loss with
    /// [`open_after_key_loss`](Self::open_after_key_loss)). On a read-only store nothing is created or
    /// locked: a store without keys has no subjects, and the keys are read once (forgets made by the writer
    /// since are seen after opening again).
    ///
    /// Errors: `Locked` if another `Erasure` of this store is open; `KeyFileMissing`; `Corrupt` if the key
    /// file is damaged (bad magic, length, CRC or entries), `UnsupportedFormat` if it is of a newer format;
    /// `Closed`; `Io`; and the store's errors for the event of [`ERASURE_STREAM`].
    ///
    /// ```
    /// use annals::{Erasure, Error, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// let erasure = Erasure::open(&store).unwrap();
    /// assert!(matches!(Erasure::open(&store), Err(Error::Locked { .. })), "one at a time: share clones");
    /// erasure.add_subjects(["customer-1"]).unwrap();
    /// drop(erasure);
    /// assert!(Erasure::open(&store).unwrap().has_key("customer-1"), "keys are durable");
    /// ```
    pub fn open(store: &Store) -> Result<Erasure> {
        Erasure::open_inner(store, false)
    }

    /// Like [`open`](Self::open), but a key file that is missing although the store has used keys (the
    /// `KeyFileMissing` of `open`) is replaced by an empty one: every personal value written so far then reads
    /// as forgotten, for good. For a store whose keys are lost and have no backup. A damaged key file is still
    /// an error: move it away first, after keeping a copy, if it is to be given up too.
    ///
    /// ```
    /// use annals::{Erasure, Error, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// let erasure = Erasure::open(&store).unwrap();
    /// let key_file = erasure.key_file().to_owned();
    /// drop(erasure);
    /// std::fs::remove_file(&key_file).unwrap(); // lost
    /// assert!(matches!(Erasure::open(&store), Err(Error::KeyFileMissing { .. })));
    /// let erasure = Erasure::open_after_key_loss(&store).unwrap();
    /// assert_eq!(erasure.subject_count(), 0);
    /// ```
    pub fn open_after_key_loss(store: &Store) -> Result<Erasure> {
        Erasure::open_inner(store, true)
    }

    fn open_inner(store: &Store, accept_loss: bool) -> Result<Erasure> {
        let dir = store.dir().join(KEYS_DIR);
        let path = dir.join(KEY_FILE);
        let used_before = store.stream_version(ERASURE_STREAM).is_some();
        let missing = || Error::KeyFileMissing { file: path.clone() };
        if store.is_read_only() {
            let keys = match read_key_file(&path)? {
                Some(keys) => keys,
                None if accept_loss || !used_before && !dir.exists() => Keys::new(),
                None => return Err(missing()),
            };
            return Ok(Erasure::new(dir, path, None, keys, None));
        }
        let io = store.io_for_writes()?.clone();
        {
            let _creating = CREATING.lock();
            if !dir.exists() {
                if used_before && !accept_loss {
                    return Err(missing());
                }
                create_keys_dir(&io, store.dir())?;
            }
        }
        let lock = lock(&dir)?;
        // A rewrite interrupted by a crash (or whose removal failed) left its temporary file: it may hold keys
        // forgotten since, and nothing reads it.
        remove_if_present(&dir.join(KEY_FILE_TMP))?;
        let keys = match read_key_file(&path)? {
            Some(keys) => keys,
            None if accept_loss => {
                write_key_file(&io, &dir, &key_file::encode(&Keys::new())).map_err(|failed| failed.error)?;
                Keys::new()
            }
            None => return Err(missing()),
        };
        if !used_before {
            // IMPORTANT: after the keys exist, never before: a crash in between leaves keys without the event,
            // and this open appends it; the other order would leave the event without keys, read as lost keys.
            store.append(ERASURE_STREAM, ExpectedVersion::Any, &[EventData::new(ERASURE_EVENT_TYPE, Vec::new())])?;
        }
        Ok(Erasure::new(dir, path, Some(io), keys, Some(lock)))
    }

    fn new(dir: PathBuf, path: PathBuf, io: Option<Io>, keys: Keys, lock: Option<File>) -> Erasure {
        Erasure {
            inner: Arc::new(Inner {
                dir,
                path,
                io,
                keys: RwLock::new(keys),
                writes: Mutex::new(Writes::default()),
                waiting: Mutex::new(BTreeSet::new()),
                _lock: lock,
            }),
        }
    }

    /// Forgets `subject` for good: its key is destroyed, so every value sealed with it reads as forgotten
    /// ([`Personal::is_forgotten`]) from now on, in this process and after any reopen. Returns whether the
    /// subject had a key. Nothing in the log changes.
    ///
    /// When it returns `Ok`, the key file on stable storage no longer holds the key: it was written anew
    /// without it (temporary file, sync, rename over the old file, sync of `keys/`), and the key's bytes in
    /// this process's memory were wiped. What the file system or a backup may still hold is in the README
    /// ("Erasure (GDPR)") and `format-spec.md` §18.7.
    ///
    /// A value sealed later for the same subject gets a new key: forgetting is not a ban. A decode that runs
    /// at the same time as the forget returns either the value or the forgotten marker.
    ///
    /// Errors: `ReadOnly`; `Io` if the new file could not be written (the key is kept, in the file and in
    /// memory: call again); `Poisoned` if a rewrite was renamed into place but `keys/` could not be synced
    /// (this call's or an earlier one's): the key is forgotten in memory, but whether the file on disk still
    /// holds it is unknown, and no write is accepted until the `Erasure` is opened again (then forget again).
    ///
    /// ```
    /// # use annals::{Erasure, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path()).unwrap();
    /// let erasure = Erasure::open(&store).unwrap();
    /// erasure.add_subjects(["customer-7"]).unwrap();
    /// assert!(erasure.forget("customer-7").unwrap());
    /// assert!(!erasure.forget("customer-7").unwrap(), "nothing left to forget");
    /// assert!(!erasure.has_key("customer-7"));
    /// ```
    pub fn forget(&self, subject: &str) -> Result<bool> {
        let mut writes = self.inner.writes.lock();
        let mut next = self.inner.keys.read().clone();
        if next.remove(subject).is_none() {
            return Ok(false);
        }
        let written = self.inner.rewrite(&mut writes, &next);
        // IMPORTANT: memory forgets after the file does, so that a failed write leaves both holding the key
        // (and a retry finds it); a file renamed into place holds the new state, so memory follows it.
        if written.as_ref().map_or_else(|failed| failed.renamed, |()| true) {
            *self.inner.keys.write() = next;
        }
        written.map(|()| true).map_err(|failed| failed.error)
    }

    /// Creates keys for the `subjects` that have none, in one rewrite of the key file, and returns how many
    /// were new. Sealing a value for a new subject does this by itself; this is for importing many subjects
    /// at once (one rewrite instead of one per subject).
    ///
    /// Errors: `InvalidSubject` for an empty subject or one longer than [`SUBJECT_BYTES_MAX`] (nothing is
    /// written); `ReadOnly`; `Poisoned`; `Io`.
    ///
    /// ```
    /// # use annals::{Erasure, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path()).unwrap();
    /// let erasure = Erasure::open(&store).unwrap();
    /// let customers: Vec<String> = (0..1_000).map(|n| format!("customer-{n}")).collect();
    /// assert_eq!(erasure.add_subjects(&customers).unwrap(), 1_000);
    /// assert_eq!(erasure.add_subjects(["customer-0", "customer-1000"]).unwrap(), 1);
    /// assert_eq!(erasure.subject_count(), 1_001);
    /// ```
    pub fn add_subjects<I, S>(&self, subjects: I) -> Result<usize>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let subjects = subjects.into_iter().map(|subject| subject.as_ref().to_owned()).collect::<BTreeSet<_>>();
        subjects.iter().try_for_each(|subject| check_subject(subject))?;
        let mut writes = self.inner.writes.lock();
        self.inner.add_keys(&mut writes, subjects)
    }

    /// Whether `subject` has a key (it had a value sealed, or was added, and was not forgotten since).
    ///
    /// ```
    /// # use annals::{Erasure, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path()).unwrap();
    /// let erasure = Erasure::open(&store).unwrap();
    /// assert!(!erasure.has_key("customer-1"));
    /// erasure.add_subjects(["customer-1"]).unwrap();
    /// assert!(erasure.has_key("customer-1"));
    /// ```
    pub fn has_key(&self, subject: &str) -> bool {
        self.inner.keys.read().contains_key(subject)
    }

    /// How many subjects have a key.
    ///
    /// ```
    /// # use annals::{Erasure, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path()).unwrap();
    /// assert_eq!(Erasure::open(&store).unwrap().subject_count(), 0, "a new store has none");
    /// ```
    pub fn subject_count(&self) -> usize {
        self.inner.keys.read().len()
    }

    /// The key file: `<store>/keys/subjects.keys`.
    ///
    /// ```
    /// # use annals::{Erasure, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path()).unwrap();
    /// let erasure = Erasure::open(&store).unwrap();
    /// assert_eq!(erasure.key_file(), store.dir().join("keys").join("subjects.keys"));
    /// ```
    pub fn key_file(&self) -> &Path {
        &self.inner.path
    }

    /// Whether this key store was opened on a read-only store: it opens sealed values, and refuses to create
    /// or forget keys (`Error::ReadOnly`).
    ///
    /// ```
    /// # use annals::{Erasure, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// assert!(!Erasure::open(&store).unwrap().is_read_only());
    /// let reader = Store::open_read_only(dir.path()).unwrap();
    /// assert!(Erasure::open(&reader).unwrap().is_read_only());
    /// ```
    pub fn is_read_only(&self) -> bool {
        self.inner.io.is_none()
    }

    /// Runs `f` with this key store as the current thread's: every [`Personal`] value serialized or
    /// deserialized inside, by any serde format, is sealed or opened with it. Scopes nest; the previous one is
    /// back when `f` returns or panics.
    ///
    /// The typed layer does this by itself when it has an `Erasure` ([`EventCodec::with_erasure`] and the
    /// others); this is for the rest: a state kept outside the store, a codec of one's own.
    ///
    /// [`EventCodec::with_erasure`]: crate::EventCodec::with_erasure
    ///
    /// ```
    /// use annals::{BincodeCodec, Codec, Erasure, Personal, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = Store::open(dir.path()).unwrap();
    /// let erasure = Erasure::open(&store).unwrap();
    /// let email = Personal::new("customer-9", "ada@example.com".to_owned());
    ///
    /// let bytes = erasure.scope(|| BincodeCodec.encode(&email)).unwrap();
    /// assert!(!bytes.windows(7).any(|window| window == b"example"), "sealed");
    /// let back: Personal<String> = erasure.scope(|| BincodeCodec.decode(&bytes)).unwrap();
    /// assert_eq!(back, email);
    /// assert!(BincodeCodec.encode(&email).is_err(), "outside a scope there is no key store");
    /// ```
    pub fn scope<R>(&self, f: impl FnOnce() -> R) -> R {
        self.run_in_scope(None, f).0
    }

    /// [`scope`](Self::scope) for one encode of the typed layer (an event, a state), and the first key-store
    /// error (creating a key) that a seal inside met, which serde can only pass on as text. Each subject's key
    /// is taken once, so a forget that lands in the middle cannot leave some fields of a subject sealed under
    /// the destroyed key and others under a new one.
    pub(crate) fn scope_reporting_for_one_write<R>(&self, f: impl FnOnce() -> R) -> (R, Option<Error>) {
        self.run_in_scope(Some(BTreeMap::new()), f)
    }

    /// [`scope`](Self::scope) for one decode of the typed layer (an event, a state): each subject's key is
    /// looked up once, so a forget that lands in the middle leaves the whole value read before it, never
    /// some fields of a subject forgotten and others not.
    pub(crate) fn scope_for_one_read<R>(&self, f: impl FnOnce() -> R) -> R {
        self.run_in_scope(Some(BTreeMap::new()), f).0
    }

    fn run_in_scope<R>(&self, keys_seen: Option<KeysSeen>, f: impl FnOnce() -> R) -> (R, Option<Error>) {
        struct Restore(Option<Scope>);
        impl Drop for Restore {
            fn drop(&mut self) {
                SCOPE.set(self.0.take());
            }
        }
        let scope = Scope { erasure: self.clone(), failure: None, keys_seen };
        let _restore = Restore(SCOPE.replace(Some(scope)));
        let result = f();
        let failure = SCOPE.with_borrow_mut(|scope| scope.as_mut().and_then(|scope| scope.failure.take()));
        (result, failure)
    }

    /// Writes a copy of the key file into `<dest>/keys/subjects.keys`, durably: with
    /// [`Store::backup`](crate::Store::backup) into the same `dest` (first, since it wants an empty
    /// directory), a copy of the store that opens with its keys. The copy holds every key this store holds now,
    /// and keeps holding them when a subject is forgotten here later: a backup of the keys is a copy of
    /// personal data, to be kept as such (see the README, "Erasure (GDPR)").
    ///
    /// Errors: `Io`.
    ///
    /// ```
    /// use annals::{Erasure, Store};
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let backups = tempfile::tempdir().unwrap();
    /// let store = Store::open(dir.path()).unwrap();
    /// let erasure = Erasure::open(&store).unwrap();
    /// erasure.add_subjects(["customer-1"]).unwrap();
    ///
    /// let copy = backups.path().join("monday");
    /// store.backup(&copy).unwrap();
    /// erasure.backup(&copy).unwrap();
    /// let restored = Store::open(&copy).unwrap();
    /// assert!(Erasure::open(&restored).unwrap().has_key("customer-1"));
    /// ```
    pub fn backup(&self, dest: impl AsRef<Path>) -> Result<()> {
        let dest = dest.as_ref();
        let io = self.inner.io.clone().unwrap_or_default();
        // Held so that the copy is a state the key file had.
        let _writes = self.inner.writes.lock();
        let bytes = key_file::encode(&self.inner.keys.read());
        if !dest.is_dir() {
            fs::create_dir_all(dest).context(|| format!("creating {}", dest.display()))?;
            sync_parent(&io, dest)?;
        }
        let dir = dest.join(KEYS_DIR);
        if !dir.is_dir() {
            private_dir(&dir)?;
            io.sync_dir(dest).context(|| format!("syncing {}", dest.display()))?;
        }
        write_key_file(&io, &dir, &bytes).map_err(|failed| failed.error)
    }
}

impl fmt::Debug for Erasure {
    /// Never shows a key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Erasure")
            .field("key_file", &self.inner.path)
            .field("subjects", &self.subject_count())
            .field("read_only", &self.is_read_only())
            .finish()
    }
}

impl Inner {
    /// Adds a key for each of `subjects` that has none, in one rewrite; memory follows only a rewrite that
    /// is durable, so that no value is ever sealed with a key the disk may not keep.
    fn add_keys(&self, writes: &mut Writes, subjects: BTreeSet<String>) -> Result<usize> {
        let mut next = self.keys.read().clone();
        let before = next.len();
        for subject in subjects {
            if let std::collections::btree_map::Entry::Vacant(entry) = next.entry(subject) {
                entry.insert(new_key()?);
            }
        }
        let added = next.len() - before;
        if added == 0 {
            return Ok(0);
        }
        if u32::try_from(next.len()).is_err() {
            return Err(Error::InvalidSubject { subject: String::new(), reason: "more than 2^32 - 1 subjects" });
        }
        self.rewrite(writes, &next).map_err(|failed| failed.error)?;
        *self.keys.write() = next;
        Ok(added)
    }

    /// The key to seal a new value of `subject` with, made (durably) if the subject has none. Concurrent
    /// first seals of new subjects share one rewrite.
    fn key_for_sealing(&self, subject: &str) -> Result<SubjectKey> {
        if let Some(key) = self.keys.read().get(subject) {
            return Ok(key.clone());
        }
        check_subject(subject)?;
        self.waiting.lock().insert(subject.to_owned());
        let mut writes = self.writes.lock();
        // The rewrite of the thread that held the lock may have made this subject's key too.
        if let Some(key) = self.keys.read().get(subject) {
            return Ok(key.clone());
        }
        let mut subjects = std::mem::take(&mut *self.waiting.lock());
        // Ours may have been taken by a rewrite that failed.
        subjects.insert(subject.to_owned());
        self.add_keys(&mut writes, subjects)?;
        Ok(self.keys.read().get(subject).expect("just added, under the write lock").clone())
    }

    /// The key of `subject` if it is still `id`: `None` once that key was destroyed. For sealing again; reads
    /// go through [`key_for_opening`].
    fn key_with_id(&self, subject: &str, id: &KeyId) -> Option<SubjectKey> {
        self.keys.read().get(subject).filter(|key| key.id == *id).cloned()
    }

    /// Writes `keys` as the key file, durably. `writes` is the held write lock.
    fn rewrite(&self, writes: &mut Writes, keys: &Keys) -> Result<(), RewriteFailed> {
        let not_written = |error| RewriteFailed { error, renamed: false };
        let Some(io) = &self.io else { return Err(not_written(Error::ReadOnly)) };
        if let Some(cause) = &writes.poisoned {
            return Err(not_written(Error::Poisoned { cause: cause.clone() }));
        }
        let failed = match write_key_file(io, &self.dir, &key_file::encode(keys)) {
            Ok(()) => return Ok(()),
            Err(failed) => failed,
        };
        if failed.renamed {
            let Error::Io { source, .. } = &failed.error else { unreachable!("a failed directory sync is Io") };
            writes.poisoned = Some(Arc::new(io::Error::new(source.kind(), source.to_string())));
        }
        Err(failed)
    }
}

/// The current thread's key store, set by [`Erasure::scope`].
struct Scope {
    erasure: Erasure,
    /// The first error a seal met that serde could pass on only as text.
    failure: Option<Error>,
    /// In a scope for one read: the key (or the absence of one) of each subject met so far.
    keys_seen: Option<KeysSeen>,
}

type KeysSeen = BTreeMap<String, Option<SubjectKey>>;

thread_local! {
    static SCOPE: RefCell<Option<Scope>> = const { RefCell::new(None) };
}

/// The key store of the innermost [`Erasure::scope`] on this thread.
fn current() -> Option<Erasure> {
    SCOPE.with_borrow(|scope| scope.as_ref().map(|scope| scope.erasure.clone()))
}

/// The key to open a value of `subject` sealed under key `id` with, from the current scope's key store: `None`
/// if that key was destroyed. `Err` outside a scope.
fn key_for_opening(subject: &str, id: &KeyId) -> Result<Option<SubjectKey>, ()> {
    SCOPE.with_borrow_mut(|scope| {
        let Scope { erasure, keys_seen, .. } = scope.as_mut().ok_or(())?;
        let look_up = || erasure.inner.keys.read().get(subject).cloned();
        let key = match keys_seen {
            Some(seen) => seen.entry(subject.to_owned()).or_insert_with(look_up).clone(),
            None => look_up(),
        };
        Ok(key.filter(|key| key.id == *id))
    })
}

/// The key to seal a new value of `subject` with, from the current scope: in a scope for one value, the key
/// its first seal took (so every field of a subject in one value is sealed under one key); else, or the first
/// time, [`Inner::key_for_sealing`]'s.
fn key_for_sealing_in_scope(erasure: &Erasure, subject: &str) -> Result<SubjectKey> {
    let cached = SCOPE.with_borrow(|scope| {
        scope.as_ref().and_then(|scope| scope.keys_seen.as_ref()).and_then(|seen| seen.get(subject).cloned().flatten())
    });
    if let Some(key) = cached {
        return Ok(key);
    }
    let key = erasure.inner.key_for_sealing(subject)?;
    SCOPE.with_borrow_mut(|scope| {
        if let Some(seen) = scope.as_mut().and_then(|scope| scope.keys_seen.as_mut()) {
            seen.insert(subject.to_owned(), Some(key.clone()));
        }
    });
    Ok(key)
}

/// Keeps `error` for [`Erasure::scope_reporting_for_one_write`] (the first one wins).
fn report(error: Error) {
    SCOPE.with_borrow_mut(|scope| {
        if let Some(scope) = scope {
            scope.failure.get_or_insert(error);
        }
    });
}

/// A subject id must be 1 to [`SUBJECT_BYTES_MAX`] bytes.
fn check_subject(subject: &str) -> Result<()> {
    let reason = match subject.len() {
        0 => "a subject id is empty",
        len if len > SUBJECT_BYTES_MAX => "a subject id is longer than 255 bytes",
        _ => return Ok(()),
    };
    Err(Error::InvalidSubject { subject: subject.to_owned(), reason })
}

/// A new key with a new id, from the operating system's CSPRNG.
fn new_key() -> Result<SubjectKey> {
    let random = |context: &str, err: getrandom::Error| Error::io(context, io::Error::from(err));
    let mut id = [0; KEY_ID_LEN];
    getrandom::fill(&mut id).map_err(|err| random("drawing a key id", err))?;
    let mut key = Zeroizing::new([0; KEY_LEN]);
    getrandom::fill(&mut key[..]).map_err(|err| random("drawing a key", err))?;
    Ok(SubjectKey { id, key })
}

/// The keys in the key file at `path`; `None` if there is no file.
fn read_key_file(path: &Path) -> Result<Option<Keys>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => Zeroizing::new(bytes),
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(err) => return Err(Error::io(format!("reading {}", path.display()), err)),
    };
    match key_file::decode(&bytes) {
        Ok(keys) => Ok(Some(keys)),
        Err(Damage::Corrupt { offset, reason }) => Err(Error::corrupt(path, offset, reason)),
        Err(Damage::Unsupported { found }) => {
            Err(Error::UnsupportedFormat { file: path.to_owned(), found, supported: KEY_FILE_FORMAT_VERSION })
        }
    }
}

/// Writes `bytes` as `dir/subjects.keys`: a new temporary file (owner-only), sync, rename over the old file,
/// sync of `dir`. On a failure before the rename the temporary file is removed (best effort: the next open
/// removes a leftover), and the old file is in force.
fn write_key_file(io: &Io, dir: &Path, bytes: &[u8]) -> Result<(), RewriteFailed> {
    let (tmp, path) = (dir.join(KEY_FILE_TMP), dir.join(KEY_FILE));
    let written = (|| {
        remove_if_present(&tmp)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .context(|| format!("creating {}", tmp.display()))?;
        io.write_at(&file, &tmp, bytes, 0).context(|| format!("writing {}", tmp.display()))?;
        io.sync_all(&file, &tmp).context(|| format!("syncing {}", tmp.display()))?;
        drop(file);
        io.rename(&tmp, &path).context(|| format!("renaming {} to {}", tmp.display(), path.display()))
    })();
    if let Err(error) = written {
        let _ = fs::remove_file(&tmp);
        return Err(RewriteFailed { error, renamed: false });
    }
    // IMPORTANT: until the directory is synced, a power cut may bring the old file back, forgotten keys and all.
    io.sync_dir(dir)
        .context(|| format!("syncing {}", dir.display()))
        .map_err(|error| RewriteFailed { error, renamed: true })
}

/// Creates `<store>/keys/` holding an empty key file, atomically: made as `keys.tmp/`, synced, renamed.
/// So `keys/` never exists without its key file, and a missing file inside it is damage.
fn create_keys_dir(io: &Io, store_dir: &Path) -> Result<()> {
    let tmp = store_dir.join(KEYS_DIR_TMP);
    if tmp.exists() {
        // A first use interrupted by a crash: it holds at most an empty key file.
        fs::remove_dir_all(&tmp).context(|| format!("removing {}", tmp.display()))?;
    }
    private_dir(&tmp)?;
    write_key_file(io, &tmp, &key_file::encode(&Keys::new())).map_err(|failed| failed.error)?;
    let dir = store_dir.join(KEYS_DIR);
    io.rename(&tmp, &dir).context(|| format!("renaming {} to {}", tmp.display(), dir.display()))?;
    io.sync_dir(store_dir).context(|| format!("syncing {}", store_dir.display()))
}

/// Creates a directory only its owner may enter: it holds keys.
fn private_dir(dir: &Path) -> Result<()> {
    DirBuilder::new().mode(0o700).create(dir).context(|| format!("creating {}", dir.display()))
}

fn sync_parent(io: &Io, dir: &Path) -> Result<()> {
    match dir.parent().filter(|parent| !parent.as_os_str().is_empty()) {
        Some(parent) => io.sync_dir(parent).context(|| format!("syncing {}", parent.display())),
        None => Ok(()),
    }
}

/// Locks `keys/LOCK` exclusively (`flock`), or `Locked` if another `Erasure` holds it.
fn lock(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .context(|| format!("opening {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(Error::Locked { dir: dir.to_owned() }),
        Err(fs::TryLockError::Error(err)) => Err(Error::io(format!("locking {}", path.display()), err)),
    }
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(Error::io(format!("removing {}", path.display()), err))
        }
        _ => Ok(()),
    }
}
