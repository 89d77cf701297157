//! A bank on annals: thousands of accounts, each an event-sourced aggregate in its own stream, changed by
//! deposits, withdrawals and transfers from several threads at once.
//!
//!     cargo run --release --example bank            # data in ./bank-data
//!     cargo run --release --example bank -- DIR     # data in DIR
//!
//! Run it twice: the second run finds the first run's accounts and checks that every cent survived the
//! restart. What it shows, in order: durable appends from many threads (throughput), the balance and audit
//! trail of one account, a projection that follows the commands live and resumes from its checkpoint (kept in
//! the store, with its state) after a restart, and what snapshots do
//! to the time it takes to load an account with a long history. Money is counted in cents, so every total is
//! exact: at each step the sum of all balances must equal what was opened + deposited − withdrawn, and the
//! program stops with an error if it does not.

#[path = "bank/account.rs"]
mod account;

use std::error::Error;
use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use account::{transfer, Account, AccountError, AccountEvent, Cents, TRANSFERS_STREAM};
use annals::{
    Filter, Loaded, Projection, ProjectionOptions, ProjectionRunner, RecordedEvent, Repository, RepositoryError,
    SnapshotPolicy, Store,
};
use serde::{Deserialize, Serialize};

type Result<T, E = Box<dyn Error + Send + Sync>> = std::result::Result<T, E>;

/// Accounts 1..=ACCOUNTS are customers; account 0 is the busy one with a long history.
const ACCOUNTS: u64 = 5_000;
const OPENING_BALANCE: Cents = 1_000 * 100;
const THREADS: u64 = 8;
const COMMANDS_PER_THREAD: u64 = 500;
/// Events added to the busy account per run, in appends of `BUSY_BATCH`.
const BUSY_EVENTS: u64 = 20_000;
const BUSY_BATCH: u64 = 500;
const SNAPSHOT_EVERY_EVENTS: u64 = 100;

fn main() -> Result<()> {
    let dir = std::env::args_os().nth(1).map_or_else(|| PathBuf::from("bank-data"), PathBuf::from);
    let started = Instant::now();
    let store = Store::open(&dir)?;
    let repository =
        Repository::<Account>::new(store.clone()).with_snapshot_policy(SnapshotPolicy::every(SNAPSHOT_EVERY_EVENTS));
    // Earlier versions of this demo kept the projection's checkpoint in a file of their own: no longer needed.
    let _ = std::fs::remove_file(dir.join("totals-projection.json"));

    let options = ProjectionOptions::default();
    if store.head_position().is_none() {
        println!("annals bank demo: a new bank in {}", dir.display());
    } else {
        println!(
            "annals bank demo: reopened {} ({} streams, {} events from earlier runs)",
            dir.display(),
            group(store.stream_count() as u64),
            group(store.head_position().map_or(0, |head| head + 1))
        );
        // The restart check: the projection (resumed from its checkpoint in the store) and the accounts (rebuilt
        // from their events and snapshots) must agree to the cent on all the money the earlier runs left.
        let (_, saved_at) = ProjectionRunner::<MoneyInTheBank>::saved(&store, MoneyInTheBank::NAME)?;
        let totals = ProjectionRunner::<MoneyInTheBank>::start(&store, MoneyInTheBank::NAME, options)?;
        let start = Instant::now();
        totals.wait_for(store.head_position().unwrap_or(0))?;
        let caught_up_in = start.elapsed();
        let balances = sum_of_balances(&repository)?;
        check(
            balances == totals.state().money,
            "after the restart, the balances do not add up to the projection's total",
        )?;
        println!(
            "  after restart: {} accounts hold {}, as the events say (projection resumed after position {}, caught up in {}) ✓",
            group(ACCOUNTS + 1),
            money(balances),
            saved_at.map_or_else(|| "-".to_owned(), group),
            millis(caught_up_in)
        );
        totals.stop()?;
    }

    // The projection follows the commands below live, on its own thread.
    let totals = ProjectionRunner::<MoneyInTheBank>::start(&store, MoneyInTheBank::NAME, options)?;
    if (0..=ACCOUNTS).any(|id| store.stream_version(&format!("account-{id}")).is_none()) {
        open_accounts(&repository)?;
    }
    run_commands(&repository)?;
    grow_busy_account(&repository)?;
    let busiest = (1..=ACCOUNTS).max_by_key(|id| store.stream_version(&format!("account-{id}"))).unwrap_or(1);
    show_account(&repository, busiest)?;

    println!("projection \"money in the bank\" (category account), followed live, checkpointed in the store:");
    let start = Instant::now();
    let head = store.head_position().unwrap_or(0);
    totals.wait_for(head)?;
    let lag = start.elapsed();
    let (state_money, applied) = {
        let state = totals.state();
        (state.money, state.events)
    };
    println!(
        "  {} account events applied; {} behind the last command when it ended; {} transfers so far; money in the bank {}",
        group(applied),
        millis(lag),
        group(store.stream_version(TRANSFERS_STREAM).map_or(0, |version| version + 1)),
        money(state_money)
    );
    let balances = sum_of_balances(&repository)?;
    check(balances == state_money, "the balances do not add up to the projection's total")?;
    println!(
        "  sum of all {} balances: {} = opened + deposited − withdrawn; transfers moved money, never made it ✓",
        group(ACCOUNTS + 1),
        money(balances)
    );
    totals.stop()?;

    show_snapshot_effect(&repository)?;
    store.close()?;
    println!(
        "done in {:.1} s. Run it again: the next run reopens {} and checks every cent survived.",
        started.elapsed().as_secs_f64(),
        dir.display()
    );
    Ok(())
}

