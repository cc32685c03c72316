//! The token vault: AES-256-GCM under a rotating keyring, sealed records bound to
//! their identity, and pluggable stores.
//!
//! The vault is a bottom layer: it knows nothing of HTTP or of the Connect flow. Inside
//! it, bottom up: [`store`](TokenStore) keeps sealed records, `seal` defines the sealed
//! format and its AAD, [`Keyring`] holds the keys, and [`Vault`] joins a keyring and a
//! store.
//!
//! # Sealed formats (frozen)
//! ```text
//! v2 (written): version(1) = 0x02 ‖ key_id(4, big endian) ‖ nonce(24) ‖ ciphertext ‖ tag(16)
//! v1 (read):    version(1) = 0x01 ‖ key_id(4, big endian) ‖ nonce(12) ‖ ciphertext ‖ tag(16)
//! ```
//! v2 is XAES-256-GCM (C2SP): every record gets a fresh AES-256-GCM subkey, derived
//! from the keyring key and the first half of its random 192-bit nonce. Its AAD is
//! `"chart-auth/vault/v2" ‖ version ‖ key_id` followed by the client id, the owner,
//! the account id and the provider id, each prefixed by its 4-byte length, so a sealed
//! token moved onto another record, or under another owner, fails to unseal. Unknown
//! versions and key ids are refused before any decryption is tried.
//!
//! # Owners
//! Every record belongs to an [`Owner`]: the application's user or tenant. Every read
//! asks for (owner, account); an account asked for under another owner is
//! [`VaultError::NotFound`], whatever a file or row claims, because the store files
//! records under both and the AAD binds both.
//!
//! Records written before owners existed (format v1) belong to no owner and open for
//! no application call. [`Vault::rewrap_with`] gives each an owner, which the operator
//! names (the CLI's `rewrap --owner` or `--owner-map`), and moves it to v2.
//!
//! # Nonce budget
//! See [`Keyring`]: about 2⁸⁰ seals per key for v2 (2⁻³³ collision risk), enforced as
//! [`Keyring::DEFAULT_SEAL_LIMIT`] (2⁴⁸) seals per key and process.
//!
//! # Rotation
//! [`Keyring::add_key`], then [`Keyring::promote`] (new seals use it, old records still
//! unseal), then [`Vault::rewrap`] (moves every record to the primary without handing
//! plaintext to the caller), then [`Keyring::retire`] (the old key is refused).

use std::fmt;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, StoreError, VaultError};
use crate::ids::{Owner, ProviderId};
use crate::secret::AccessToken;

// Bottom up: records at rest, the sealed format, the keys.
pub(crate) mod store;

pub(crate) mod seal;

mod key_source;

mod keyring;

pub use crate::ids::KeyId;
pub use key_source::{DATA_KEY_LEN, DataKey, KeySource, Plaintext};
#[cfg(feature = "pkcs11")]
pub use key_source::{
    KEY_VAR, MODULE_VAR, PIN_FILE_VAR, PIN_VAR, Pkcs11Config, Pkcs11KeySource, TOKEN_VAR,
    WrapMechanism,
};
pub use keyring::{KeyStatus, Keyring};
pub use seal::{FORMAT_V1, FORMAT_VERSION, RecordIdentity, sealed_key_id, sealed_version};
pub use store::{
    Expect, FileStore, FileStoreOptions, MemoryStore, RecordKey, StoredRecord, TokenStore,
};
#[cfg(feature = "postgres")]
pub use store::{PostgresPool, PostgresStore};

/// What the vault knows of a stored account: everything but the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAccount {
    owner: Owner,
    account_id: String,
    provider_id: ProviderId,
    key_id: KeyId,
    stored_at: SystemTime,
}

impl StoredAccount {
    /// Whose account it is.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }

    /// The connected account.
    pub fn account_id(&self) -> &str {
        &self.account_id
    }

    /// The tax provider.
    pub fn provider_id(&self) -> &ProviderId {
        &self.provider_id
    }

    /// The id of the vault key that sealed the token.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// When the token was stored.
    pub fn stored_at(&self) -> SystemTime {
        self.stored_at
    }

