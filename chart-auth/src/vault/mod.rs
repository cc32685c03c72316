//! The token vault: AES-256-GCM under a rotating keyring, sealed records bound to
//! their identity, and pluggable stores.
//!
//! The vault is a bottom layer: it knows nothing of HTTP or of the Connect flow. Inside
//! it, bottom up: [`store`](TokenStore) keeps sealed records, `seal` defines the sealed
//! format and its AAD, [`Keyring`] holds the keys, and [`Vault`] joins a keyring and a
//! store.
//!
//! # Sealed format (frozen)
//! ```text
//! version(1) = 0x01 ‖ key_id(4, big endian) ‖ nonce(12) ‖ ciphertext ‖ tag(16)
//! ```
//! The AAD is `"chart-auth/vault/v1" ‖ version ‖ key_id` followed by the client id, the
//! account id and the provider id, each prefixed by its 4-byte length, so a sealed
//! token moved onto another record fails to unseal. Unknown versions and key ids are
//! refused before any decryption is tried.
//!
//! # Nonce budget
//! Nonces are random and 96 bits long. NIST SP 800-38D allows at most 2^32 seals per
//! key with random nonces. Each key counts its seals in this process and refuses to
//! seal past [`Keyring::DEFAULT_SEAL_LIMIT`] (2^31, half the budget), asking for a
//! rotation; [`Keyring::seals`] lets you alert well before.
//!
//! # Rotation
//! [`Keyring::add_key`], then [`Keyring::promote`] (new seals use it, old records still
//! unseal), then [`Vault::rewrap`] (moves every record to the primary without handing
//! plaintext to the caller), then [`Keyring::retire`] (the old key is refused).

use std::fmt;
use std::sync::{RwLock, RwLockReadGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, StoreError, VaultError};
use crate::ids::ProviderId;
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
pub use seal::{FORMAT_VERSION, RecordIdentity, sealed_key_id};
pub use store::{Expect, FileStore, FileStoreOptions, MemoryStore, StoredRecord, TokenStore};
#[cfg(feature = "postgres")]
pub use store::{PostgresPool, PostgresStore};

/// What the vault knows of a stored account: everything but the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredAccount {
    account_id: String,
    provider_id: ProviderId,
    key_id: KeyId,
    stored_at: SystemTime,
}

impl StoredAccount {
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

