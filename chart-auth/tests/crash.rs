//! A writer is killed with SIGKILL at random moments, again and again. After each kill,
//! every acknowledged record must open, and no file may be torn.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use chart_auth::vault::{FileStore, KeyId, Keyring, Vault};
use chart_auth::{AccessToken, ProviderId};

const KEY: [u8; 32] = [0x42; 32];
const ACCOUNTS: u64 = 12;

fn vault(dir: &std::path::Path) -> Vault<FileStore> {
    Vault::new(
        "client",
        Keyring::from_key(KeyId(1), &KEY).unwrap(),
        FileStore::open(dir).unwrap(),
    )
}

/// The child: writes records in a loop and acknowledges each one on stdout once `put`
/// has returned. It does nothing unless started by the parent test.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var("CHART_CRASH_DIR") else {
        return;
    };
    let start: u64 = std::env::var("CHART_CRASH_START").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let vault = vault(dir.as_ref());
    let mut out = std::io::stdout().lock();
    for n in start.. {
        let account = format!("acct-{}", n % ACCOUNTS);
        rt.block_on(vault.put(
            &account,
            &ProviderId::Irs,
            &AccessToken::new(format!("token-{n}")),
        ))
        .unwrap();
        writeln!(out, "ack {account} {n}").unwrap();
        out.flush().unwrap();
    }
}

#[test]
fn killed_writers_never_lose_acknowledged_records() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked: HashMap<String, u64> = HashMap::new();
    let mut next = 0u64;
    // Writes that were under way at a kill: they may or may not have landed.
    let mut in_flight = std::collections::HashSet::new();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for round in 0..10 {
        let kill_after = 1 + RandomState::new().hash_one(round) % 40;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "crash_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env("CHART_CRASH_DIR", dir.path())
            .env("CHART_CRASH_START", next.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut record_ack = |line: &str, acked: &mut HashMap<String, u64>| {
            let mut parts = line.split_whitespace();
            if parts.next() != Some("ack") {
                return false;
            }
            let (account, n) = (
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().parse::<u64>().unwrap(),
            );
            acked.insert(account, n);
            next = n + 1;
            true
        };
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("child exited early").unwrap();
            seen += u64::from(record_ack(&line, &mut acked));
        }
        child.kill().unwrap(); // SIGKILL, somewhere in a later write
        child.wait().unwrap();
        // Acknowledgements still in the pipe count too.
        for line in lines.map_while(Result::ok) {
            record_ack(&line, &mut acked);
        }
        // The write under way at the kill may have landed unacknowledged; skip its number.
        let skipped = next;
        in_flight.insert(skipped);
        next = skipped + 1;

        let vault = vault(dir.path());
        let stored = rt.block_on(vault.list()).expect("no torn or corrupt file");
        for (account, n) in &acked {
            let token = rt
                .block_on(vault.unseal(account))
                .expect("an acknowledged record opens");
            let got: u64 = token
                .expose_secret()
                .trim_start_matches("token-")
                .parse()
                .unwrap();
            assert!(
                got == *n || (got > *n && in_flight.contains(&got)),
                "round {round}: {account} holds token-{got}, acked token-{n}"
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
}
