//! The token vault: AES-256-GCM under a rotating keyring, sealed records bound to
//! their identity, and pluggable stores.
//!
//! # Sealed format (frozen)
//! ```text
//! version(1) = 0x01 ‖ key_id(4, big endian) ‖ nonce(12) ‖ ciphertext ‖ tag(16)
//! ```
//! The AAD is `"chart-auth/vault/v1" ‖ version ‖ key_id` followed by the client id, the
//! account id and the provider id, each prefixed by its 4-byte length, so a sealed
//! token moved onto another record fails to open. Unknown versions and key ids are
//! refused before any decryption is tried.
//!
//! # Nonce budget
//! Nonces are random and 96 bits long. NIST SP 800-38D allows at most 2^32 seals per
//! key with random nonces. Each key counts its seals in this process and refuses to
//! seal past [`Keyring::DEFAULT_SEAL_LIMIT`] (2^31, half the budget), asking for a
//! rotation; [`Keyring::seals`] lets you alert well before. Rotate keys at least yearly,
//! and whenever `inspect` shows a key near the limit.
//!
//! # Rotation
//! [`Keyring::add_key`], then [`Keyring::promote`] (new seals use it, old records still
//! open), then [`Vault::rewrap`] (moves every record to the primary without handing
//! plaintext to the caller), then [`Keyring::retire`] (the old key is refused).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use zeroize::Zeroizing;

use crate::error::Error;
use crate::flow::{Connection, Exchanged, ProviderId, Stored};
use crate::secret::AccessToken;
pub use crate::store::{Expect, FileStore, MemoryStore, StoreError, StoredRecord, TokenStore};

/// The sealed format's version byte.
pub const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 4 + 12;
const TAG_LEN: usize = 16;
const KEY_LEN: usize = 32;

/// A key's 32-bit id, written into every sealed record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What a key may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyStatus {
    /// Seals new records, and opens.
    Primary,
    /// Opens older records.
    Active,
    /// Refused: records under it no longer open.
    Retired,
}

impl KeyStatus {
    fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Active => "active",
            Self::Retired => "retired",
        }
    }
}

/// Every way sealing, opening, or managing keys and records can fail. No variant ever
/// carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The sealed blob is shorter than the format allows.
    #[error("sealed record is truncated ({0} bytes)")]
    Truncated(usize),
    /// The sealed blob has a format version this build does not know.
    #[error("sealed record has unknown format version {0}")]
    UnknownVersion(u8),
    /// The sealed blob names a key that is not in the keyring.
    #[error("sealed record uses key {0}, which is not in the keyring")]
    UnknownKey(KeyId),
    /// The sealed blob names a retired key.
    #[error("sealed record uses retired key {0}")]
    KeyRetired(KeyId),
    /// Authentication failed: the blob was changed or moved onto another record.
    #[error("sealed record failed authentication (tampered, or bound to another record)")]
    Tampered,
    /// The key has sealed as many records as its nonce budget allows; rotate.
    #[error("key {0} reached its nonce budget; add and promote a new key")]
    NonceBudgetExhausted(KeyId),
    /// The keyring text or key is malformed.
    #[error("bad keyring: {0}")]
    BadKeyring(String),
    /// A keyring operation named a key that does not exist or cannot do that.
    #[error("keyring: {0}")]
    Keyring(String),
    /// No record for this account.
    #[error("no stored token for this account")]
    NotFound,
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

struct KeyEntry {
    material: Zeroizing<[u8; KEY_LEN]>,
    cipher: Aes256Gcm,
    status: KeyStatus,
    seals: AtomicU64,
}

/// A set of AES-256-GCM keys, one of them primary.
///
/// One cipher instance is kept per key (its round keys zeroize on drop).
///
/// ```
/// use chart_auth::vault::{Keyring, RecordIdentity};
/// let mut ring = Keyring::generate();
/// let id = RecordIdentity { client_id: "c", account_id: "a", provider_id: "irs" };
/// let sealed = ring.seal(&id, b"token")?;
/// let new_key = ring.add_key();
/// ring.promote(new_key)?;
/// assert_eq!(&ring.open(&id, &sealed)?[..], b"token");
/// # Ok::<(), chart_auth::vault::VaultError>(())
/// ```
pub struct Keyring {
    keys: BTreeMap<KeyId, KeyEntry>,
    primary: KeyId,
    seal_limit: u64,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.keys.iter().map(|(id, k)| (id.0, k.status.as_str())))
            .finish()
    }
}

