//! [`MemoryStorage`]: durable-object storage in process memory, for tests and for objects whose state
//! may be lost with the process. It outlives the object instance (evicting an object and creating it
//! again finds the same data), not the process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::SystemTime;

use bytes::Bytes;
use edge_core::Error;
use edge_core::durable::{ListRange, ObjectId, Storage, WriteBatch, check_write};

use crate::runtime::AlarmRecord;

#[derive(Default)]
struct Data {
    entries: BTreeMap<String, Bytes>,
    alarm: Option<SystemTime>,
    /// Attempts begun of the alarm set (the runtime's, see [`AlarmRecord`]); reset when it is set anew.
    alarm_attempts: u32,
}

/// One object's storage in memory. Clones share the data.
#[derive(Clone, Default)]
pub struct MemoryStorage {
    data: Arc<Mutex<Data>>,
}

impl MemoryStorage {
    /// Empty storage.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Data> {
        self.data.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("entries", &self.lock().entries.len())
            .finish()
    }
}

impl Storage for MemoryStorage {
    async fn get(&self, key: &str) -> Result<Option<Bytes>, Error> {
        Ok(self.lock().entries.get(key).cloned())
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<(String, Bytes)>, Error> {
        let data = self.lock();
        let mut found: Vec<(String, Bytes)> = keys
            .iter()
            .filter_map(|k| data.entries.get(k).map(|v| (k.clone(), v.clone())))
            .collect();
        found.sort_by(|a, b| a.0.cmp(&b.0));
        found.dedup_by(|a, b| a.0 == b.0);
        Ok(found)
    }

    async fn put(&self, key: &str, value: Bytes) -> Result<(), Error> {
        check_write(key, Some(&value))?;
        self.lock().entries.insert(key.to_owned(), value);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, Error> {
        Ok(self.lock().entries.remove(key).is_some())
    }

    async fn write(&self, batch: WriteBatch) -> Result<(), Error> {
        // Validate everything first: a batch is applied whole or not at all.
        for (key, value) in &batch.ops {
            check_write(key, value.as_ref())?;
        }
        let mut data = self.lock();
        for (key, value) in batch.ops {
            match value {
                Some(value) => {
                    data.entries.insert(key, value);
                }
                None => {
                    data.entries.remove(&key);
                }
            }
        }
        Ok(())
    }

    async fn list(&self, range: ListRange) -> Result<Vec<(String, Bytes)>, Error> {
        let data = self.lock();
        let limit = range.limit.unwrap_or(usize::MAX);
        let matching = data.entries.iter().filter(|(k, _)| range.contains(k));
        let entries: Vec<(String, Bytes)> = if range.reverse {
            matching
                .rev()
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        } else {
            matching
                .take(limit)
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        Ok(entries)
    }

    async fn delete_all(&self) -> Result<(), Error> {
        *self.lock() = Data::default();
        Ok(())
    }

    async fn get_alarm(&self) -> Result<Option<SystemTime>, Error> {
        Ok(self.lock().alarm)
    }

    async fn set_alarm(&self, at: SystemTime) -> Result<(), Error> {
        let mut data = self.lock();
        data.alarm = Some(at);
        data.alarm_attempts = 0;
        Ok(())
    }

    async fn delete_alarm(&self) -> Result<(), Error> {
        let mut data = self.lock();
        data.alarm = None;
        data.alarm_attempts = 0;
        Ok(())
    }
}

/// Hands each object id its [`MemoryStorage`], the same one every time.
#[derive(Clone, Default)]
pub struct MemoryStorageProvider {
    stores: Arc<Mutex<HashMap<ObjectId, MemoryStorage>>>,
}

impl MemoryStorageProvider {
    /// No objects yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// The storage of `id`.
    #[must_use]
    pub fn storage(&self, id: &ObjectId) -> MemoryStorage {
        self.stores
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry(id.clone())
            .or_default()
            .clone()
    }
}

impl crate::StorageProvider for MemoryStorageProvider {
    type Storage = MemoryStorage;

    fn storage(&self, id: &ObjectId) -> MemoryStorage {
        Self::storage(self, id)
    }

    fn due_alarms(&self, now: SystemTime) -> Result<Vec<ObjectId>, Error> {
        let stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        let mut due: Vec<(SystemTime, ObjectId)> = stores
            .iter()
            .filter_map(|(id, store)| store.lock().alarm.map(|at| (at, id.clone())))
            .filter(|(at, _)| *at <= now)
            .collect();
        due.sort();
        Ok(due.into_iter().map(|(_, id)| id).collect())
    }

    fn next_alarm(&self) -> Result<Option<SystemTime>, Error> {
        let stores = self.stores.lock().unwrap_or_else(PoisonError::into_inner);
        Ok(stores.values().filter_map(|store| store.lock().alarm).min())
    }

    async fn alarm_record(&self, id: &ObjectId) -> Result<Option<AlarmRecord>, Error> {
        let storage = Self::storage(self, id);
        let data = storage.lock();
        Ok(data
            .alarm
            .map(|at| AlarmRecord::new(at, data.alarm_attempts)))
    }

    async fn set_alarm_record(&self, id: &ObjectId, record: AlarmRecord) -> Result<(), Error> {
        let storage = Self::storage(self, id);
        let mut data = storage.lock();
        data.alarm = Some(record.at);
        data.alarm_attempts = record.attempts;
        Ok(())
    }
}

impl std::fmt::Debug for MemoryStorageProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorageProvider")
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_storage_passes_the_storage_kit() {
        edge_core::testing::durable::run_all(MemoryStorage::new).await;
    }
}
