//! A writer is killed with SIGKILL at seeded random moments, 100 times. After each
//! kill, every acknowledged record must open, and no file may be torn. The kill points
//! are printed with their seed (`CHART_CRASH_SEED` replays a run), and the test counts
//! the kills that landed in the middle of a write: a run where none did proves nothing,
//! so it fails.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chart_auth::vault::{FileStore, KeyId, Keyring, Vault};
use chart_auth::{AccessToken, ProviderId};

const KEY: [u8; 32] = [0x42; 32];
const ACCOUNTS: u64 = 12;
const ROUNDS: u64 = 100;
/// Kills that must land mid-write. Where a kill lands depends on the machine's load, so
/// rounds go on (up to `MAX_ROUNDS`) until this many did, rather than hoping for them.
const MID_WRITE_KILLS: usize = 10;
const MAX_ROUNDS: u64 = 1_000;

fn vault(dir: &std::path::Path) -> Vault<FileStore> {
    Vault::new(
        "client",
        Keyring::from_key(KeyId(1), &KEY).unwrap(),
        FileStore::open(dir).unwrap(),
    )
}

/// The child half, started by `killed_writers_never_lose_acknowledged_records`: writes
/// records in a loop, saying `begin N` before each `put` and `ack ACCOUNT N` once it
/// returned. Ignored on its own; it needs the parent's environment.
#[test]
#[ignore = "the child half of killed_writers_never_lose_acknowledged_records"]
fn crash_child() {
    let dir = std::env::var("CHART_CRASH_DIR").expect("started by the parent test");
    let start: u64 = std::env::var("CHART_CRASH_START").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let vault = vault(dir.as_ref());
    let mut out = std::io::stdout().lock();
    for n in start.. {
        let account = format!("acct-{}", n % ACCOUNTS);
        writeln!(out, "begin {n}").unwrap();
        out.flush().unwrap();
        rt.block_on(vault.put(
            &owner(),
            &account,
            &ProviderId::Irs,
            &AccessToken::new(format!("token-{n}")),
        ))
        .unwrap();
        writeln!(out, "ack {account} {n}").unwrap();
        out.flush().unwrap();
    }
}

