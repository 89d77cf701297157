//! Optimistic concurrency in the repository: a save appends with `ExpectedVersion::Exact` of the version the
//! aggregate was loaded at. Proves that of two writers that loaded the same version the first save wins and
//! the second fails with `WrongExpectedVersion` without writing anything (never a silent overwrite); that
//! creating an aggregate whose stream exists is refused the same way; that a missing aggregate is `NotFound`;
//! and that many threads running commands with retry-on-conflict lose no update.

#[path = "../examples/bank/account.rs"]
mod account;

use account::{Account, AccountError};
use annals::{Error, ExpectedVersion, Loaded, Repository, RepositoryError, SnapshotPolicy, Store};

fn open_account(repository: &Repository<Account>, id: u64, balance: i64) {
    let mut account = Loaded::<Account>::new(id);
    let events = account.state().open(id, "Ada", balance).unwrap();
    repository.save(&mut account, events).unwrap();
}

#[test]
fn the_second_of_two_writers_fails_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repository = Repository::<Account>::new(Store::open(dir.path()).unwrap());
    open_account(&repository, 1, 100);

    let mut first = repository.load(1).unwrap();
    let mut second = repository.load(1).unwrap();
    assert_eq!((first.version(), second.version()), (Some(0), Some(0)));

    let withdrawn = first.state().withdraw(80).unwrap();
    repository.save(&mut first, withdrawn).unwrap();
    assert_eq!((first.version(), first.state().balance), (Some(1), 20));

    // The second writer still believes the balance is 100: its withdrawal would overdraw.
    let stale = second.state().withdraw(80).unwrap();
    let refused = repository.save(&mut second, stale);
    assert!(
        matches!(
            refused,
            Err(RepositoryError::Store(Error::WrongExpectedVersion {
                expected: ExpectedVersion::Exact(0),
                actual: Some(1),
                ..
            }))
        ),
        "{refused:?}"
    );
    assert!(refused.unwrap_err().is_conflict());
    assert_eq!((second.version(), second.state().balance), (Some(0), 100), "a failed save leaves it unchanged");
    assert_eq!(repository.store().stream_version("account-1"), Some(1), "nothing was appended");

    // Reloading and re-running the command sees the rule.
    let retried = repository.execute(1, |account| account.withdraw(80));
    assert!(matches!(retried, Err(RepositoryError::Domain(AccountError::InsufficientFunds { balance: 20, .. }))));
    assert_eq!(repository.load(1).unwrap().state().balance, 20);
}

#[test]
fn creating_an_existing_aggregate_conflicts_and_a_missing_one_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let repository = Repository::<Account>::new(Store::open(dir.path()).unwrap());
    open_account(&repository, 7, 5);

    let mut duplicate = Loaded::<Account>::new(7);
    let events = duplicate.state().open(7, "Eve", 1_000).unwrap();
    let refused = repository.save(&mut duplicate, events);
    assert!(
        matches!(refused, Err(RepositoryError::Store(Error::WrongExpectedVersion { actual: Some(0), .. }))),
        "{refused:?}"
    );
    assert_eq!(repository.load(7).unwrap().state().owner, "Ada");

    let missing = repository.load(8);
    assert!(matches!(missing, Err(RepositoryError::NotFound { ref stream }) if stream == "account-8"), "{missing:?}");
    let missing = repository.execute(8, |account| account.deposit(1));
    assert!(matches!(missing, Err(RepositoryError::NotFound { .. })));

    // Saving no events is a no-op, not an error.
    let mut loaded = repository.load(7).unwrap();
    let saved = repository.save(&mut loaded, Vec::new()).unwrap();
    assert!(saved.appended.is_none());
    assert_eq!(loaded.version(), Some(0));
}

#[test]
fn concurrent_commands_with_retry_lose_no_update() {
    const THREADS: i64 = 8;
    const DEPOSITS: i64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let repository =
        Repository::<Account>::new(Store::open(dir.path()).unwrap()).with_snapshot_policy(SnapshotPolicy::every(25));
    open_account(&repository, 1, 0);

    let conflicts = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (repository, conflicts) = (&repository, &conflicts);
            scope.spawn(move || {
                for n in 0..DEPOSITS {
                    let amount = thread * 1_000 + n + 1;
                    loop {
                        match repository.execute(1, |account| account.deposit(amount)) {
                            Ok(_) => break,
                            Err(error) if error.is_conflict() => {
                                conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                            Err(error) => panic!("deposit failed: {error}"),
                        }
                    }
                }
            });
        }
    });

    let expected: i64 = (0..THREADS).flat_map(|thread| (0..DEPOSITS).map(move |n| thread * 1_000 + n + 1)).sum();
    let loaded = repository.load(1).unwrap();
    assert_eq!(loaded.state().balance, expected, "no deposit lost or applied twice");
    assert_eq!(loaded.version(), Some((THREADS * DEPOSITS) as u64));
    assert_eq!(repository.load_from_events(1).unwrap().state(), loaded.state(), "snapshots agree with the events");
    assert!(loaded.snapshot_offset().is_some(), "the policy wrote snapshots on the way");
    eprintln!("{} conflicts retried", conflicts.into_inner());
}
