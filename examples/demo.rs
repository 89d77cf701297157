//! A small demo: opens the store in `./demo-data`, appends to a few accounts, reads them back.
//! Run it twice: the second run finds the events of the first.
use annals::{EventData, ExpectedVersion, Store};

fn main() -> annals::Result<()> {
    let store = Store::open("demo-data")?;
    let before = store.head_position().map_or(0, |head| head + 1);
    for account in 0..3 {
        let stream = format!("account-{account}");
        store.append(
            &stream,
            ExpectedVersion::Any,
            &[EventData::new("MoneyDeposited", format!("{{\"amount\":{}}}", 10 * (account + 1)))],
        )?;
    }
    println!("events before this run: {before}, after: {}", store.head_position().map_or(0, |head| head + 1));
    for event in store.read_stream("account-1", 0)? {
        let event = event?;
        println!(
            "account-1 #{} at position {}: {} {}",
            event.offset(),
            event.position(),
            event.event_type(),
            String::from_utf8_lossy(event.data())
        );
    }
    store.close()
}