/// xorshift64*: small, seedable, and enough to spread kill points.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[test]
fn killed_writers_never_lose_acknowledged_records() {
    let seed = std::env::var("CHART_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    println!("crash test seed {seed} (CHART_CRASH_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut next = 0u64;
    // Writes that were under way at a kill: they may or may not have landed.
    let mut in_flight = HashSet::new();
    let mut mid_write = 0;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut rounds = 0;
    for round in 0..MAX_ROUNDS {
        if round >= ROUNDS && mid_write >= MID_WRITE_KILLS {
            break;
        }
        rounds = round + 1;
        // After 1 to 8 acknowledged writes, wait 0 to 3 ms more: writes take about a
        // millisecond (two fsyncs), so kills land before, inside and after them.
        let kill_after = 1 + rng.next() % 8;
        let delay = Duration::from_micros(rng.next() % 3_000);
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads=1", "-q"])
            .env("CHART_CRASH_DIR", dir.path())
            .env("CHART_CRASH_START", next.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut last_begin = None;
        let mut record = |line: &str, acked: &mut HashMap<String, u64>| {
            let mut parts = line.split_whitespace();
            match parts.next() {
                Some("begin") => {
                    last_begin = Some(parts.next().unwrap().parse::<u64>().unwrap());
                    false
                }
                Some("ack") => {
                    let account = parts.next().unwrap().to_owned();
                    let n = parts.next().unwrap().parse::<u64>().unwrap();
                    acked.insert(account, n);
                    next = n + 1;
                    last_begin = None;
                    true
                }
                _ => false,
            }
        };
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("child exited early").unwrap();
            seen += u64::from(record(&line, &mut acked));
        }
        let until = Instant::now() + delay;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        // Lines still in the pipe count too.
        for line in lines.map_while(Result::ok) {
            record(&line, &mut acked);
        }
        let landed_mid_write = last_begin.is_some();
        mid_write += usize::from(landed_mid_write);
        println!(
            "round {round}: killed {} µs after ack {seen}{}",
            delay.as_micros(),
            if landed_mid_write { ", mid-write" } else { "" }
        );
        // The write under way at the kill may have landed unacknowledged; skip its number.
        let skipped = last_begin.unwrap_or(next).max(next);
        in_flight.insert(skipped);
        next = skipped + 1;

        let vault = vault(dir.path());
        let stored = rt
            .block_on(vault.list(&owner()))
            .expect("no torn or corrupt file");
        for (account, n) in &acked {
            let token = rt
                .block_on(vault.unseal(&owner(), account))
                .expect("an acknowledged record opens");
            let got: u64 = token
                .expose_secret()
                .trim_start_matches("token-")
                .parse()
                .unwrap();
            assert!(
                got == *n || (got > *n && in_flight.contains(&got)),
                "seed {seed}, round {round}: {account} holds token-{got}, acked token-{n}"
            );
        }
        assert!(stored.len() >= acked.len());
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(
                !name.to_string_lossy().starts_with(".tmp-"),
                "temp files are cleaned on open"
            );
        }
    }
    println!("{mid_write} of {rounds} kills landed mid-write (seed {seed})");
    assert!(
        mid_write >= MID_WRITE_KILLS,
        "only {mid_write} of {rounds} kills landed mid-write: the test proves little"
    );
}

#[test]
fn two_processes_writing_at_once_leave_whole_records() {
    let dir = tempfile::tempdir().unwrap();
    let spawn = |start: u64| {
        Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--ignored", "--nocapture"])
            .args(["--test-threads=1", "-q"])
            .env("CHART_CRASH_DIR", dir.path())
            .env("CHART_CRASH_START", start.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut writers = [spawn(0), spawn(1_000_000)];
    // Per writer: the last token acknowledged per account, and what was begun.
    let mut last_ack: Vec<HashMap<String, u64>> = vec![HashMap::new(), HashMap::new()];
    let mut begun: HashSet<u64> = HashSet::new();
    let mut readers: Vec<_> = writers
        .iter_mut()
        .map(|w| BufReader::new(w.stdout.take().unwrap()).lines())
        .collect();
    // Interleave: 60 acknowledgements from each, both writing all the while.
    for _ in 0..60 {
        for (i, lines) in readers.iter_mut().enumerate() {
            loop {
                let line = lines.next().expect("a writer exited early").unwrap();
                let mut parts = line.split_whitespace();
                match parts.next() {
                    Some("begin") => {
                        begun.insert(parts.next().unwrap().parse().unwrap());
                    }
                    Some("ack") => {
                        let account = parts.next().unwrap().to_owned();
                        last_ack[i].insert(account, parts.next().unwrap().parse().unwrap());
                        break;
                    }
                    _ => {}
                }
            }
        }
    }
    for w in &mut writers {
        w.kill().unwrap();
        w.wait().unwrap();
    }
    for lines in readers {
        for line in lines.map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("begin ") {
                begun.insert(n.parse().unwrap());
            }
        }
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let vault = vault(dir.path());
    let accounts = rt
        .block_on(vault.list(&owner()))
        .expect("no torn or corrupt file");
    assert_eq!(accounts.len() as u64, ACCOUNTS);
    for account in accounts {
        let account = account.account_id().to_owned();
        let token = rt
            .block_on(vault.unseal(&owner(), &account))
            .expect("every record opens");
        let n: u64 = token
            .expose_secret()
            .trim_start_matches("token-")
            .parse()
            .unwrap();
        // The last write to land is the last one acknowledged by either writer, or one
        // still under way: never an older, overwritten value.
        let last: Vec<u64> = last_ack
            .iter()
            .filter_map(|m| m.get(&account))
            .copied()
            .collect();
        assert!(
            last.contains(&n)
                || (begun.contains(&n)
                    && last
                        .iter()
                        .all(|l| n > *l || (n >= 1_000_000) != (*l >= 1_000_000))),
            "{account} holds token-{n}; last acknowledged {last:?}"
        );
    }
}

/// The user whose accounts these records are.
fn owner() -> chart_auth::Owner {
    chart_auth::Owner::new("owner-test-user").unwrap()
}
