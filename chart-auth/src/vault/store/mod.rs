//! Token stores: where sealed records live. They never see plaintext.
//!
//! [`TokenStore`] is the narrow trait a store implements (get, put, delete, list, with
//! compare-and-swap on a per-record version). Records are filed under a [`RecordKey`]:
//! whose account (the owner's bytes) and which. [`MemoryStore`] is for tests;
//! [`FileStore`] is the embedded default. A shared SQL database plugs in the same way.

use std::future::Future;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;

mod file;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;

pub use file::{FileStore, FileStoreOptions};
pub(crate) use file::{parse_record, write_atomic};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{PostgresPool, PostgresStore};

/// Where a record is filed: the owner's bytes (empty for a record written before
/// owners existed) and the account. Keys sort by owner bytes, then account bytes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RecordKey {
    /// Whose account it is.
    pub owner: Vec<u8>,
    /// The account.
    pub account_id: String,
}

impl RecordKey {
    /// The key of `account_id` under `owner`.
    pub fn new(owner: &[u8], account_id: &str) -> Self {
        Self {
            owner: owner.to_vec(),
            account_id: account_id.to_owned(),
        }
    }
}

/// One account's sealed token and what it is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The store's version of this record: 0 before the first write, then 1, 2, ...
    pub version: u64,
    /// The OAuth client the token was issued to.
    pub client_id: String,
    /// Whose account it is (with the account, the record's key in the store). Records
    /// written before owners existed have none, and read as empty.
    #[serde(default, with = "b64", skip_serializing_if = "Vec::is_empty")]
    pub owner: Vec<u8>,
    /// The account (with the owner, the record's key in the store).
    pub account_id: String,
    /// The tax provider.
    pub provider_id: String,
    /// When the token was stored, in seconds since the Unix epoch.
    pub stored_at: u64,
    /// The sealed token (see the vault's format).
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
}

impl StoredRecord {
    /// The key this record is filed under.
    pub fn key(&self) -> RecordKey {
        RecordKey::new(&self.owner, &self.account_id)
    }

    /// Whether this record is the one filed under `key`.
    pub fn is_filed_under(&self, key: &RecordKey) -> bool {
        self.owner == key.owner && self.account_id == key.account_id
    }
}

mod b64 {
    use super::*;
    pub(super) fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }
    pub(super) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        STANDARD
            .decode(s.as_bytes())
            .map_err(serde::de::Error::custom)
    }
}

/// What a write expects to find, for compare-and-swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expect {
    /// Write whatever is there.
    Any,
    /// Write only if there is no record.
    Absent,
    /// Write only if the record is at this version.
    Version(u64),
}

/// A place to keep sealed records, one per (owner, account).
///
/// A store must file each record under its own key ([`StoredRecord::key`]), and
/// must never answer a lookup of one key with another key's record.
pub trait TokenStore: Send + Sync {
    /// The record filed under `key`, if any.
    fn get(
        &self,
        key: &RecordKey,
    ) -> impl Future<Output = Result<Option<StoredRecord>, StoreError>> + Send;
    /// Writes the record under its key if `expect` holds, and returns its new version.
    fn put(
        &self,
        record: &StoredRecord,
        expect: Expect,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Deletes the record under `key` if `expect` holds; `false` if there was none.
    fn delete(
        &self,
        key: &RecordKey,
        expect: Expect,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Every key with a record, sorted.
    fn list(&self) -> impl Future<Output = Result<Vec<RecordKey>, StoreError>> + Send;

    /// The accounts of one owner, sorted by bytes. Stores that can find them without
    /// reading every key (an index) should.
    fn list_owner(
        &self,
        owner: &[u8],
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        async move {
            Ok(self
                .list()
                .await?
                .into_iter()
                .filter(|k| k.owner == owner)
                .map(|k| k.account_id)
                .collect())
        }
    }

    /// Up to `limit` keys after `after` (or from the first), sorted: a page of
    /// [`TokenStore::list`], for walking large stores.
    fn list_page(
        &self,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RecordKey>, StoreError>> + Send {
        async move {
            let all = self.list().await?;
            let start = after.map_or(0, |a| all.partition_point(|x| x <= a));
            Ok(all.into_iter().skip(start).take(limit).collect())
        }
    }

    /// How many records the store holds.
    fn count(&self) -> impl Future<Output = Result<usize, StoreError>> + Send {
        async move { Ok(self.list().await?.len()) }
    }
}

pub(crate) fn check(expect: Expect, current: Option<u64>) -> Result<(), StoreError> {
    match (expect, current) {
        (Expect::Any, _) | (Expect::Absent, None) => Ok(()),
        (Expect::Version(want), Some(have)) if want == have => Ok(()),
        _ => Err(StoreError::Conflict),
    }
}