/// Opens accounts 0..=ACCOUNTS from several threads, each open one durable append.
fn open_accounts(repository: &Repository<Account>) -> Result<()> {
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                scope.spawn(move || -> Result<()> {
                    for id in (0..=ACCOUNTS).filter(|id| id % THREADS == thread) {
                        if repository.store().stream_version(&format!("account-{id}")).is_some() {
                            continue; // opened by an earlier run that stopped half-way
                        }
                        let mut account = Loaded::<Account>::new(id);
                        let balance = if id == 0 { 0 } else { OPENING_BALANCE };
                        let events = account.state().open(id, &format!("customer {id}"), balance)?;
                        repository.save(&mut account, events)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| worker.join().expect("an opening thread panicked"))
    })?;
    let elapsed = start.elapsed();
    println!(
        "opened {} accounts with {} each (and account-0, empty) from {THREADS} threads in {}: {} durable appends/s",
        group(ACCOUNTS),
        money(OPENING_BALANCE),
        seconds(elapsed),
        group(((ACCOUNTS + 1) as f64 / elapsed.as_secs_f64()) as u64)
    );
    Ok(())
}

/// A small deterministic generator (xorshift64), so that the demo needs no extra crate.
struct Rng(u64);

impl Rng {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Deposits, withdrawals and transfers between random customers from several threads; a command that loses
/// a race (another thread changed the account since it was loaded) is retried on fresh state.
fn run_commands(repository: &Repository<Account>) -> Result<()> {
    let seed = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_nanos() as u64 | 1;
    let before = sum_of_balances(repository)?;
    let (deposited, withdrawn) = (AtomicI64::new(0), AtomicI64::new(0));
    let (events, conflicts, refused) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let start = Instant::now();
    std::thread::scope(|scope| -> Result<()> {
        let workers: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (deposited, withdrawn, events, conflicts, refused) =
                    (&deposited, &withdrawn, &events, &conflicts, &refused);
                scope.spawn(move || -> Result<()> {
                    let mut rng = Rng(seed.wrapping_mul(thread + 1) | 1);
                    for n in 0..COMMANDS_PER_THREAD {
                        let id = 1 + rng.below(ACCOUNTS);
                        let amount = 1 + rng.below(500 * 100) as Cents;
                        let kind = rng.below(10);
                        let other = 1 + (id + rng.below(ACCOUNTS - 1)) % ACCOUNTS;
                        let transfer_id = format!("{:04x}-{thread}-{n}", (seed >> 20) & 0xffff);
                        loop {
                            let outcome = match kind {
                                0..=3 => repository.execute(id, |account| account.deposit(amount)).map(|_| 1),
                                4..=5 => repository.execute(id, |account| account.withdraw(amount)).map(|_| 1),
                                _ => transfer(repository, id, other, amount, &transfer_id).map(|()| 3),
                            };
                            match outcome {
                                Ok(appended) => {
                                    events.fetch_add(appended, Ordering::Relaxed);
                                    match kind {
                                        0..=3 => deposited.fetch_add(amount, Ordering::Relaxed),
                                        4..=5 => withdrawn.fetch_add(amount, Ordering::Relaxed),
                                        _ => 0,
                                    };
                                }
                                Err(RepositoryError::Domain(AccountError::InsufficientFunds { .. })) => {
                                    refused.fetch_add(1, Ordering::Relaxed);
                                }
                                Err(error) if error.is_conflict() => {
                                    conflicts.fetch_add(1, Ordering::Relaxed);
                                    continue;
                                }
                                Err(error) => return Err(error.into()),
                            }
                            break;
                        }
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|worker| worker.join().expect("a command thread panicked"))
    })?;
    let elapsed = start.elapsed();
    let commands = THREADS * COMMANDS_PER_THREAD;
    println!(
        "{} commands (40% deposits, 20% withdrawals, 40% transfers) from {THREADS} threads in {}:",
        group(commands),
        seconds(elapsed)
    );
    println!(
        "  {} commands/s, {} events/s, every append durable; {} lost a race and were retried, {} refused \
         (insufficient funds)",
        group((commands as f64 / elapsed.as_secs_f64()) as u64),
        group((events.load(Ordering::Relaxed) as f64 / elapsed.as_secs_f64()) as u64),
        group(conflicts.load(Ordering::Relaxed)),
        group(refused.load(Ordering::Relaxed))
    );
    let after = sum_of_balances(repository)?;
    let (deposited, withdrawn) = (deposited.into_inner(), withdrawn.into_inner());
    check(after == before + deposited - withdrawn, "money was created or lost by the commands")?;
    println!(
        "  balances: {} before + {} deposited − {} withdrawn = {} after ✓",
        money(before),
        money(deposited),
        money(withdrawn),
        money(after)
    );
    Ok(())
}

/// Adds `BUSY_EVENTS` one-cent deposits to account 0, in appends of `BUSY_BATCH` events.
fn grow_busy_account(repository: &Repository<Account>) -> Result<()> {
    let start = Instant::now();
    let mut busy = repository.load(0)?;
    for _ in 0..BUSY_EVENTS / BUSY_BATCH {
        let events: Vec<AccountEvent> = (0..BUSY_BATCH).flat_map(|_| busy.state().deposit(1).unwrap()).collect();
        repository.save(&mut busy, events)?;
    }
    let elapsed = start.elapsed();
    println!(
        "account-0: {} one-cent deposits in appends of {BUSY_BATCH} in {}: {} events/s",
        group(BUSY_EVENTS),
        seconds(elapsed),
        group((BUSY_EVENTS as f64 / elapsed.as_secs_f64()) as u64)
    );
    Ok(())
}

fn show_account(repository: &Repository<Account>, id: u64) -> Result<()> {
    let account = repository.load(id)?;
    let history = repository.store().stream_version(account.stream()).map_or(0, |last| last + 1);
    println!(
        "{}: {}, balance {}, {} events:",
        account.stream(),
        account.state().owner,
        money(account.state().balance),
        group(history)
    );
    const SHOWN: u64 = 6;
    let from = history.saturating_sub(SHOWN);
    if from > 0 {
        println!("  … {} earlier event{}", group(from), if from == 1 { "" } else { "s" });
    }
    for recorded in repository.store().read_stream(account.stream(), from)? {
        let recorded = recorded?;
        let what = match repository.events().decode(&recorded)? {
            AccountEvent::AccountOpened { owner, initial_balance, .. } => {
                format!("opened for {owner} with {}", money(initial_balance))
            }
            AccountEvent::MoneyDeposited { amount, transfer_id: None, .. } => format!("+{}", money(amount)),
            AccountEvent::MoneyWithdrawn { amount, transfer_id: None, .. } => format!("−{}", money(amount)),
            AccountEvent::MoneyDeposited { amount, transfer_id: Some(id), .. } => {
                format!("+{} (transfer {id})", money(amount))
            }
            AccountEvent::MoneyWithdrawn { amount, transfer_id: Some(id), .. } => {
                format!("−{} (transfer {id})", money(amount))
            }
            AccountEvent::AccountClosed { .. } => "closed".to_owned(),
        };
        println!(
            "  #{:<3} {} UTC  {:<15} id …{}  {}",
            recorded.offset(),
            utc_time(recorded.timestamp()),
            recorded.event_type(),
            &recorded.event_id().simple().to_string()[24..],
            what
        );
    }
    Ok(())
}

/// Loads the busy account with and without snapshots and reports both times.
fn show_snapshot_effect(repository: &Repository<Account>) -> Result<()> {
    fn median(mut times: Vec<Duration>) -> Duration {
        times.sort();
        times[times.len() / 2]
    }
    let mut with = Vec::new();
    let mut without = Vec::new();
    let mut loaded = None;
    for _ in 0..7 {
        let start = Instant::now();
        loaded = Some(repository.load(0)?);
        with.push(start.elapsed());
        let start = Instant::now();
        let replayed = repository.load_from_events(0)?;
        without.push(start.elapsed());
        check(loaded.as_ref().map(Loaded::state) == Some(replayed.state()), "the snapshot and the events disagree")?;
    }
    let loaded = loaded.expect("loaded at least once");
    let events = loaded.version().map_or(0, |last| last + 1);
    let (with, without) = (median(with), median(without));
    println!(
        "snapshots (one every {SNAPSHOT_EVERY_EVENTS} events): loading account-0, {} events, balance {}:",
        group(events),
        money(loaded.state().balance)
    );
    println!(
        "  from the snapshot at offset {} + {} events: {}; replaying all events: {} ({:.0}× slower)",
        group(loaded.snapshot_offset().unwrap_or(0)),
        loaded.events_replayed(),
        millis(with),
        millis(without),
        without.as_secs_f64() / with.as_secs_f64().max(1e-9)
    );
    Ok(())
}

/// The sum of every account's balance, each account loaded by the repository (snapshot + tail). An account
/// not opened yet (a first run stopped half-way) holds nothing.
fn sum_of_balances(repository: &Repository<Account>) -> Result<Cents> {
    let mut sum = 0;
    for id in 0..=ACCOUNTS {
        match repository.load(id) {
            Ok(account) => sum += account.state().balance,
            Err(RepositoryError::NotFound { .. }) => {}
            Err(error) => return Err(error.into()),
        }
    }
    Ok(sum)
}

/// The money in the bank: every account event that moves money in or out, folded in global order. The runner
/// keeps this state and its position together in the store, so a restart resumes exactly where it stopped.
#[derive(Serialize, Deserialize, Default)]
struct MoneyInTheBank {
    money: Cents,
    /// Account events applied.
    events: u64,
}

impl MoneyInTheBank {
    const NAME: &'static str = "money-in-the-bank";
}

impl Projection for MoneyInTheBank {
    type Event = AccountEvent;

    fn filter() -> Filter {
        Filter::Category("account".into())
    }

    fn apply(&mut self, event: AccountEvent, _: &RecordedEvent) {
        self.money += match event {
            AccountEvent::AccountOpened { initial_balance, .. } => initial_balance,
            AccountEvent::MoneyDeposited { amount, .. } => amount,
            AccountEvent::MoneyWithdrawn { amount, .. } => -amount,
            AccountEvent::AccountClosed { .. } => 0,
        };
        self.events += 1;
    }
}

fn check(ok: bool, what: &str) -> Result<()> {
    if ok {
        Ok(())
    } else {
        Err(format!("CHECK FAILED: {what}").into())
    }
}

/// `1234567` → `1,234,567`.
fn group(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Cents as `$1,234.56`.
fn money(cents: Cents) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}${}.{:02}", group(cents.unsigned_abs() / 100), cents.unsigned_abs() % 100)
}

fn seconds(elapsed: Duration) -> String {
    format!("{:.2} s", elapsed.as_secs_f64())
}

fn millis(elapsed: Duration) -> String {
    format!("{:.2} ms", elapsed.as_secs_f64() * 1e3)
}

/// `HH:MM:SS.mmm` UTC.
fn utc_time(time: SystemTime) -> String {
    let since_epoch = time.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs() % 86_400;
    format!("{:02}:{:02}:{:02}.{:03}", seconds / 3600, seconds / 60 % 60, seconds % 60, since_epoch.subsec_millis())
}