/// The identity a sealed token is bound to (through the AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordIdentity<'a> {
    /// The OAuth client the token was issued to.
    pub client_id: &'a str,
    /// The account the token is for.
    pub account_id: &'a str,
    /// The account's tax provider.
    pub provider_id: &'a str,
}

impl RecordIdentity<'_> {
    /// Builds the AAD (on the stack when it fits) and hands it to `use_aad`.
    fn with_aad<T>(&self, key_id: KeyId, use_aad: impl FnOnce(&[u8]) -> T) -> T {
        const PREFIX: &[u8] = b"chart-auth/vault/v1";
        let parts = [self.client_id, self.account_id, self.provider_id];
        let len = PREFIX.len() + 1 + 4 + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
        let mut stack = [0u8; 256];
        let mut heap = Vec::new();
        let buf: &mut [u8] = if len <= stack.len() {
            &mut stack[..len]
        } else {
            heap.resize(len, 0);
            &mut heap
        };
        let mut at = 0;
        let mut put = |bytes: &[u8]| {
            buf[at..at + bytes.len()].copy_from_slice(bytes);
            at += bytes.len();
        };
        put(PREFIX);
        put(&[FORMAT_VERSION]);
        put(&key_id.0.to_be_bytes());
        for part in parts {
            put(&(part.len() as u32).to_be_bytes());
            put(part.as_bytes());
        }
        use_aad(buf)
    }
}

/// The key id a sealed blob names, if its header is well formed.
pub fn sealed_key_id(sealed: &[u8]) -> Result<KeyId, VaultError> {
    if sealed.len() < HEADER_LEN + TAG_LEN {
        return Err(VaultError::Truncated(sealed.len()));
    }
    if sealed[0] != FORMAT_VERSION {
        return Err(VaultError::UnknownVersion(sealed[0]));
    }
    Ok(KeyId(u32::from_be_bytes([
        sealed[1], sealed[2], sealed[3], sealed[4],
    ])))
}

impl Keyring {
    /// Seals allowed per key in one process: half of NIST's 2^32 random-nonce budget.
    pub const DEFAULT_SEAL_LIMIT: u64 = 1 << 31;

    fn entry(material: Zeroizing<[u8; KEY_LEN]>, status: KeyStatus) -> KeyEntry {
        let cipher = Aes256Gcm::new_from_slice(material.as_ref()).expect("32-byte key");
        KeyEntry {
            material,
            cipher,
            status,
            seals: AtomicU64::new(0),
        }
    }

    /// A keyring with one fresh random key, id 1, as primary.
    pub fn generate() -> Self {
        let mut keys = BTreeMap::new();
        keys.insert(KeyId(1), Self::entry(random_key(), KeyStatus::Primary));
        Self {
            keys,
            primary: KeyId(1),
            seal_limit: Self::DEFAULT_SEAL_LIMIT,
        }
    }

    /// A keyring with one key (32 raw bytes) as primary.
    pub fn from_key(id: KeyId, key: &[u8]) -> Result<Self, VaultError> {
        let material = key_array(key)?;
        let mut keys = BTreeMap::new();
        keys.insert(id, Self::entry(material, KeyStatus::Primary));
        Ok(Self {
            keys,
            primary: id,
            seal_limit: Self::DEFAULT_SEAL_LIMIT,
        })
    }