    /// Reads the metadata of a record fetched under `key` by the vault of `client_id`.
    /// Records are untrusted input: a record filed under another key or client, a bad
    /// header or an impossible time is [`StoreError::Corrupt`], never a panic.
    fn of_record(
        client_id: &str,
        key: &RecordKey,
        record: &StoredRecord,
    ) -> Result<Self, VaultError> {
        check_filed_under(client_id, key, record)?;
        let stored_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(record.stored_at))
            .ok_or_else(|| corrupt(&key.account_id, "the stored_at time is out of range"))?;
        Ok(Self {
            owner: Owner::from_stored(record.owner.clone()),
            account_id: record.account_id.clone(),
            provider_id: ProviderId::from(record.provider_id.as_str()),
            key_id: sealed_key_id(&record.sealed)?,
            stored_at,
        })
    }
}

fn corrupt(account_id: &str, reason: &str) -> VaultError {
    VaultError::Store(StoreError::Corrupt {
        path: format!("account {account_id:?}").into(),
        reason: reason.into(),
    })
}

/// Refuses a record that a store returned for `key` but that names another owner,
/// account or client: someone copied one record over another's. The AAD would refuse
/// it too; this names the cause.
fn check_filed_under(
    client_id: &str,
    key: &RecordKey,
    record: &StoredRecord,
) -> Result<(), VaultError> {
    if !record.is_filed_under(key) {
        Err(corrupt(
            &key.account_id,
            "the record belongs to another account",
        ))
    } else if record.client_id != client_id {
        Err(corrupt(
            &key.account_id,
            "the record belongs to another client",
        ))
    } else {
        Ok(())
    }
}

/// Accounts read per page while rewrapping.
const REWRAP_PAGE: usize = 500;

/// How many times [`Vault::replace`] rereads a record that another writer changed
/// between its read and its write before it gives up with a conflict.
const REPLACE_ATTEMPTS: usize = 8;

/// The record that a [`Vault::replace`] replaced: its provider and, if it still
/// unsealed, its token, for the caller to revoke. The token zeroizes on drop.
#[derive(Debug)]
pub struct ReplacedRecord {
    provider_id: ProviderId,
    token: Option<AccessToken>,
}

impl ReplacedRecord {
    /// The provider of the replaced record.
    pub fn provider_id(&self) -> &ProviderId {
        &self.provider_id
    }

    /// The replaced token; `None` if the record no longer unsealed (corrupt, or under a
    /// retired key), so that nothing can revoke it.
    pub fn token(&self) -> Option<&AccessToken> {
        self.token.as_ref()
    }
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
    /// Legacy records (format v1, no owner) that were given no owner and so stay as
    /// they are ([`Vault::rewrap_with`]).
    pub unowned: usize,
}

/// Sealed access tokens of one OAuth client in a store, under a keyring.
///
/// Every token is bound (through the AAD) to the vault's client id, its owner, the
/// account and the provider. Reads build that identity from the (owner, account) asked
/// for and the vault's client id, never from what the record says about itself.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use chart_auth::vault::{FileStore, Keyring, MemoryStore, Vault};
/// use chart_auth::{AccessToken, Owner};
/// let dir = tempfile::tempdir()?;
/// let _on_disk = Vault::new("my-client", Keyring::generate(), FileStore::open(dir.path().join("tokens"))?);
/// let vault = Vault::new("my-client", Keyring::generate(), MemoryStore::default());
/// let (alice, bob) = (Owner::new("alice")?, Owner::new("bob")?);
/// vault.put(&alice, "acct-1", &"irs".into(), &AccessToken::new("tok")).await?;
/// assert_eq!(vault.unseal(&alice, "acct-1").await?.expose_secret(), "tok");
/// // Another owner cannot see it, let alone open it.
/// assert!(vault.unseal(&bob, "acct-1").await.is_err());
/// assert!(vault.list(&bob).await?.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
pub struct Vault<S = FileStore> {
    client_id: String,
    keyring: RwLock<Keyring>,
    store: S,
}

impl<S> fmt::Debug for Vault<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("client_id", &self.client_id)
            .field("keyring", &*self.ring())
            .finish_non_exhaustive()
    }
}

impl<S> Vault<S> {
    /// The OAuth client whose tokens this vault holds.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The identity a record fetched under `key` is bound to.
    fn identity<'a>(&'a self, key: &'a RecordKey, record: &'a StoredRecord) -> RecordIdentity<'a> {
        RecordIdentity {
            client_id: &self.client_id,
            owner: &key.owner,
            account_id: &key.account_id,
            provider_id: &record.provider_id,
        }
    }

    fn ring(&self) -> RwLockReadGuard<'_, Keyring> {
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

