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
//! With the `pkcs11` feature, data keys can be kept wrapped by a key-encryption key
//! (KEK) in an HSM. `--pkcs11-module`, `--token-label` and `--key-label` (or
//! `CHART_PKCS11_MODULE`, `CHART_PKCS11_TOKEN`, `CHART_PKCS11_KEY`) name it, and every
//! command then reads and writes the keyring wrapped. The PIN comes from `--pin-file`,
//! `CHART_PKCS11_PIN_FILE` or `CHART_PKCS11_PIN`, never from the command line:
//!
//! ```text
//! chart-auth kek create                    # a non-extractable AES-256 KEK in the token
//! chart-auth keyring wrap --keyring keys.txt
//! chart-auth kek rotate --keyring keys.txt --new-key-label chart-kek-2
//! ```
//!
//! It never prints key material or plaintext tokens. Every change to a keyring holds an
//! exclusive lock on `<keyring>.lock`, so two runs cannot lose each other's keys.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use chart_auth::Owner;
use chart_auth::vault::{
    FileStore, FileStoreOptions, KeyId, KeySource, KeyStatus, Keyring, Plaintext, RecordKey,
    TokenStore, Vault, sealed_key_id,
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
    #[cfg(feature = "pkcs11")]
    #[command(flatten)]
    hsm: HsmArgs,
}

/// The HSM that holds the key-encryption key (feature `pkcs11`).
#[cfg(feature = "pkcs11")]
#[derive(Debug, clap::Args)]
struct HsmArgs {
    /// The PKCS#11 module (a .so) whose token holds the key-encryption key. With it,
    /// the keyring's data keys are read and written wrapped by that key; an empty value
    /// means none.
    #[arg(long, global = true, env = "CHART_PKCS11_MODULE")]
    pkcs11_module: Option<PathBuf>,
    /// The token's label.
    #[arg(long, global = true, env = "CHART_PKCS11_TOKEN")]
    token_label: Option<String>,
    /// The key-encryption key's label.
    #[arg(long, global = true, env = "CHART_PKCS11_KEY")]
    key_label: Option<String>,
    /// A file (mode 0600) holding the user PIN; else CHART_PKCS11_PIN is read. The PIN
    /// is never taken from the command line, where `ps` would show it.
    #[arg(long, global = true, env = "CHART_PKCS11_PIN_FILE")]
    pin_file: Option<PathBuf>,
}

#[cfg(feature = "pkcs11")]
impl HsmArgs {
    /// The HSM's configuration, or `None` when no module is given.
    fn config(&self) -> Result<Option<chart_auth::vault::Pkcs11Config>> {
        let Some(module) = self
            .pkcs11_module
            .as_ref()
            .filter(|m| !m.as_os_str().is_empty())
        else {
            return Ok(None);
        };
        let (Some(token), Some(key)) = (&self.token_label, &self.key_label) else {
            return Err("--pkcs11-module needs --token-label and --key-label \
                        (or CHART_PKCS11_TOKEN and CHART_PKCS11_KEY)"
                .into());
        };
        let config = chart_auth::vault::Pkcs11Config::new(module, token, key);
        Ok(Some(match &self.pin_file {
            Some(path) => config.pin_file(path)?,
            None => config.pin_from_env()?,
        }))
    }

    fn required(&self) -> Result<chart_auth::vault::Pkcs11Config> {
        self.config()?.ok_or_else(|| {
            "this needs the HSM: give --pkcs11-module, --token-label and --key-label \
             (or the CHART_PKCS11_* variables)"
                .into()
        })
    }
}