    /// Parses the keyring text format, one key a line:
    ///
    /// ```text
    /// # comments and blank lines are ignored
    /// 1 retired <base64 of 32 bytes>
    /// 2 primary <base64 of 32 bytes>
    /// ```
    ///
    /// A text that is a single base64 key is read as key 1, primary. Errors name the
    /// line, never its contents.
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        let trimmed = text.trim();
        if !trimmed.is_empty()
            && !trimmed.contains(char::is_whitespace)
            && !trimmed.starts_with('#')
        {
            let key =
                decode_key(trimmed).map_err(|r| VaultError::BadKeyring(format!("the key {r}")))?;
            return Self::from_key(KeyId(1), key.as_ref());
        }
        let mut keys = BTreeMap::new();
        let mut primary = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| VaultError::BadKeyring(format!("line {}: {reason}", n + 1));
            let mut parts = line.split_whitespace();
            let (Some(id), Some(status), Some(key), None) =
                (parts.next(), parts.next(), parts.next(), parts.next())
            else {
                return Err(bad("expected `<id> <primary|active|retired> <base64 key>`"));
            };
            let id = KeyId(
                id.parse()
                    .map_err(|_| bad("the key id is not a 32-bit number"))?,
            );
            let status = match status {
                "primary" => KeyStatus::Primary,
                "active" => KeyStatus::Active,
                "retired" => KeyStatus::Retired,
                _ => return Err(bad("the status must be primary, active or retired")),
            };
            let key = decode_key(key).map_err(|r| bad(&format!("the key {r}")))?;
            if status == KeyStatus::Primary && primary.replace(id).is_some() {
                return Err(bad("a second primary key"));
            }
            if keys.insert(id, Self::entry(key, status)).is_some() {
                return Err(bad("a duplicate key id"));
            }
        }
        let primary = primary.ok_or_else(|| VaultError::BadKeyring("no primary key".into()))?;
        Ok(Self {
            keys,
            primary,
            seal_limit: Self::DEFAULT_SEAL_LIMIT,
        })
    }

    /// Writes the keyring in the text format [`Keyring::parse`] reads.
    pub fn to_text(&self) -> Zeroizing<String> {
        let mut out = Zeroizing::new(String::from(
            "# chart-auth keyring v1. Secret: keep it out of version control, mode 0600.\n",
        ));
        for (id, k) in &self.keys {
            out.push_str(&format!("{} {} ", id.0, k.status.as_str()));
            STANDARD.encode_string(k.material.as_ref(), &mut out);
            out.push('\n');
        }
        out
    }

    /// Reads `CHART_VAULT_KEYRING` (the text format, or one base64 key).
    pub fn from_env() -> Result<Self, VaultError> {
        let text = Zeroizing::new(
            std::env::var("CHART_VAULT_KEYRING")
                .map_err(|_| VaultError::BadKeyring("CHART_VAULT_KEYRING is not set".into()))?,
        );
        Self::parse(&text)
    }

    /// Reads a keyring file.
    pub fn load(path: &Path) -> Result<Self, VaultError> {
        let text =
            Zeroizing::new(std::fs::read_to_string(path).map_err(|e| {
                VaultError::BadKeyring(format!("cannot read {}: {e}", path.display()))
            })?);
        Self::parse(&text)
    }

    /// Writes the keyring file atomically and durably, mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), VaultError> {
        crate::store::write_atomic(path, self.to_text().as_bytes()).map_err(VaultError::Store)
    }

    /// Sets the per-key seal limit (see the module docs on the nonce budget).
    pub fn set_seal_limit(&mut self, limit: u64) {
        self.seal_limit = limit;
    }

    /// The primary key's id.
    pub fn primary(&self) -> KeyId {
        self.primary
    }

    /// Every key's id and status, in id order.
    pub fn keys(&self) -> impl Iterator<Item = (KeyId, KeyStatus)> + '_ {
        self.keys.iter().map(|(id, k)| (*id, k.status))
    }

    /// How many records a key has sealed in this process.
    pub fn seals(&self, id: KeyId) -> Option<u64> {
        self.keys.get(&id).map(|k| k.seals.load(Ordering::Relaxed))
    }

    /// Adds a fresh random key as active (not yet primary) and returns its id.
    pub fn add_key(&mut self) -> KeyId {
        let id = KeyId(
            self.keys
                .keys()
                .next_back()
                .map_or(1, |k| k.0.saturating_add(1)),
        );
        self.keys
            .insert(id, Self::entry(random_key(), KeyStatus::Active));
        id
    }

    /// Adds a given key (32 raw bytes) as active.
    pub fn add_key_bytes(&mut self, id: KeyId, key: &[u8]) -> Result<(), VaultError> {
        if self.keys.contains_key(&id) {
            return Err(VaultError::Keyring(format!("key {id} already exists")));
        }
        self.keys
            .insert(id, Self::entry(key_array(key)?, KeyStatus::Active));
        Ok(())
    }

    /// Makes an active key the primary; the old primary stays active.
    pub fn promote(&mut self, id: KeyId) -> Result<(), VaultError> {
        match self.keys.get(&id).map(|k| k.status) {
            None => return Err(VaultError::Keyring(format!("no key {id}"))),
            Some(KeyStatus::Retired) => {
                return Err(VaultError::Keyring(format!("key {id} is retired")));
            }
            Some(_) => {}
        }
        if let Some(old) = self.keys.get_mut(&self.primary) {
            old.status = KeyStatus::Active;
        }
        if let Some(new) = self.keys.get_mut(&id) {
            new.status = KeyStatus::Primary;
        }
        self.primary = id;
        Ok(())
    }

    /// Retires a key: records sealed under it no longer open. The primary cannot retire.
    pub fn retire(&mut self, id: KeyId) -> Result<(), VaultError> {
        if id == self.primary {
            return Err(VaultError::Keyring(format!(
                "key {id} is primary; promote another first"
            )));
        }
        let key = self
            .keys
            .get_mut(&id)
            .ok_or_else(|| VaultError::Keyring(format!("no key {id}")))?;
        key.status = KeyStatus::Retired;
        Ok(())
    }

    /// Seals `plaintext` under the primary key, bound to `identity`.
    pub fn seal(
        &self,
        identity: &RecordIdentity<'_>,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, VaultError> {
        let id = self.primary;
        let key = self.keys.get(&id).ok_or(VaultError::UnknownKey(id))?;
        if key.seals.fetch_add(1, Ordering::Relaxed) >= self.seal_limit {
            return Err(VaultError::NonceBudgetExhausted(id));
        }
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut nonce).expect("the OS random number generator failed");
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&id.0.to_be_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = identity.with_aad(id, |aad| {
            encrypt_detached(&key.cipher, &nonce, aad, &mut out[HEADER_LEN..])
        })?;
        out.extend_from_slice(&tag);
        Ok(out)
    }

    /// Opens a sealed blob bound to `identity` into a zeroizing buffer.
    pub fn open(
        &self,
        identity: &RecordIdentity<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let id = sealed_key_id(sealed)?;
        let key = self.keys.get(&id).ok_or(VaultError::UnknownKey(id))?;
        if key.status == KeyStatus::Retired {
            return Err(VaultError::KeyRetired(id));
        }
        let nonce: [u8; 12] = sealed[5..HEADER_LEN].try_into().expect("12 bytes");
        let (body, tag) = sealed[HEADER_LEN..].split_at(sealed.len() - HEADER_LEN - TAG_LEN);
        let tag: [u8; TAG_LEN] = tag.try_into().expect("16 bytes");
        let mut plain = Zeroizing::new(body.to_vec());
        identity.with_aad(id, |aad| {
            decrypt_detached(&key.cipher, &nonce, aad, &mut plain, &tag)
        })?;
        Ok(plain)
    }
}