impl<S: TokenStore> Vault<S> {
    /// Makes the vault of the OAuth client `client_id` over a keyring and a store.
    pub fn new(client_id: impl Into<String>, keyring: Keyring, store: S) -> Self {
        Self {
            client_id: client_id.into(),
            keyring: RwLock::new(keyring),
            store,
        }
    }

    /// Seals `token` under the primary key and stores it as `owner`'s record of the
    /// account, replacing any earlier one unseen. To learn which token was replaced (so
    /// that it can be revoked), use [`Vault::replace`].
    pub async fn put(
        &self,
        owner: &Owner,
        account_id: &str,
        provider_id: &ProviderId,
        token: &AccessToken,
    ) -> Result<StoredAccount, Error> {
        let (key, record) = self.sealed_record(owner, account_id, provider_id, token)?;
        self.store
            .put(&record, Expect::Any)
            .await
            .map_err(VaultError::Store)?;
        Ok(StoredAccount::of_record(&self.client_id, &key, &record)?)
    }

    /// Like [`Vault::put`], and also hands back the token of the record it replaced, if
    /// there was one. The write is a compare-and-swap on the version read, retried when
    /// another writer got in between, so that among concurrent replacements (on any
    /// instance sharing the store) every token ends up either stored or handed back to
    /// exactly one caller, never silently overwritten.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// use chart_auth::vault::{Keyring, MemoryStore, Vault};
    /// use chart_auth::{AccessToken, Owner};
    /// let vault = Vault::new("my-client", Keyring::generate(), MemoryStore::default());
    /// let alice = Owner::new("alice")?;
    /// let (_, none) = vault.replace(&alice, "acct-1", &"irs".into(), &AccessToken::new("old")).await?;
    /// assert!(none.is_none());
    /// let (_, old) = vault.replace(&alice, "acct-1", &"turbotax".into(), &AccessToken::new("new")).await?;
    /// let old = old.unwrap();
    /// assert_eq!((old.provider_id().as_str(), old.token().unwrap().expose_secret()), ("irs", "old"));
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    pub async fn replace(
        &self,
        owner: &Owner,
        account_id: &str,
        provider_id: &ProviderId,
        token: &AccessToken,
    ) -> Result<(StoredAccount, Option<ReplacedRecord>), Error> {
        let (key, record) = self.sealed_record(owner, account_id, provider_id, token)?;
        for _ in 0..REPLACE_ATTEMPTS {
            let old = self.store.get(&key).await.map_err(VaultError::Store)?;
            let expect = old
                .as_ref()
                .map_or(Expect::Absent, |r| Expect::Version(r.version));
            match self.store.put(&record, expect).await {
                Ok(_) => {
                    let account = StoredAccount::of_record(&self.client_id, &key, &record)?;
                    let replaced = old.map(|old| self.replaced(&key, &old));
                    return Ok((account, replaced));
                }
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(VaultError::Store(e).into()),
            }
        }
        Err(VaultError::Store(StoreError::Conflict).into())
    }

    /// What a [`Vault::replace`] hands back of the record it replaced: its token, if it
    /// still unseals (a corrupt or foreign record's does not, and it is logged).
    fn replaced(&self, key: &RecordKey, old: &StoredRecord) -> ReplacedRecord {
        let opened = check_filed_under(&self.client_id, key, old)
            .and_then(|()| self.ring().unseal(&self.identity(key, old), &old.sealed))
            .and_then(|plain| {
                std::str::from_utf8(&plain)
                    .map(AccessToken::new)
                    .map_err(|_| VaultError::Tampered)
            });
        let token = opened
            .inspect_err(|e| {
                tracing::warn!(error = %e, "the replaced record's token does not unseal; it cannot be revoked");
            })
            .ok();
        ReplacedRecord {
            provider_id: ProviderId::from(old.provider_id.as_str()),
            token,
        }
    }

    /// `token` sealed as `owner`'s record of the account, under the primary key.
    fn sealed_record(
        &self,
        owner: &Owner,
        account_id: &str,
        provider_id: &ProviderId,
        token: &AccessToken,
    ) -> Result<(RecordKey, StoredRecord), VaultError> {
        let key = RecordKey::new(owner.as_bytes(), account_id);
        let identity = RecordIdentity {
            client_id: &self.client_id,
            owner: owner.as_bytes(),
            account_id,
            provider_id: provider_id.as_str(),
        };
        let sealed = self
            .ring()
            .seal(&identity, token.expose_secret().as_bytes())?;
        let record = StoredRecord {
            version: 0,
            client_id: self.client_id.clone(),
            owner: key.owner.clone(),
            account_id: account_id.to_owned(),
            provider_id: provider_id.as_str().to_owned(),
            stored_at: unix_secs(SystemTime::now()),
            sealed,
        };
        Ok((key, record))
    }

