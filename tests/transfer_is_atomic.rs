//! The money transfer of the persistent-streams design, made atomic: the withdrawal from one account's
//! stream, the deposit to the other's and the `TransferCompleted` event in the `transfers` stream are one
//! `append_multi`, each account part expecting the version it was loaded at. Proves that a transfer writes all
//! three or nothing: a concurrent change to either account fails the whole transfer with
//! `WrongExpectedVersion` and leaves all three streams as they were; and that under concurrent transfers
//! from several threads (retrying on conflicts) money is neither created nor lost, and every completed
//! transfer appears exactly once in each of its three streams.

#[path = "../examples/bank/account.rs"]
mod account;

use std::collections::HashMap;

use account::{transfer, transfer_loaded, Account, AccountError, AccountEvent, Cents, TransferEvent};
use annals::{Error, EventCodec, Loaded, Repository, RepositoryError, Store};

fn open(repository: &Repository<Account>, id: u64, balance: Cents) {
    let mut account = Loaded::<Account>::new(id);
    let events = account.state().open(id, "owner", balance).unwrap();
    repository.save(&mut account, events).unwrap();
}

fn balance(repository: &Repository<Account>, id: u64) -> Cents {
    repository.load(id).unwrap().state().balance
}

#[test]
fn a_transfer_writes_three_streams_in_one_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let repository = Repository::<Account>::new(Store::open(dir.path()).unwrap());
    open(&repository, 1, 100);
    open(&repository, 2, 0);

    transfer(&repository, 1, 2, 30, "t-1").unwrap();
    assert_eq!((balance(&repository, 1), balance(&repository, 2)), (70, 30));

    let store = repository.store();
    let last = |stream: &str| store.read_stream_backwards(stream, None).unwrap().next().unwrap().unwrap();
    let (withdrawal, deposit, completed) = (last("account-1"), last("account-2"), last("transfers"));
    assert_eq!(
        [withdrawal.position(), deposit.position(), completed.position()],
        [2, 3, 4],
        "one transaction: consecutive positions"
    );
    let events = repository.events();
    assert_eq!(
        events.decode(&withdrawal).unwrap(),
        AccountEvent::MoneyWithdrawn { account_id: 1, amount: 30, transfer_id: Some("t-1".into()) }
    );
    assert_eq!(
        events.decode(&deposit).unwrap(),
        AccountEvent::MoneyDeposited { account_id: 2, amount: 30, transfer_id: Some("t-1".into()) }
    );

    // Overdraft: refused by the rules, nothing written.
    let refused = transfer(&repository, 2, 1, 31, "t-2");
    assert!(matches!(refused, Err(RepositoryError::Domain(AccountError::InsufficientFunds { .. }))));
    assert_eq!(store.stream_version("transfers"), Some(0));
}

#[test]
fn a_concurrent_change_to_either_account_fails_the_whole_transfer() {
    let dir = tempfile::tempdir().unwrap();
    let repository = Repository::<Account>::new(Store::open(dir.path()).unwrap());
    open(&repository, 1, 100);
    open(&repository, 2, 100);
    let versions = |repository: &Repository<Account>| {
        ["account-1", "account-2", "transfers"].map(|stream| repository.store().stream_version(stream))
    };

    for (changed, other) in [(1, 2), (2, 1)] {
        let (source, target) = (repository.load(1).unwrap(), repository.load(2).unwrap());
        // Another writer deposits into one of the accounts after they were loaded.
        repository.execute(changed, |account| account.deposit(5)).unwrap();
        let before = versions(&repository);

        let conflict = transfer_loaded(&repository, &source, &target, 50, "t-conflict");
        assert!(conflict.as_ref().is_err_and(RepositoryError::is_conflict), "{conflict:?}");
        assert!(matches!(
            conflict,
            Err(RepositoryError::Store(Error::WrongExpectedVersion { ref stream, .. })) if *stream == format!("account-{changed}")
        ));
        assert_eq!(versions(&repository), before, "nothing of the transfer was written");
        assert_eq!(balance(&repository, other), 100 + if other == 1 { 5 } else { 0 });
    }
    assert_eq!((balance(&repository, 1), balance(&repository, 2)), (105, 105));
}

#[test]
fn concurrent_transfers_conserve_money() {
    const ACCOUNTS: u64 = 6;
    const THREADS: u64 = 4;
    const TRANSFERS_PER_THREAD: u64 = 40;
    let dir = tempfile::tempdir().unwrap();
    let repository = Repository::<Account>::new(Store::open(dir.path()).unwrap());
    for id in 0..ACCOUNTS {
        open(&repository, id, 1_000);
    }

    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let repository = &repository;
            scope.spawn(move || {
                let mut seed = thread + 1;
                let mut next = |bound: u64| {
                    // xorshift64: a fixed sequence per thread, no extra dependency.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed % bound
                };
                for n in 0..TRANSFERS_PER_THREAD {
                    let from = next(ACCOUNTS);
                    let to = (from + 1 + next(ACCOUNTS - 1)) % ACCOUNTS;
                    let amount = 1 + next(300) as Cents;
                    let transfer_id = format!("t-{thread}-{n}");
                    loop {
                        match transfer(repository, from, to, amount, &transfer_id) {
                            Ok(()) | Err(RepositoryError::Domain(AccountError::InsufficientFunds { .. })) => break,
                            Err(error) if error.is_conflict() => continue,
                            Err(error) => panic!("transfer failed: {error}"),
                        }
                    }
                }
            });
        }
    });

    let total: Cents = (0..ACCOUNTS).map(|id| balance(&repository, id)).sum();
    assert_eq!(total, 1_000 * ACCOUNTS as Cents, "money is neither created nor lost");
    assert!((0..ACCOUNTS).all(|id| balance(&repository, id) >= 0));

    // Every completed transfer is in all three streams, exactly once.
    let store = repository.store();
    let mut legs: HashMap<String, (u32, u32)> = HashMap::new();
    for id in 0..ACCOUNTS {
        for recorded in store.read_stream(&format!("account-{id}"), 0).unwrap() {
            match repository.events().decode(&recorded.unwrap()).unwrap() {
                AccountEvent::MoneyWithdrawn { transfer_id: Some(t), .. } => legs.entry(t).or_default().0 += 1,
                AccountEvent::MoneyDeposited { transfer_id: Some(t), .. } => legs.entry(t).or_default().1 += 1,
                _ => {}
            }
        }
    }
    let transfers = EventCodec::<TransferEvent>::default();
    let mut completed = 0;
    for recorded in store.read_stream("transfers", 0).unwrap() {
        let TransferEvent::TransferCompleted { transfer_id, .. } = transfers.decode(&recorded.unwrap()).unwrap();
        assert_eq!(legs.remove(&transfer_id), Some((1, 1)), "{transfer_id}: one withdrawal and one deposit");
        completed += 1;
    }
    assert!(legs.is_empty(), "legs without a completed transfer: {legs:?}");
    assert!(completed > 0);
}