/// AES-256-GCM encryption in place with a detached tag: the vault's cipher layer.
pub fn encrypt_detached(
    cipher: &Aes256Gcm,
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
) -> Result<[u8; TAG_LEN], VaultError> {
    let tag = cipher
        .encrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into())
        .map_err(|_| VaultError::Tampered)?;
    Ok(tag.into())
}

/// AES-256-GCM decryption in place with a detached tag: the vault's cipher layer.
/// On failure the buffer holds no plaintext.
pub fn decrypt_detached(
    cipher: &Aes256Gcm,
    nonce: &[u8; 12],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), VaultError> {
    cipher
        .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into(), &Tag::from(*tag))
        .map_err(|_| VaultError::Tampered)
}

fn random_key() -> Zeroizing<[u8; KEY_LEN]> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(key.as_mut()).expect("the OS random number generator failed");
    key
}

fn key_array(key: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, VaultError> {
    if key.len() != KEY_LEN {
        return Err(VaultError::BadKeyring(format!(
            "a key must be {KEY_LEN} bytes, not {}",
            key.len()
        )));
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    out.copy_from_slice(key);
    Ok(out)
}

fn decode_key(b64: &str) -> Result<Zeroizing<[u8; KEY_LEN]>, &'static str> {
    let mut buf = Zeroizing::new([0u8; KEY_LEN + 3]);
    let n = STANDARD
        .decode_slice(b64.as_bytes(), buf.as_mut())
        .map_err(|_| "is not base64 of 32 bytes")?;
    if n != KEY_LEN {
        return Err("is not 32 bytes long");
    }
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    out.copy_from_slice(&buf[..KEY_LEN]);
    Ok(out)
}

/// What [`Vault::rewrap`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RewrapReport {
    /// Records moved to the primary key.
    pub rewrapped: usize,
    /// Records already under the primary key.
    pub unchanged: usize,
    /// Records changed by someone else meanwhile (their new version needs no rewrap).
    pub raced: usize,
}

