//! [`MemoryStore`]: records in one process's memory. Records are filed under their own
//! key (owner and account), so one can never sit under another's.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::{Expect, RecordKey, StoredRecord, TokenStore, check};
use crate::error::StoreError;

/// Records in memory, for tests and short-lived processes.
#[derive(Clone, Debug, Default)]
pub struct MemoryStore {
    records: Arc<Mutex<BTreeMap<RecordKey, StoredRecord>>>,
}

impl MemoryStore {
    fn map(&self) -> std::sync::MutexGuard<'_, BTreeMap<RecordKey, StoredRecord>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl TokenStore for MemoryStore {
    async fn get(&self, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError> {
        Ok(self.map().get(key).cloned())
    }

    async fn put(&self, record: &StoredRecord, expect: Expect) -> Result<u64, StoreError> {
        let mut map = self.map();
        let key = record.key();
        let current = map.get(&key).map(|r| r.version);
        check(expect, current)?;
        let mut record = record.clone();
        record.version = current.unwrap_or(0) + 1;
        let version = record.version;
        map.insert(key, record);
        Ok(version)
    }

    async fn delete(&self, key: &RecordKey, expect: Expect) -> Result<bool, StoreError> {
        let mut map = self.map();
        check(expect, map.get(key).map(|r| r.version))?;
        Ok(map.remove(key).is_some())
    }

    async fn list(&self) -> Result<Vec<RecordKey>, StoreError> {
        Ok(self.map().keys().cloned().collect())
    }
}