impl Cli {
    /// Where the keyring's data keys come from: the HSM when one is named, else the
    /// keyring file itself. (`kek create` makes the KEK, so it cannot open it first.)
    fn key_source(&self) -> Result<Arc<dyn KeySource>> {
        #[cfg(feature = "pkcs11")]
        if !matches!(
            self.command,
            Command::Kek {
                action: KekAction::Create
            }
        ) && let Some(config) = self.hsm.config()?
        {
            return Ok(Arc::new(config.open()?));
        }
        Ok(Arc::new(Plaintext))
    }
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
    /// Re-seal every record under the primary key and format v2, without revealing
    /// plaintext. Records from before owners existed keep no owner unless --owner or
    /// --owner-map gives them one.
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
        /// Give every record without an owner this owner (one user or tenant has them all).
        #[arg(long, conflicts_with = "owner_map")]
        owner: Option<String>,
        /// Give records without an owner the owner this file names for their account: one
        /// `ACCOUNT_ID OWNER` pair per line (from your own table of who connected what);
        /// `#` starts a comment. Accounts it does not name keep no owner.
        #[arg(long)]
        owner_map: Option<PathBuf>,
    },
    /// Manage the key-encryption key in the HSM (feature `pkcs11`).
    #[cfg(feature = "pkcs11")]
    Kek {
        #[command(subcommand)]
        action: KekAction,
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

#[cfg(feature = "pkcs11")]
#[derive(Debug, Subcommand)]
enum KekAction {
    /// Generate the key-encryption key in the token: AES-256, non-extractable, allowed
    /// to wrap and unwrap. Refuses when a key with the label exists.
    Create,
    /// Rewrap every data key of a keyring under a new KEK in the same token. Sealed
    /// records are untouched: the data keys stay the same.
    Rotate {
        /// The keyring file.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
        /// The new KEK's label (create it first with `kek create --key-label ...`).
        #[arg(long)]
        new_key_label: String,
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
    /// Wrap a plaintext keyring's data keys under the HSM's key-encryption key, in
    /// place. Afterwards the file holds no key in the clear.
    #[cfg(feature = "pkcs11")]
    Wrap {
        /// The keyring file.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
    },
    /// Write a wrapped keyring's data keys back in the clear. Refused unless forced.
    #[cfg(feature = "pkcs11")]
    Unwrap {
        /// The keyring file.
        #[arg(long, env = "CHART_KEYRING_FILE")]
        keyring: PathBuf,
        /// Write the keys to disk in the clear, knowing that whoever reads the file
        /// then reads every token.
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = cli
        .key_source()
        .and_then(|source| runtime.block_on(run(cli, source)));
    match outcome {
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
fn change(
    path: &Path,
    source: &Arc<dyn KeySource>,
    edit: impl FnOnce(&mut Keyring) -> Result<String>,
) -> Result<()> {
    if !path.is_file() {
        return Err(format!("cannot read {}: no such keyring file", path.display()).into());
    }
    let _lock = lock_keyring(path)?;
    let mut ring = Keyring::load_with(path, source.clone())?;
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

/// Which records each key seals.
async fn count_by_key(store: &FileStore) -> Result<BTreeMap<KeyId, Vec<RecordKey>>> {
    let mut by_key: BTreeMap<KeyId, Vec<RecordKey>> = BTreeMap::new();
    for key in store.list().await? {
        if let Some(record) = store.get(&key).await? {
            by_key
                .entry(sealed_key_id(&record.sealed)?)
                .or_default()
                .push(key);
        }
    }
    Ok(by_key)
}

/// Which owner a record from before owners existed gets, by its account.
type OwnerOf = Box<dyn Fn(&str) -> Option<Owner>>;

/// The owners `rewrap` gives to records without one: `--owner`, or `--owner-map`'s
/// `ACCOUNT_ID OWNER` lines.
fn legacy_owners(owner: Option<String>, owner_map: Option<&Path>) -> Result<OwnerOf> {
    if let Some(owner) = owner {
        let owner = Owner::new(&owner).map_err(|e| format!("--owner: {e}"))?;
        return Ok(Box::new(move |_| Some(owner.clone())));
    }
    let Some(path) = owner_map else {
        return Ok(Box::new(|_| None));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the owner map {}: {e}", path.display()))?;
    let mut map = BTreeMap::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = |what: &str| format!("{} line {}: {what}", path.display(), n + 1);
        let (account, owner) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| at("expected `ACCOUNT_ID OWNER`"))?;
        let owner = Owner::new(owner.trim()).map_err(|e| at(&e.to_string()))?;
        if map.insert(account.to_owned(), owner).is_some() {
            return Err(at("this account is named twice").into());
        }
    }
    Ok(Box::new(move |account| map.get(account).cloned()))
}

async fn run(cli: Cli, source: Arc<dyn KeySource>) -> Result<()> {
    match cli.command {
        Command::Keygen { keyring } => {
            let _lock = lock_keyring(&keyring)?;
            if keyring.exists() {
                return Err(format!(
                    "{} exists; refusing to overwrite a keyring",
                    keyring.display()
                )
                .into());
            }
            let mut ring = Keyring::generate();
            ring.set_key_source(source.clone());
            ring.save(&keyring)?;
            println!(
                "created {} with key {} (primary){}",
                keyring.display(),
                ring.primary(),
                kept_as(&source)
            );
        }
        Command::Keyring {
            action: KeyringAction::Add { keyring },
        } => change(&keyring, &source, |ring| {
            Ok(format!(
                "added key {} (active; promote it to seal with it)",
                ring.add_key()?
            ))
        })?,
        Command::Keyring {
            action: KeyringAction::Promote { keyring, id },
        } => change(&keyring, &source, |ring| {
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
            change(&keyring, &source, |ring| {
                ring.retire(KeyId(id))?;
                Ok(format!(
                    "key {id} is retired; records under it no longer unseal \
                     (`keyring activate {id}` undoes this)"
                ))
            })?
        }
        Command::Keyring {
            action: KeyringAction::Activate { keyring, id },
        } => change(&keyring, &source, |ring| {
            ring.activate(KeyId(id))?;
            Ok(format!("key {id} is active again; its records unseal"))
        })?,
        #[cfg(feature = "pkcs11")]
        Command::Keyring {
            action: KeyringAction::Wrap { keyring },
        } => {
            let hsm: Arc<dyn KeySource> = Arc::new(cli.hsm.required()?.open()?);
            change(
                &keyring,
                &(Arc::new(Plaintext) as Arc<dyn KeySource>),
                |ring| {
                    ring.set_key_source(hsm.clone());
                    Ok(format!(
                        "wrapped {} key(s){}; the file holds no data key in the clear",
                        ring.keys().count(),
                        kept_as(&hsm)
                    ))
                },
            )?
        }
        #[cfg(feature = "pkcs11")]
        Command::Keyring {
            action: KeyringAction::Unwrap { keyring, force },
        } => {
            if !force {
                return Err(
                    "this would write every data key to disk in the clear, so that \
                            whoever reads the file reads every token; pass --force to do it"
                        .into(),
                );
            }
            change(&keyring, &source, |ring| {
                ring.set_key_source(Arc::new(Plaintext));
                Ok(format!(
                    "unwrapped {} key(s): the file now holds them in the clear (mode 0600)",
                    ring.keys().count()
                ))
            })?
        }
        #[cfg(feature = "pkcs11")]
        Command::Kek {
            action: KekAction::Create,
        } => {
            let config = cli.hsm.required()?;
            config.create_kek()?;
            let hsm = config.open()?;
            println!("created the {}: AES-256, non-extractable", hsm.describe());
        }
        #[cfg(feature = "pkcs11")]
        Command::Kek {
            action:
                KekAction::Rotate {
                    keyring,
                    new_key_label,
                },
        } => {
            let new: Arc<dyn KeySource> =
                Arc::new(cli.hsm.required()?.with_key_label(&new_key_label).open()?);
            change(&keyring, &source, |ring| {
                ring.set_key_source(new.clone());
                Ok(format!(
                    "rewrapped {} data key(s){}; sealed records are unchanged",
                    ring.keys().count(),
                    kept_as(&new)
                ))
            })?
        }
        Command::Rewrap {
            keyring,
            store,
            client_id,
            owner,
            owner_map,
        } => {
            let owner_of = legacy_owners(owner, owner_map.as_deref())?;
            let vault = Vault::new(
                client_id,
                Keyring::load_with(&keyring, source)?,
                existing_store(&store)?,
            );
            let bar = indicatif::ProgressBar::new(0).with_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} rewrapping [{bar:30}] {pos}/{len} records",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            let report = vault
                .rewrap_with(owner_of, |done, total| {
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
            if report.unowned > 0 {
                println!(
                    "{} record(s) from before owners existed still have none, so no user can read them: \
                     give them owners with --owner-map FILE (ACCOUNT_ID OWNER per line) or --owner OWNER",
                    report.unowned
                );
            }
        }
        Command::Inspect {
            keyring,
            store,
            client_id,
        } => inspect(&keyring, source, store.as_deref(), client_id).await?,
    }
    Ok(())
}

/// How a keyring's keys are kept, for messages: nothing for plaintext.
fn kept_as(source: &Arc<dyn KeySource>) -> String {
    if source.scheme() == Plaintext.scheme() {
        return String::new();
    }
    format!(" (wrapped by {})", source.describe())
}

async fn inspect(
    keyring: &Path,
    source: Arc<dyn KeySource>,
    store: Option<&Path>,
    client_id: Option<String>,
) -> Result<()> {
    let ring = Keyring::load_with(keyring, source)?;
    println!("keys kept: {}", ring.key_source().describe());
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
    let mut failed: Vec<(RecordKey, String)> = Vec::new();
    for (id, status) in statuses {
        let accounts = by_key.remove(&id).unwrap_or_default();
        println!(
            "{:>8}  {:<8}  {}",
            id.0,
            format!("{status:?}").to_lowercase(),
            accounts.len()
        );
        if let Some(vault) = &vault {
            for key in accounts.iter().take(INSPECT_SAMPLE) {
                if let Err(e) = vault.check_record(key).await {
                    failed.push((key.clone(), e.to_string()));
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
        for (key, error) in &failed {
            eprintln!("record {:?} does not unseal: {error}", key.account_id);
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
