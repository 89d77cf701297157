//! The bank's domain, ported from the `Account` aggregate of the persistent-streams design: one stream per
//! account (`account-{id}`), the events that happen to an account, and the rules its commands enforce.
//!
//! Shared by the `bank` example and the pattern tests in `tests/` (they include this file with `#[path]`).
//! Money is an integer number of cents, so that totals are exact.

#![allow(dead_code, reason = "each test that includes this module uses a part of it")]

use std::fmt;

use annals::{Aggregate, Event, EventCodec, ExpectedVersion, Loaded, Repository, RepositoryError, StreamAppend};
use serde::{Deserialize, Serialize};

/// An amount of money in cents.
pub type Cents = i64;

/// What happens to an account. The variant names are the stored event types.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum AccountEvent {
    /// The account was opened with an initial balance.
    AccountOpened { account_id: u64, owner: String, initial_balance: Cents },
    /// Money came in; `transfer_id` is set when it came from another account.
    MoneyDeposited { account_id: u64, amount: Cents, transfer_id: Option<String> },
    /// Money went out; `transfer_id` is set when it went to another account.
    MoneyWithdrawn { account_id: u64, amount: Cents, transfer_id: Option<String> },
    /// The account was closed (at a zero balance).
    AccountClosed { account_id: u64 },
}

impl Event for AccountEvent {}

impl AccountEvent {
    /// The account the event belongs to.
    pub fn account_id(&self) -> u64 {
        match self {
            AccountEvent::AccountOpened { account_id, .. }
            | AccountEvent::MoneyDeposited { account_id, .. }
            | AccountEvent::MoneyWithdrawn { account_id, .. }
            | AccountEvent::AccountClosed { account_id } => *account_id,
        }
    }
}

/// A completed transfer, recorded in the `transfers` stream.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub enum TransferEvent {
    /// Money moved from one account to another.
    TransferCompleted { transfer_id: String, from_account_id: u64, to_account_id: u64, amount: Cents },
}

impl Event for TransferEvent {}

/// Whether an account can take money.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AccountStatus {
    /// Not opened yet (the state before its first event).
    #[default]
    NotOpened,
    /// Open for deposits and withdrawals.
    Active,
    /// Closed for good.
    Closed,
}

/// The account's state, folded from its events.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default)]
pub struct Account {
    pub account_id: u64,
    pub owner: String,
    pub balance: Cents,
    pub status: AccountStatus,
}

/// Why an account refused a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountError {
    AlreadyOpened,
    NegativeOpeningBalance { initial_balance: Cents },
    NotOpened,
    Closed,
    AmountNotPositive { amount: Cents },
    InsufficientFunds { balance: Cents, amount: Cents },
    NonZeroBalance { balance: Cents },
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::AlreadyOpened => f.write_str("the account is already open"),
            AccountError::NegativeOpeningBalance { initial_balance } => {
                write!(f, "initial balance cannot be negative ({initial_balance})")
            }
            AccountError::NotOpened => f.write_str("the account was never opened"),
            AccountError::Closed => f.write_str("the account is closed"),
            AccountError::AmountNotPositive { amount } => write!(f, "amount must be positive ({amount})"),
            AccountError::InsufficientFunds { balance, amount } => {
                write!(f, "insufficient funds: balance {balance}, asked {amount}")
            }
            AccountError::NonZeroBalance { balance } => {
                write!(f, "cannot close an account with a non-zero balance ({balance})")
            }
        }
    }
}

impl std::error::Error for AccountError {}

impl Aggregate for Account {
    type Event = AccountEvent;
    type Error = AccountError;
    const CATEGORY: &'static str = "account";

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened { account_id, owner, initial_balance } => {
                self.account_id = *account_id;
                self.owner = owner.clone();
                self.balance = *initial_balance;
                self.status = AccountStatus::Active;
            }
            AccountEvent::MoneyDeposited { amount, .. } => self.balance += amount,
            AccountEvent::MoneyWithdrawn { amount, .. } => self.balance -= amount,
            AccountEvent::AccountClosed { .. } => self.status = AccountStatus::Closed,
        }
    }
}

impl Account {
    /// Opens the account: the initial balance must not be negative.
    pub fn open(
        &self,
        account_id: u64,
        owner: &str,
        initial_balance: Cents,
    ) -> Result<Vec<AccountEvent>, AccountError> {
        if self.status != AccountStatus::NotOpened {
            return Err(AccountError::AlreadyOpened);
        }
        if initial_balance < 0 {
            return Err(AccountError::NegativeOpeningBalance { initial_balance });
        }
        Ok(vec![AccountEvent::AccountOpened { account_id, owner: owner.to_owned(), initial_balance }])
    }

