//! The account service of the persistent-streams design: opening an account, depositing and withdrawing
//! each append one typed event to the account's own stream `account-{id}`. Proves that the events land in
//! that stream in order at offsets 0, 1, 2…, carry their type name and the codec that wrote them, that an
//! account cannot be opened twice (the open expects no stream), and that all of it survives a reopen.

#[path = "../examples/bank/account.rs"]
mod account;

use account::{AccountEvent, Cents};
use annals::{BincodeCodec, Codec, Error, EventCodec, ExpectedVersion, Store};

/// The service: appends without loading the aggregate, as the C# `AccountService` does.
struct AccountService {
    store: Store,
    events: EventCodec<AccountEvent>,
}

impl AccountService {
    fn append(&self, account_id: u64, expected: ExpectedVersion, event: AccountEvent) -> Result<u64, Error> {
        let data = self.events.encode(&event).expect("an account event encodes");
        Ok(self.store.append(&format!("account-{account_id}"), expected, &[data])?.last_offset)
    }

    fn open_account(&self, account_id: u64, owner: &str, initial_balance: Cents) -> Result<u64, Error> {
        let event = AccountEvent::AccountOpened { account_id, owner: owner.into(), initial_balance };
        self.append(account_id, ExpectedVersion::NoStream, event)
    }

    fn deposit(&self, account_id: u64, amount: Cents) -> Result<u64, Error> {
        let event = AccountEvent::MoneyDeposited { account_id, amount, transfer_id: None };
        self.append(account_id, ExpectedVersion::StreamExists, event)
    }

    fn withdraw(&self, account_id: u64, amount: Cents) -> Result<u64, Error> {
        let event = AccountEvent::MoneyWithdrawn { account_id, amount, transfer_id: None };
        self.append(account_id, ExpectedVersion::StreamExists, event)
    }
}

#[test]
fn each_account_gets_its_own_stream_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let service = AccountService { store: Store::open(dir.path()).unwrap(), events: EventCodec::default() };

    for account_id in [1, 2, 3] {
        assert_eq!(service.open_account(account_id, "Ada", 100 * account_id as Cents).unwrap(), 0);
    }
    assert_eq!(service.deposit(2, 50).unwrap(), 1);
    assert_eq!(service.withdraw(2, 30).unwrap(), 2);
    assert_eq!(service.deposit(1, 5).unwrap(), 1);

    // Opening again is refused: the stream exists.
    let again = service.open_account(2, "Eve", 0);
    assert!(matches!(again, Err(Error::WrongExpectedVersion { actual: Some(2), .. })), "{again:?}");
    // A deposit to an account that was never opened is refused too.
    assert!(matches!(service.deposit(9, 1), Err(Error::WrongExpectedVersion { actual: None, .. })));
    assert_eq!(service.store.stream_version("account-9"), None);

    let check = |store: &Store| {
        let recorded: Vec<_> = store.read_stream("account-2", 0).unwrap().map(Result::unwrap).collect();
        let types: Vec<_> = recorded.iter().map(|event| event.event_type().to_owned()).collect();
        assert_eq!(types, ["AccountOpened", "MoneyDeposited", "MoneyWithdrawn"]);
        assert_eq!(recorded.iter().map(|event| event.offset()).collect::<Vec<_>>(), [0, 1, 2]);
        assert!(recorded.iter().all(|event| event.codec() == BincodeCodec::ID && event.stream() == "account-2"));
        let events = EventCodec::<AccountEvent>::default();
        let decoded: Vec<_> = recorded.iter().map(|event| events.decode(event).unwrap()).collect();
        assert_eq!(
            decoded,
            [
                AccountEvent::AccountOpened { account_id: 2, owner: "Ada".into(), initial_balance: 200 },
                AccountEvent::MoneyDeposited { account_id: 2, amount: 50, transfer_id: None },
                AccountEvent::MoneyWithdrawn { account_id: 2, amount: 30, transfer_id: None },
            ]
        );
        assert_eq!(store.stream_version("account-1"), Some(1));
        assert_eq!(store.stream_version("account-3"), Some(0));
    };
    check(&service.store);

    service.store.close().unwrap();
    let store = Store::open(dir.path()).unwrap();
    check(&store);
}
