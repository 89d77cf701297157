//! The `Account` aggregate's rules from the persistent-streams design, enforced by its commands and through
//! the repository: no negative opening balance, no deposit or withdrawal of a non-positive amount, no
//! overdraft, nothing into or out of a closed account, and closing only at a zero balance. Proves each rule
//! refuses with its domain error, that a refused command appends nothing (the stream's version does not
//! move), and that the state folded from the stored events is what the accepted commands imply.

#[path = "../examples/bank/account.rs"]
mod account;

use account::{Account, AccountError, AccountEvent, AccountStatus};
use annals::{Aggregate, Loaded, Repository, RepositoryError, Store};

/// Applies a command's events to a copy of the state, as the repository would.
fn after(account: &Account, events: Vec<AccountEvent>) -> Account {
    let mut account = account.clone();
    for event in &events {
        account.apply(event);
    }
    account
}

#[test]
fn the_rules_hold_on_the_state() {
    let fresh = Account::default();
    assert_eq!(fresh.open(1, "Ada", -1), Err(AccountError::NegativeOpeningBalance { initial_balance: -1 }));
    assert_eq!(fresh.deposit(10), Err(AccountError::NotOpened));
    let open = after(&fresh, fresh.open(1, "Ada", 0).unwrap());
    assert_eq!((open.balance, open.status), (0, AccountStatus::Active));
    assert_eq!(open.open(1, "Ada", 0), Err(AccountError::AlreadyOpened));

    assert_eq!(open.deposit(0), Err(AccountError::AmountNotPositive { amount: 0 }));
    assert_eq!(open.withdraw(-5), Err(AccountError::AmountNotPositive { amount: -5 }));
    assert_eq!(open.withdraw(1), Err(AccountError::InsufficientFunds { balance: 0, amount: 1 }));

    let funded = after(&open, open.deposit(100).unwrap());
    assert_eq!(funded.withdraw(101), Err(AccountError::InsufficientFunds { balance: 100, amount: 101 }));
    let emptied = after(&funded, funded.withdraw(100).unwrap());
    assert_eq!(emptied.balance, 0, "withdrawing the whole balance is allowed");

    assert_eq!(funded.close(), Err(AccountError::NonZeroBalance { balance: 100 }));
    let closed = after(&emptied, emptied.close().unwrap());
    assert_eq!(closed.status, AccountStatus::Closed);
    assert_eq!(closed.deposit(10), Err(AccountError::Closed));
    assert_eq!(closed.withdraw(10), Err(AccountError::Closed));
    assert_eq!(closed.close(), Err(AccountError::Closed));
}

#[test]
fn refused_commands_append_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let repository = Repository::<Account>::new(Store::open(dir.path()).unwrap());

    // Opening with a negative balance: refused before anything exists.
    let mut account = Loaded::<Account>::new(42);
    let refused = account.state().open(42, "Ada", -10);
    assert!(matches!(refused, Err(AccountError::NegativeOpeningBalance { .. })));
    assert!(matches!(repository.load(42), Err(RepositoryError::NotFound { .. })));

    let events = account.state().open(42, "Ada", 50).unwrap();
    repository.save(&mut account, events).unwrap();
    let version = |repository: &Repository<Account>| repository.store().stream_version("account-42");

    let overdraft = repository.execute(42, |account| account.withdraw(51));
    assert!(
        matches!(overdraft, Err(RepositoryError::Domain(AccountError::InsufficientFunds { balance: 50, amount: 51 }))),
        "{overdraft:?}"
    );
    let early_close = repository.execute(42, Account::close);
    assert!(matches!(early_close, Err(RepositoryError::Domain(AccountError::NonZeroBalance { balance: 50 }))));
    assert_eq!(version(&repository), Some(0), "refused commands appended nothing");

    repository.execute(42, |account| account.withdraw(50)).unwrap();
    let closed = repository.execute(42, Account::close).unwrap();
    assert_eq!(closed.state().status, AccountStatus::Closed);
    let late_deposit = repository.execute(42, |account| account.deposit(1));
    assert!(matches!(late_deposit, Err(RepositoryError::Domain(AccountError::Closed))));
    assert_eq!(version(&repository), Some(2));

    let reloaded = repository.load(42).unwrap();
    assert_eq!(
        reloaded.state(),
        &Account { account_id: 42, owner: "Ada".into(), balance: 0, status: AccountStatus::Closed }
    );
    assert_eq!(reloaded.version(), Some(2));
}
