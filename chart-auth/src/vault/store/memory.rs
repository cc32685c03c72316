//! [`MemoryStore`]: records in one process's memory. Records are filed under their own
//! `account_id`, so one can never sit under another account's key.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{Expect, StoredRecord, TokenStore, check};
use crate::error::StoreError;

/// Records in memory, for tests and short-lived processes.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    records: Arc<Mutex<HashMap<String, StoredRecord>>>,
}

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, StoredRecord>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TokenStore for MemoryStore {
    async fn get(&self, account_id: &str) -> Result<Option<StoredRecord>, StoreError> {
        Ok(self.map().get(account_id).cloned())
    }

    async fn put(&self, record: &StoredRecord, expect: Expect) -> Result<u64, StoreError> {
        let mut map = self.map();
        let current = map.get(&record.account_id).map(|r| r.version);
        check(expect, current)?;
        let mut record = record.clone();
        record.version = current.unwrap_or(0) + 1;
        let version = record.version;
        map.insert(record.account_id.clone(), record);
        Ok(version)
    }

    async fn delete(&self, account_id: &str, expect: Expect) -> Result<bool, StoreError> {
        let mut map = self.map();
        check(expect, map.get(account_id).map(|r| r.version))?;
        Ok(map.remove(account_id).is_some())
    }

    async fn list(&self) -> Result<Vec<String>, StoreError> {
        let mut keys: Vec<String> = self.map().keys().cloned().collect();
        keys.sort();
        Ok(keys)
    }
}