    /// Unseals `owner`'s token of the account for an API call.
    pub async fn unseal(&self, owner: &Owner, account_id: &str) -> Result<AccessToken, Error> {
        Ok(self.unseal_versioned(owner, account_id).await?.0)
    }

    /// Unseals `owner`'s token of the account with the version of the record that holds
    /// it, for a change that must apply to that record only ([`Vault::delete_version`]).
    pub async fn unseal_versioned(
        &self,
        owner: &Owner,
        account_id: &str,
    ) -> Result<(AccessToken, u64), Error> {
        let key = RecordKey::new(owner.as_bytes(), account_id);
        let record = self
            .store
            .get(&key)
            .await
            .map_err(VaultError::Store)?
            .ok_or(VaultError::NotFound)?;
        check_filed_under(&self.client_id, &key, &record)?;
        let plain = self
            .ring()
            .unseal(&self.identity(&key, &record), &record.sealed)?;
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::Tampered)?;
        Ok((AccessToken::new(text), record.version))
    }

    /// Checks that the record under `key` (of any owner, legacy ones included) unseals,
    /// and drops the plaintext at once: for operators' tools, never for answering a user.
    pub async fn check_record(&self, key: &RecordKey) -> Result<(), Error> {
        let record = self
            .store
            .get(key)
            .await
            .map_err(VaultError::Store)?
            .ok_or(VaultError::NotFound)?;
        check_filed_under(&self.client_id, key, &record)?;
        self.ring()
            .unseal(&self.identity(key, &record), &record.sealed)?;
        Ok(())
    }

    /// The metadata of `owner`'s record of the account, if there is one.
    pub async fn get(
        &self,
        owner: &Owner,
        account_id: &str,
    ) -> Result<Option<StoredAccount>, Error> {
        self.get_key(&RecordKey::new(owner.as_bytes(), account_id))
            .await
    }

    async fn get_key(&self, key: &RecordKey) -> Result<Option<StoredAccount>, Error> {
        match self.store.get(key).await.map_err(VaultError::Store)? {
            Some(record) => Ok(Some(StoredAccount::of_record(
                &self.client_id,
                key,
                &record,
            )?)),
            None => Ok(None),
        }
    }

    /// Every account of `owner` (metadata only), in one listing of the store. A corrupt
    /// record fails the listing rather than being skipped silently.
    pub async fn list(&self, owner: &Owner) -> Result<Vec<StoredAccount>, Error> {
        let accounts = self
            .store
            .list_owner(owner.as_bytes())
            .await
            .map_err(VaultError::Store)?;
        let mut out = Vec::with_capacity(accounts.len());
        for account in accounts {
            if let Some(c) = self.get(owner, &account).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Every record of every owner, legacy ones included (metadata only): for
    /// operators, never for answering a user.
    pub async fn list_all(&self) -> Result<Vec<StoredAccount>, Error> {
        let mut out = Vec::new();
        for key in self.store.list().await.map_err(VaultError::Store)? {
            if let Some(c) = self.get_key(&key).await? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Deletes `owner`'s record of the account; `false` if there was none.
    pub async fn delete(&self, owner: &Owner, account_id: &str) -> Result<bool, Error> {
        let key = RecordKey::new(owner.as_bytes(), account_id);
        Ok(self
            .store
            .delete(&key, Expect::Any)
            .await
            .map_err(VaultError::Store)?)
    }

    /// Deletes `owner`'s record of the account only if it is still at `version`.
    /// `false` if it is gone or changed meanwhile: a reconnect wrote a new token, which
    /// must stay.
    pub async fn delete_version(
        &self,
        owner: &Owner,
        account_id: &str,
        version: u64,
    ) -> Result<bool, Error> {
        let key = RecordKey::new(owner.as_bytes(), account_id);
        match self.store.delete(&key, Expect::Version(version)).await {
            Ok(deleted) => Ok(deleted),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(VaultError::Store(e).into()),
        }
    }

    /// Moves every owned record to the primary key and format v2. Plaintext never
    /// leaves the vault; a record written meanwhile is left alone (compare-and-swap on
    /// its version). Legacy records stay as they are (see [`Vault::rewrap_with`]).
    pub async fn rewrap(&self, progress: impl FnMut(usize, usize)) -> Result<RewrapReport, Error> {
        self.rewrap_with(|_| None, progress).await
    }

    /// [`Vault::rewrap`], which also gives each legacy record (format v1, written
    /// before owners existed) the owner that `owner_of` names for its account, and
    /// moves it there in format v2. A legacy record whose account gets `None` stays
    /// as it is, counted as [`RewrapReport::unowned`].
    ///
    /// The owners come from the operator (the application's own table of which user
    /// connected which account), never from the records themselves.
    pub async fn rewrap_with(
        &self,
        owner_of: impl Fn(&str) -> Option<Owner>,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<RewrapReport, Error> {
        let total = self.store.count().await.map_err(VaultError::Store)?;
        let mut report = RewrapReport::default();
        let mut done = 0;
        let mut after: Option<RecordKey> = None;
        loop {
            let page = self
                .store
                .list_page(after.as_ref(), REWRAP_PAGE)
                .await
                .map_err(VaultError::Store)?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for key in &page {
                progress(done, total.max(done));
                done += 1;
                let adopt = if key.owner.is_empty() {
                    match owner_of(&key.account_id) {
                        Some(owner) => Some(owner),
                        None => {
                            report.unowned += 1;
                            continue;
                        }
                    }
                } else {
                    None
                };
                self.rewrap_one(key, adopt, &mut report).await?;
            }
            after = Some(last);
        }
        progress(done, total.max(done));
        Ok(report)
    }

    /// Moves one record to the primary key and format v2 (under `adopt`, for a legacy
    /// record), counting what happened in `report`.
    async fn rewrap_one(
        &self,
        key: &RecordKey,
        adopt: Option<Owner>,
        report: &mut RewrapReport,
    ) -> Result<(), Error> {
        let in_record = |e: VaultError| VaultError::InRecord {
            account_id: key.account_id.clone(),
            source: Box::new(e),
        };
        let Some(record) = self
            .store
            .get(key)
            .await
            .map_err(|e| in_record(VaultError::Store(e)))?
        else {
            return Ok(());
        };
        let Some(mut moved) = self
            .resealed(key, &record, adopt.as_ref())
            .map_err(in_record)?
        else {
            report.unchanged += 1;
            return Ok(());
        };
        if adopt.is_none() {
            match self
                .store
                .put(&moved, Expect::Version(record.version))
                .await
            {
                Ok(_) => report.rewrapped += 1,
                Err(StoreError::Conflict) => report.raced += 1,
                Err(e) => return Err(in_record(VaultError::Store(e)).into()),
            }
            return Ok(());
        }
        // A legacy record moves to a new key: write the owned copy first (only if that
        // owner has no record of the account yet), then delete the legacy one at the
        // version read. A crash between the two leaves both, and a rerun finishes.
        moved.version = 0;
        match self.store.put(&moved, Expect::Absent).await {
            Ok(_) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(in_record(VaultError::Store(e)).into()),
        }
        match self
            .store
            .delete(key, Expect::Version(record.version))
            .await
        {
            Ok(_) => report.rewrapped += 1,
            Err(StoreError::Conflict) => report.raced += 1,
            Err(e) => return Err(in_record(VaultError::Store(e)).into()),
        }
        Ok(())
    }

    /// The record under `key` resealed under the primary key in format v2 (and moved
    /// to `adopt`, for a legacy record), or `None` if it already is there.
    fn resealed(
        &self,
        key: &RecordKey,
        record: &StoredRecord,
        adopt: Option<&Owner>,
    ) -> Result<Option<StoredRecord>, VaultError> {
        check_filed_under(&self.client_id, key, record)?;
        let ring = self.ring();
        let current = sealed_key_id(&record.sealed)?;
        let version = sealed_version(&record.sealed)?;
        if adopt.is_none() && current == ring.primary() && version == FORMAT_VERSION {
            return Ok(None);
        }
        let plain = ring.unseal(&self.identity(key, record), &record.sealed)?;
        let mut moved = record.clone();
        if let Some(owner) = adopt {
            moved.owner = owner.as_bytes().to_vec();
        }
        let target = moved.key();
        moved.sealed = ring.seal(&self.identity(&target, &moved), &plain)?;
        Ok(Some(moved))
    }
}
