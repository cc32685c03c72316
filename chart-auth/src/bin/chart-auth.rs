//! `chart-auth`: manage the vault's keyring and sealed records.
//!
//! ```text
//! chart-auth keygen --keyring keys.txt
//! chart-auth keyring add --keyring keys.txt
//! chart-auth keyring promote --keyring keys.txt 2
//! chart-auth rewrap --keyring keys.txt --store /var/lib/app/chart-tokens --client-id my-app
//! chart-auth keyring retire --keyring keys.txt --store /var/lib/app/chart-tokens 1
//! chart-auth inspect --keyring keys.txt --store /var/lib/app/chart-tokens --client-id my-app
//! ```
//!
//! It never prints key material or plaintext tokens. Every change to a keyring holds an
//! exclusive lock on `<keyring>.lock`, so two runs cannot lose each other's keys.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chart_auth::vault::{
    FileStore, FileStoreOptions, KeyId, KeyStatus, Keyring, TokenStore, Vault, sealed_key_id,
};
use clap::{Parser, Subcommand};

/// Records unsealed per key by `inspect`, to catch a wrong keyring or client id.
const INSPECT_SAMPLE: usize = 3;

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
    /// Change a keyring: add, promote, retire or activate keys.
    Keyring {
        #[command(subcommand)]
        action: KeyringAction,
    },
    /// Re-seal every record under the primary key, without revealing plaintext.
    Rewrap {
        /// The keyring file.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
        /// The FileStore directory (it must exist).
        #[arg(long)]
        store: PathBuf,
        /// The OAuth client id the tokens were issued to (part of what seals them).
        #[arg(long, env = "CHART_CLIENT_ID")]
        client_id: String,
    },
    /// Show key ids, their status, how many records each key seals, and whether a
    /// sample of them unseals.
    Inspect {
        /// The keyring file.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
        /// The FileStore directory (it must exist), to count and check records per key.
        #[arg(long)]
        store: Option<PathBuf>,
        /// The OAuth client id the tokens were issued to; needed to check records.
        #[arg(long, env = "CHART_CLIENT_ID")]
        client_id: Option<String>,
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
    /// Retire a key: records still under it no longer unseal. Refused while the store
    /// holds records under it; run `rewrap` first.
    Retire {
        /// The keyring file.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
        /// The FileStore directory, checked for records still under the key.
        #[arg(long, required_unless_present = "force")]
        store: Option<PathBuf>,
        /// Retire even though records are (or may be) still sealed under the key.
        #[arg(long)]
        force: bool,
        /// The key id.
        id: u32,
    },
    /// Undo a retire: the key unseals again (it stays active, not primary).
    Activate {
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

/// Holds `<keyring>.lock` exclusively until dropped.
fn lock_keyring(path: &Path) -> Result<File> {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    let lock_path = PathBuf::from(name);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
    file.lock()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    Ok(file)
}

/// Loads, edits and saves a keyring under its lock.
fn change(path: &Path, edit: impl FnOnce(&mut Keyring) -> Result<String>) -> Result<()> {
    if !path.is_file() {
        return Err(format!("cannot read {}: no such keyring file", path.display()).into());
    }
    let _lock = lock_keyring(path)?;
    let mut ring = Keyring::load(path)?;
    let message = edit(&mut ring)?;
    ring.save(path)?;
    println!("{message}");
    Ok(())
}

/// An existing store directory: a typo must not look like an empty store.
fn existing_store(dir: &Path) -> Result<FileStore> {
    if !dir.is_dir() {
        return Err(format!("no store directory at {}", dir.display()).into());
    }
    Ok(FileStore::open_with(dir, FileStoreOptions::default())?)
}

/// How many records each key seals.
async fn count_by_key(store: &FileStore) -> Result<BTreeMap<KeyId, Vec<String>>> {
    let mut by_key: BTreeMap<KeyId, Vec<String>> = BTreeMap::new();
    for account in store.list().await? {
        if let Some(record) = store.get(&account).await? {
            by_key
                .entry(sealed_key_id(&record.sealed)?)
                .or_default()
                .push(account);
        }
    }
    Ok(by_key)
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Keygen { keyring } => {
            let _lock = lock_keyring(&keyring)?;
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
                ring.add_key()?
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
            action:
                KeyringAction::Retire {
                    keyring,
                    store,
                    force,
                    id,
                },
        } => {
            let still = match &store {
                Some(dir) => count_by_key(&existing_store(dir)?)
                    .await?
                    .remove(&KeyId(id))
                    .map_or(0, |accounts| accounts.len()),
                None => 0,
            };
            if still > 0 && !force {
                return Err(format!(
                    "{still} record(s) are still sealed under key {id}; run `rewrap` first \
                     (or pass --force to retire it anyway, and lose them)"
                )
                .into());
            }
            change(&keyring, |ring| {
                ring.retire(KeyId(id))?;
                Ok(format!(
                    "key {id} is retired; records under it no longer unseal \
                     (`keyring activate {id}` undoes this)"
                ))
            })?
        }
        Command::Keyring {
            action: KeyringAction::Activate { keyring, id },
        } => change(&keyring, |ring| {
            ring.activate(KeyId(id))?;
            Ok(format!("key {id} is active again; its records unseal"))
        })?,
        Command::Rewrap {
            keyring,
            store,
            client_id,
        } => {
            let vault = Vault::new(client_id, Keyring::load(&keyring)?, existing_store(&store)?);
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
                .await;
            bar.finish_and_clear();
            let report = report
                .map_err(|e| format!("{e}; the keyring or the client id may be the wrong one"))?;
            println!(
                "rewrapped {} record(s) to key {}; {} already under it; {} changed meanwhile (left as written)",
                report.rewrapped,
                vault.with_keyring(|k| k.primary()),
                report.unchanged,
                report.raced
            );
        }
        Command::Inspect {
            keyring,
            store,
            client_id,
        } => inspect(&keyring, store.as_deref(), client_id).await?,
    }
    Ok(())
}

async fn inspect(keyring: &Path, store: Option<&Path>, client_id: Option<String>) -> Result<()> {
    let ring = Keyring::load(keyring)?;
    let statuses: Vec<(KeyId, KeyStatus)> = ring.keys().collect();
    let Some(dir) = store else {
        println!("{:>8}  {:<8}", "key id", "status");
        for (id, status) in statuses {
            println!("{:>8}  {:<8}", id.0, format!("{status:?}").to_lowercase());
        }
        return Ok(());
    };
    let store = existing_store(dir)?;
    let mut by_key = count_by_key(&store).await?;
    let total: usize = by_key.values().map(Vec::len).sum();
    let vault = client_id.map(|id| Vault::new(id, ring, store));
    println!("{:>8}  {:<8}  records", "key id", "status");
    let mut failed: Vec<(String, String)> = Vec::new();
    for (id, status) in statuses {
        let accounts = by_key.remove(&id).unwrap_or_default();
        println!(
            "{:>8}  {:<8}  {}",
            id.0,
            format!("{status:?}").to_lowercase(),
            accounts.len()
        );
        if let Some(vault) = &vault {
            for account in accounts.iter().take(INSPECT_SAMPLE) {
                if let Err(e) = vault.unseal(account).await {
                    failed.push((account.clone(), e.to_string()));
                }
            }
        }
    }
    for (id, accounts) in by_key {
        println!(
            "{:>8}  {:<8}  {}   (not in this keyring: these records cannot unseal)",
            id.0,
            "missing",
            accounts.len()
        );
    }
    println!("{total} record(s) in all");
    if vault.is_none() {
        println!("(give --client-id or CHART_CLIENT_ID to check that records unseal)");
    }
    if !failed.is_empty() {
        for (account, error) in &failed {
            eprintln!("record {account:?} does not unseal: {error}");
        }
        return Err(format!(
            "{} sampled record(s) do not unseal: most likely this is the wrong keyring \
             (or the wrong client id) for this store",
            failed.len()
        )
        .into());
    }
    Ok(())
}