    /// Reads the metadata of a record fetched for `account_id` by the vault of
    /// `client_id`. Records are untrusted input: a record filed under another account
    /// or client, a bad header or an impossible time is [`StoreError::Corrupt`], never a
    /// panic.
    fn of_record(
        client_id: &str,
        account_id: &str,
        record: &StoredRecord,
    ) -> Result<Self, VaultError> {
        check_filed_under(client_id, account_id, record)?;
        let stored_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(record.stored_at))
            .ok_or_else(|| corrupt(account_id, "the stored_at time is out of range"))?;
        Ok(Self {
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

/// Refuses a record that a store returned for `account_id` but that names another
/// account or client: someone copied one account's record over another's. The AAD
/// would refuse it too; this names the cause.
fn check_filed_under(
    client_id: &str,
    account_id: &str,
    record: &StoredRecord,
) -> Result<(), VaultError> {
    if record.account_id != account_id {
        Err(corrupt(account_id, "the record belongs to another account"))
    } else if record.client_id != client_id {
        Err(corrupt(account_id, "the record belongs to another client"))
    } else {
        Ok(())
    }
}

/// Accounts read per page while rewrapping.
const REWRAP_PAGE: usize = 500;

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

/// Sealed access tokens of one OAuth client in a store, under a keyring.
///
/// Every token is bound (through the AAD) to the vault's client id, the account and the
/// provider. Reads build that identity from the account asked for and the vault's
/// client id, never from what the record says about itself.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use chart_auth::vault::{FileStore, Keyring, MemoryStore, Vault};
/// use chart_auth::AccessToken;
/// let dir = tempfile::tempdir()?;
/// let _on_disk = Vault::new("my-client", Keyring::generate(), FileStore::open(dir.path().join("tokens"))?);
/// let vault = Vault::new("my-client", Keyring::generate(), MemoryStore::default());
/// vault.put("acct-1", &"irs".into(), &AccessToken::new("tok")).await?;
/// assert_eq!(vault.unseal("acct-1").await?.expose_secret(), "tok");
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

    /// The identity a record fetched for `account_id` is bound to.
    fn identity<'a>(&'a self, account_id: &'a str, record: &'a StoredRecord) -> RecordIdentity<'a> {
        RecordIdentity {
            client_id: &self.client_id,
            account_id,
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

    /// Seals `token` under the primary key and stores it as the account's record,
    /// replacing any earlier one.
    pub async fn put(
        &self,
        account_id: &str,
        provider_id: &ProviderId,
        token: &AccessToken,
    ) -> Result<StoredAccount, Error> {
        let identity = RecordIdentity {
            client_id: &self.client_id,
            account_id,
            provider_id: provider_id.as_str(),
        };
        let sealed = self
            .ring()
            .seal(&identity, token.expose_secret().as_bytes())?;
        let record = StoredRecord {
            version: 0,
            client_id: self.client_id.clone(),
            account_id: account_id.to_owned(),
            provider_id: provider_id.as_str().to_owned(),
            stored_at: unix_secs(SystemTime::now()),
            sealed,
        };
        self.store
            .put(&record, Expect::Any)
            .await
            .map_err(VaultError::Store)?;
        Ok(StoredAccount::of_record(
            &self.client_id,
            account_id,
            &record,
        )?)
    }

    /// Unseals the account's token for an API call.
    pub async fn unseal(&self, account_id: &str) -> Result<AccessToken, Error> {
        Ok(self.unseal_versioned(account_id).await?.0)
    }

    /// Unseals the account's token with the version of the record that holds it, for a
    /// change that must apply to that record only ([`Vault::delete_version`]).
    pub async fn unseal_versioned(&self, account_id: &str) -> Result<(AccessToken, u64), Error> {
        let record = self
            .store
            .get(account_id)
            .await
            .map_err(VaultError::Store)?
            .ok_or(VaultError::NotFound)?;
        check_filed_under(&self.client_id, account_id, &record)?;
        let plain = self
            .ring()
            .unseal(&self.identity(account_id, &record), &record.sealed)?;
        let text = std::str::from_utf8(&plain).map_err(|_| VaultError::Tampered)?;
        Ok((AccessToken::new(text), record.version))
    }

    /// The account's metadata, if it has a record.
    pub async fn get(&self, account_id: &str) -> Result<Option<StoredAccount>, Error> {
        match self
            .store
            .get(account_id)
            .await
            .map_err(VaultError::Store)?
        {
            Some(record) => Ok(Some(StoredAccount::of_record(
                &self.client_id,
                account_id,
                &record,
            )?)),
            None => Ok(None),
        }
    }

    /// Every stored account (metadata only). A corrupt record fails the listing rather
    /// than being skipped silently.
    pub async fn list(&self) -> Result<Vec<StoredAccount>, Error> {
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

    /// Deletes the account's record only if it is still at `version`. `false` if it is
    /// gone or changed meanwhile: a reconnect wrote a new token, which must stay.
    pub async fn delete_version(&self, account_id: &str, version: u64) -> Result<bool, Error> {
        match self
            .store
            .delete(account_id, Expect::Version(version))
            .await
        {
            Ok(deleted) => Ok(deleted),
            Err(StoreError::Conflict) => Ok(false),
            Err(e) => Err(VaultError::Store(e).into()),
        }
    }

    /// Moves every record to the primary key. Plaintext never leaves the vault; a
    /// record written meanwhile is left alone (compare-and-swap on its version).
    pub async fn rewrap(
        &self,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<RewrapReport, Error> {
        let total = self.store.count().await.map_err(VaultError::Store)?;
        let mut report = RewrapReport::default();
        let mut done = 0;
        let mut after: Option<String> = None;
        loop {
            let page = self
                .store
                .list_page(after.as_deref(), REWRAP_PAGE)
                .await
                .map_err(VaultError::Store)?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for account in &page {
                progress(done, total.max(done));
                done += 1;
                self.rewrap_one(account, &mut report).await?;
            }
            after = Some(last);
        }
        progress(done, total.max(done));
        Ok(report)
    }

    /// Moves one record to the primary key, counting what happened in `report`.
    async fn rewrap_one(&self, account: &str, report: &mut RewrapReport) -> Result<(), Error> {
        let in_record = |e: VaultError| VaultError::InRecord {
            account_id: account.to_owned(),
            source: Box::new(e),
        };
        let Some(mut record) = self
            .store
            .get(account)
            .await
            .map_err(|e| in_record(VaultError::Store(e)))?
        else {
            return Ok(());
        };
        let Some(sealed) = self.reseal(account, &record).map_err(in_record)? else {
            report.unchanged += 1;
            return Ok(());
        };
        let expected = Expect::Version(record.version);
        record.sealed = sealed;
        match self.store.put(&record, expected).await {
            Ok(_) => report.rewrapped += 1,
            Err(StoreError::Conflict) => report.raced += 1,
            Err(e) => return Err(in_record(VaultError::Store(e)).into()),
        }
        Ok(())
    }

    /// The record's token sealed under the primary key, or `None` if it already is.
    fn reseal(
        &self,
        account_id: &str,
        record: &StoredRecord,
    ) -> Result<Option<Vec<u8>>, VaultError> {
        check_filed_under(&self.client_id, account_id, record)?;
        let ring = self.ring();
        if sealed_key_id(&record.sealed)? == ring.primary() {
            return Ok(None);
        }
        let identity = self.identity(account_id, record);
        let plain = ring.unseal(&identity, &record.sealed)?;
        ring.seal(&identity, &plain).map(Some)
    }
}
