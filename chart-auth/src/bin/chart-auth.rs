//! `chart-auth`: manage the vault's keyring and sealed records.
//!
//! ```text
//! chart-auth keygen --keyring keys.txt
//! chart-auth keyring add --keyring keys.txt
//! chart-auth keyring promote --keyring keys.txt 2
//! chart-auth rewrap --keyring keys.txt --store /var/lib/app/chart-tokens
//! chart-auth keyring retire --keyring keys.txt 1
//! chart-auth inspect --keyring keys.txt --store /var/lib/app/chart-tokens
//! ```
//!
//! It never prints key material or plaintext tokens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chart_auth::vault::{FileStore, KeyId, Keyring, TokenStore, Vault, sealed_key_id};
use clap::{Parser, Subcommand};

/// Manage the chart-auth vault: keys and sealed records.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a new keyring file with one primary key (mode 0600). Refuses to overwrite.
    Keygen {
        /// The keyring file to create.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
    },
    /// Change a keyring: add, promote or retire keys.
    Keyring {
        #[command(subcommand)]
        action: KeyringAction,
    },
    /// Re-seal every record under the primary key, without revealing plaintext.
    Rewrap {
        /// The keyring file.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
        /// The FileStore directory.
        #[arg(long)]
        store: PathBuf,
    },
    /// Show key ids, their status, and how many records each key seals.
    Inspect {
        /// The keyring file.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
        /// The FileStore directory, to count records per key.
        #[arg(long)]
        store: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum KeyringAction {
    /// Add a fresh random key (active, not yet primary) and print its id.
    Add {
        /// The keyring file.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
    },
    /// Make a key the primary: new seals use it; the old primary stays active.
    Promote {
        /// The keyring file.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
        /// The key id.
        id: u32,
    },
    /// Retire a key: records still under it no longer open. Rewrap first.
    Retire {
        /// The keyring file.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
        /// The key id.
        id: u32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chart-auth: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn change(path: &Path, edit: impl FnOnce(&mut Keyring) -> Result<String>) -> Result<()> {
    let mut ring = Keyring::load(path)?;
    let message = edit(&mut ring)?;
    ring.save(path)?;
    println!("{message}");
    Ok(())
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Keygen { keyring } => {
            if keyring.exists() {
                return Err(format!(
                    "{} exists; refusing to overwrite a keyring",
                    keyring.display()
                )
                .into());
            }
            let ring = Keyring::generate();
            ring.save(&keyring)?;
            println!(
                "created {} with key {} (primary)",
                keyring.display(),
                ring.primary()
            );
        }
        Command::Keyring {
            action: KeyringAction::Add { keyring },
        } => change(&keyring, |ring| {
            Ok(format!(
                "added key {} (active; promote it to seal with it)",
                ring.add_key()
            ))
        })?,
        Command::Keyring {
            action: KeyringAction::Promote { keyring, id },
        } => change(&keyring, |ring| {
            ring.promote(KeyId(id))?;
            Ok(format!(
                "key {id} is now primary; run `rewrap` to move old records to it"
            ))
        })?,
        Command::Keyring {
            action: KeyringAction::Retire { keyring, id },
        } => change(&keyring, |ring| {
            ring.retire(KeyId(id))?;
            Ok(format!(
                "key {id} is retired; records under it no longer open"
            ))
        })?,
        Command::Rewrap { keyring, store } => {
            let vault = Vault::new(Keyring::load(&keyring)?, FileStore::open(&store)?);
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} rewrapping [{bar:30}] {pos}/{len} records",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            let report = vault
                .rewrap(|done, total| {
                    bar.set_length(total as u64);
                    bar.set_position(done as u64);
                })
                .await?;
            bar.finish_and_clear();
            println!(
                "rewrapped {} record(s) to key {}; {} already under it; {} changed meanwhile (left as written)",
                report.rewrapped,
                vault.with_keyring(|k| k.primary()),
                report.unchanged,
                report.raced
            );
        }
        Command::Inspect { keyring, store } => {
            let ring = Keyring::load(&keyring)?;
            let mut counts: BTreeMap<KeyId, usize> = BTreeMap::new();
            let mut total = 0;
            if let Some(dir) = &store {
                let store = FileStore::open(dir)?;
                for account in store.list().await? {
                    if let Some(record) = store.get(&account).await? {
                        *counts.entry(sealed_key_id(&record.sealed)?).or_default() += 1;
                        total += 1;
                    }
                }
            }
            println!(
                "{:>8}  {:<8}  {}",
                "key id",
                "status",
                if store.is_some() { "records" } else { "" }
            );
            for (id, status) in ring.keys() {
                let status = format!("{status:?}").to_lowercase();
                let n = store
                    .as_ref()
                    .map(|_| counts.remove(&id).unwrap_or(0).to_string())
                    .unwrap_or_default();
                println!("{:>8}  {:<8}  {n}", id.0, status);
            }
            for (id, n) in counts {
                println!(
                    "{:>8}  {:<8}  {n}   (not in this keyring: these records cannot open)",
                    id.0, "missing"
                );
            }
            if store.is_some() {
                println!("{total} record(s) in all");
            }
        }
    }
    Ok(())
}