    /// Deposits a positive amount into an open account.
    pub fn deposit(&self, amount: Cents) -> Result<Vec<AccountEvent>, AccountError> {
        self.deposit_for(amount, None)
    }

    /// Withdraws a positive amount the balance covers (no overdraft).
    pub fn withdraw(&self, amount: Cents) -> Result<Vec<AccountEvent>, AccountError> {
        self.withdraw_for(amount, None)
    }

    /// A deposit, as part of a transfer when `transfer_id` is set.
    pub fn deposit_for(&self, amount: Cents, transfer_id: Option<&str>) -> Result<Vec<AccountEvent>, AccountError> {
        self.check_active()?;
        if amount <= 0 {
            return Err(AccountError::AmountNotPositive { amount });
        }
        let transfer_id = transfer_id.map(str::to_owned);
        Ok(vec![AccountEvent::MoneyDeposited { account_id: self.account_id, amount, transfer_id }])
    }

    /// A withdrawal, as part of a transfer when `transfer_id` is set.
    pub fn withdraw_for(&self, amount: Cents, transfer_id: Option<&str>) -> Result<Vec<AccountEvent>, AccountError> {
        self.check_active()?;
        if amount <= 0 {
            return Err(AccountError::AmountNotPositive { amount });
        }
        if self.balance < amount {
            return Err(AccountError::InsufficientFunds { balance: self.balance, amount });
        }
        let transfer_id = transfer_id.map(str::to_owned);
        Ok(vec![AccountEvent::MoneyWithdrawn { account_id: self.account_id, amount, transfer_id }])
    }

    /// Closes an open account whose balance is zero.
    pub fn close(&self) -> Result<Vec<AccountEvent>, AccountError> {
        self.check_active()?;
        if self.balance != 0 {
            return Err(AccountError::NonZeroBalance { balance: self.balance });
        }
        Ok(vec![AccountEvent::AccountClosed { account_id: self.account_id }])
    }

    fn check_active(&self) -> Result<(), AccountError> {
        match self.status {
            AccountStatus::NotOpened => Err(AccountError::NotOpened),
            AccountStatus::Closed => Err(AccountError::Closed),
            AccountStatus::Active => Ok(()),
        }
    }
}

/// The stream that records completed transfers.
pub const TRANSFERS_STREAM: &str = "transfers";

/// Moves `amount` from account `from` to account `to`: loads both, checks the rules, and appends the
/// withdrawal, the deposit and a `TransferCompleted` (in `transfers`) as one atomic `append_multi`.
///
/// A concurrent change to either account fails the whole transfer with a conflict
/// ([`RepositoryError::is_conflict`]); nothing is written then, and the caller may retry.
pub fn transfer(
    repository: &Repository<Account>,
    from: u64,
    to: u64,
    amount: Cents,
    transfer_id: &str,
) -> Result<(), RepositoryError<AccountError>> {
    let (source, target) = (repository.load(from)?, repository.load(to)?);
    transfer_loaded(repository, &source, &target, amount, transfer_id)
}

/// [`transfer`] between two accounts already loaded: the append expects the versions they were loaded at.
pub fn transfer_loaded(
    repository: &Repository<Account>,
    source: &Loaded<Account>,
    target: &Loaded<Account>,
    amount: Cents,
    transfer_id: &str,
) -> Result<(), RepositoryError<AccountError>> {
    let withdrawn = source.state().withdraw_for(amount, Some(transfer_id)).map_err(RepositoryError::Domain)?;
    let deposited = target.state().deposit_for(amount, Some(transfer_id)).map_err(RepositoryError::Domain)?;
    let completed = TransferEvent::TransferCompleted {
        transfer_id: transfer_id.to_owned(),
        from_account_id: source.state().account_id,
        to_account_id: target.state().account_id,
        amount,
    };
    let transfers = StreamAppend {
        stream: TRANSFERS_STREAM.into(),
        expected: ExpectedVersion::Any,
        events: vec![EventCodec::<TransferEvent>::default().encode(&completed)?],
    };
    repository.store().append_multi(&[
        repository.stream_append(source, &withdrawn)?,
        repository.stream_append(target, &deposited)?,
        transfers,
    ])?;
    Ok(())
}
