//! Token stores: where sealed records live. They never see plaintext.
//!
//! [`TokenStore`] is the narrow trait a store implements (get, put, delete, list, with
//! compare-and-swap on a per-record version). [`MemoryStore`] is for tests;
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

/// One account's sealed token and what it is bound to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredRecord {
    /// The store's version of this record: 0 before the first write, then 1, 2, ...
    pub version: u64,
    /// The OAuth client the token was issued to.
    pub client_id: String,
    /// The account (the record's key in the store).
    pub account_id: String,
    /// The tax provider.
    pub provider_id: String,
    /// When the token was stored, in seconds since the Unix epoch.
    pub stored_at: u64,
    /// The sealed token (see the vault's format).
    #[serde(with = "b64")]
    pub sealed: Vec<u8>,
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

/// A place to keep sealed records, one per account.
pub trait TokenStore: Send + Sync {
    /// The account's record, if any.
    fn get(
        &self,
        account_id: &str,
    ) -> impl Future<Output = Result<Option<StoredRecord>, StoreError>> + Send;
    /// Writes the record if `expect` holds, and returns its new version.
    fn put(
        &self,
        record: &StoredRecord,
        expect: Expect,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Deletes the account's record if `expect` holds; `false` if there was none.
    fn delete(
        &self,
        account_id: &str,
        expect: Expect,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Every account with a record, sorted by bytes.
    fn list(&self) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Up to `limit` accounts after `after` (or from the first), sorted by bytes: a page
    /// of [`TokenStore::list`], for walking large stores.
    fn list_page(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        async move {
            let all = self.list().await?;
            let start = after.map_or(0, |a| all.partition_point(|x| x.as_str() <= a));
            Ok(all.into_iter().skip(start).take(limit).collect())
        }
    }

    /// How many accounts have a record.
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