/// Sealed access tokens in a store, under a keyring.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use chart_auth::vault::{FileStore, Keyring, MemoryStore, Vault};
/// use chart_auth::AccessToken;
/// let dir = std::env::temp_dir().join(format!("chart-doc-{}", std::process::id()));
/// let _on_disk = Vault::new(Keyring::generate(), FileStore::open(&dir)?);
/// # std::fs::remove_dir_all(&dir).ok();
/// let vault = Vault::new(Keyring::generate(), MemoryStore::default());
/// vault.put("client", "acct-1", &"irs".into(), &AccessToken::new("tok")).await?;
/// assert_eq!(vault.open("acct-1").await?.expose_secret(), "tok");
/// # Ok::<(), chart_auth::Error>(()) }).unwrap();
/// ```
pub struct Vault<S = FileStore> {
    keyring: RwLock<Keyring>,
    store: S,
}

impl<S> fmt::Debug for Vault<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("keyring", &*self.ring())
            .finish_non_exhaustive()
    }
}

impl<S> Vault<S> {
    fn ring(&self) -> std::sync::RwLockReadGuard<'_, Keyring> {
        self.keyring
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the keyring (add, promote, retire) while the vault is in use.
    pub fn update_keyring<T>(&self, change: impl FnOnce(&mut Keyring) -> T) -> T {
        change(
            &mut self
                .keyring
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Reads the keyring.
    pub fn with_keyring<T>(&self, read: impl FnOnce(&Keyring) -> T) -> T {
        read(&self.ring())
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs()
}

fn stored_of(record: &StoredRecord) -> Result<Stored, VaultError> {
    Ok(Stored {
        account_id: record.account_id.clone(),
        provider_id: ProviderId::from(record.provider_id.as_str()),
        key_id: sealed_key_id(&record.sealed)?,
        stored_at: UNIX_EPOCH + Duration::from_secs(record.stored_at),
    })
}

impl<S: TokenStore> Vault<S> {
    /// Makes a vault over a keyring and a store.
    pub fn new(keyring: Keyring, store: S) -> Self {
        Self {
            keyring: RwLock::new(keyring),
            store,
        }
    }

    /// Seals `token` under the primary key and stores it as the account's record,
    /// replacing any earlier one.
    pub async fn put(
        &self,
        client_id: &str,
        account_id: &str,
        provider_id: &ProviderId,
        token: &AccessToken,
    ) -> Result<Connection<Stored>, Error> {
        let identity = RecordIdentity {
            client_id,
            account_id,
            provider_id: provider_id.as_str(),
        };
        let sealed = self
            .ring()
            .seal(&identity, token.expose_secret().as_bytes())?;
        let record = StoredRecord {
            version: 0,
            client_id: client_id.to_owned(),
            account_id: account_id.to_owned(),
            provider_id: provider_id.as_str().to_owned(),
            stored_at: unix_secs(SystemTime::now()),
            sealed,
        };
        self.store
            .put(&record, Expect::Any)
            .await
            .map_err(VaultError::Store)?;
        Ok(Connection::stored(stored_of(&record)?))
    }

    /// Opens the account's token for an API call.
    pub async fn open(&self, account_id: &str) -> Result<AccessToken, Error> {
        let record = self
            .store
            .get(account_id)
            .await
            .map_err(VaultError::Store)?
            .ok_or(VaultError::NotFound)?;
        let plain = self.ring().open(&record.identity(), &record.sealed)?;
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::Tampered)?;
        Ok(AccessToken::new(text))
    }

    /// The account's stored connection (metadata only), if any.
    pub async fn get(&self, account_id: &str) -> Result<Option<Connection<Stored>>, Error> {
        match self
            .store
            .get(account_id)
            .await
            .map_err(VaultError::Store)?
        {
            Some(record) => Ok(Some(Connection::stored(stored_of(&record)?))),
            None => Ok(None),
        }
    }

    /// Every stored connection (metadata only). A corrupt record fails the listing
    /// rather than being skipped silently.
    pub async fn list(&self) -> Result<Vec<Connection<Stored>>, Error> {
        let mut out = Vec::new();
        for account in self.store.list().await.map_err(VaultError::Store)? {
            if let Some(c) = self.get(&account).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Deletes the account's record; `false` if there was none.
    pub async fn delete(&self, account_id: &str) -> Result<bool, Error> {
        Ok(self
            .store
            .delete(account_id, Expect::Any)
            .await
            .map_err(VaultError::Store)?)
    }

    /// Moves every record to the primary key. Plaintext never leaves the vault; a
    /// record written meanwhile is left alone (compare-and-swap on its version).
    pub async fn rewrap(
        &self,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<RewrapReport, Error> {
        let accounts = self.store.list().await.map_err(VaultError::Store)?;
        let mut report = RewrapReport::default();
        for (i, account) in accounts.iter().enumerate() {
            progress(i, accounts.len());
            let Some(mut record) = self.store.get(account).await.map_err(VaultError::Store)? else {
                continue;
            };
            let resealed = {
                let ring = self.ring();
                if sealed_key_id(&record.sealed)? == ring.primary() {
                    None
                } else {
                    let plain = ring.open(&record.identity(), &record.sealed)?;
                    Some(ring.seal(&record.identity(), &plain)?)
                }
            };
            let Some(sealed) = resealed else {
                report.unchanged += 1;
                continue;
            };
            let expected = Expect::Version(record.version);
            record.sealed = sealed;
            match self.store.put(&record, expected).await {
                Ok(_) => report.rewrapped += 1,
                Err(StoreError::Conflict) => report.raced += 1,
                Err(e) => return Err(VaultError::Store(e).into()),
            }
        }
        progress(accounts.len(), accounts.len());
        Ok(report)
    }
}

impl Connection<Exchanged> {
    /// Seals the access token in the vault. The stored connection holds no plaintext.
    pub async fn store<S: TokenStore>(self, vault: &Vault<S>) -> Result<Connection<Stored>, Error> {
        let (client_id, account_id, provider_id, token) = self.into_parts();
        vault
            .put(&client_id, &account_id, &provider_id, &token)
            .await
    }
}

impl crate::ChartClient {
    /// Opens the account's token from the vault and calls `GET /introspect`.
    pub async fn introspect<S: TokenStore>(
        &self,
        vault: &Vault<S>,
        account_id: &str,
    ) -> Result<crate::Introspection, Error> {
        let token = vault.open(account_id).await?;
        self.introspect_token(&token).await
    }

    /// Calls `POST /disconnect` with the account's token, then deletes its record once
    /// Chart has confirmed. A token Chart no longer knows is deleted too.
    pub async fn disconnect<S: TokenStore>(
        &self,
        vault: &Vault<S>,
        account_id: &str,
    ) -> Result<(), Error> {
        let token = vault.open(account_id).await?;
        match self.disconnect_token(&token).await {
            Ok(()) | Err(Error::InvalidToken(_)) => {
                vault.delete(account_id).await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
