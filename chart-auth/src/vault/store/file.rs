//! [`FileStore`]: one file per record, written atomically and durably.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::OFlags;
use sha2::{Digest, Sha256};

use super::{Expect, RecordKey, StoredRecord, TokenStore, check};
use crate::error::StoreError;

/// One JSON file per record in a directory: the embedded default.
///
/// A record's file is named after its key: `o<owner tag>-<account id in hex>.json`,
/// where the owner tag is the first 16 bytes of the owner's SHA-256 in hex (owner ids
/// can be longer than a file name allows), or `<account id in hex>.json` for a record
/// written before owners existed. The file holds the owner's bytes, and a file whose
/// record is not the one its name says is refused as corrupt.
///
/// Every write goes to a temporary file, is fsynced, renamed over the record, and the
/// directory is fsynced, so a crash leaves either the old or the new record, never a
/// torn one. Files are mode 0600 in a 0700 directory. Writers in one process and across
/// processes serialize on an exclusive lock of `.lock` (`File::lock`, flock on Linux).
/// Readers need no lock.
///
/// The directory is checked when it is opened: one that is a symlink, that group or
/// others can write, or that another user owns is refused unless
/// [`FileStoreOptions`] allows it. The lock and temporary files are opened without
/// following symlinks.
#[derive(Clone, Debug)]
pub struct FileStore {
    dir: Arc<PathBuf>,
}

const RECORD_EXT: &str = ".json";
const TEMP_PREFIX: &str = ".tmp-";
const LOCK_FILE: &str = ".lock";
/// Write bits for group and others.
const SHARED_WRITE: u32 = 0o022;

/// How [`FileStore::open_with`] treats the store directory. The default is the
/// strictest: an existing, private directory of this user, not a symlink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStoreOptions {
    /// Create the directory (mode 0700, parents too) if it is missing.
    pub create: bool,
    /// Accept a directory that group or others can write, or that another user owns.
    pub allow_shared_dir: bool,
    /// Accept a store path that is a symlink.
    pub follow_symlink: bool,
}

/// Opens a file without following a symlink at its last component.
fn no_follow() -> i32 {
    OFlags::NOFOLLOW.bits() as i32
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

impl FileStore {
    /// Opens a store directory, creating it (mode 0700) if needed, and removes
    /// temporary files left by writers that were killed mid-write. The directory must
    /// not be a symlink, writable by group or others, or owned by another user.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StoreError> {
        Self::open_with(
            dir,
            FileStoreOptions {
                create: true,
                ..FileStoreOptions::default()
            },
        )
    }

    /// Opens a store directory with explicit [`FileStoreOptions`].
    ///
    /// ```
    /// use chart_auth::vault::{FileStore, FileStoreOptions};
    /// let tmp = tempfile::tempdir()?;
    /// let missing = tmp.path().join("typo");
    /// // Without `create`, a missing directory is an error, not a new empty store.
    /// assert!(FileStore::open_with(&missing, FileStoreOptions::default()).is_err());
    /// assert!(!missing.exists());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_with(
        dir: impl Into<PathBuf>,
        options: FileStoreOptions,
    ) -> Result<Self, StoreError> {
        let dir = dir.into();
        let unsafe_dir = |reason: &'static str| StoreError::UnsafeDirectory {
            path: dir.clone(),
            reason,
        };
        match fs::symlink_metadata(&dir) {
            Ok(meta) if meta.file_type().is_symlink() && !options.follow_symlink => {
                return Err(unsafe_dir(
                    "it is a symlink; open its target, or set FileStoreOptions::follow_symlink",
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound && options.create => {
                create_dirs_durably(&dir, &mut sync_dir)?;
            }
            Err(e) => return Err(io_err("open", &dir)(e)),
        }
        let meta = fs::metadata(&dir).map_err(io_err("open", &dir))?;
        if !meta.is_dir() {
            return Err(unsafe_dir("it is not a directory"));
        }
        if !options.allow_shared_dir {
            if meta.mode() & SHARED_WRITE != 0 {
                return Err(unsafe_dir(
                    "group or others can write it; run `chmod 700` on it, or set FileStoreOptions::allow_shared_dir",
                ));
            }
            if meta.uid() != rustix::process::geteuid().as_raw() {
                return Err(unsafe_dir(
                    "another user owns it; use a directory of this user, or set FileStoreOptions::allow_shared_dir",
                ));
            }
        }
        let store = Self { dir: Arc::new(dir) };
        let _lock = store.lock()?;
        for entry in fs::read_dir(&*store.dir).map_err(io_err("list", &store.dir))? {
            let entry = entry.map_err(io_err("list", &store.dir))?;
            if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
                fs::remove_file(entry.path()).map_err(io_err("remove", &entry.path()))?;
            }
        }
        Ok(store)
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that holds the record filed under `key`.
    pub fn record_path(&self, key: &RecordKey) -> PathBuf {
        let mut name = String::with_capacity(OWNER_TAG_HEX + key.account_id.len() * 2 + 7);
        if !key.owner.is_empty() {
            name.push('o');
            name.push_str(&owner_tag(&key.owner));
            name.push('-');
        }
        push_hex(&mut name, key.account_id.as_bytes());
        name.push_str(RECORD_EXT);
        self.dir.join(name)
    }

    fn lock(&self) -> Result<File, StoreError> {
        let path = self.dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(no_follow())
            .open(&path)
            .map_err(io_err("open", &path))?;
        file.lock().map_err(io_err("lock", &path))?;
        Ok(file)
    }

    /// The record filed under `key`. A file that holds another record (copied over this
    /// one) is [`StoreError::Corrupt`].
    fn read(&self, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError> {
        let path = self.record_path(key);
        let record = read_record(&path)?;
        if let Some(r) = &record
            && !r.is_filed_under(key)
        {
            return Err(StoreError::Corrupt {
                path,
                reason: "the file holds another account's record".into(),
            });
        }
        Ok(record)
    }

    fn write(&self, record: &StoredRecord, expect: Expect) -> Result<u64, StoreError> {
        let _lock = self.lock()?;
        let key = record.key();
        let current = self.read(&key)?.map(|r| r.version);
        check(expect, current)?;
        let mut record = record.clone();
        record.version = current.unwrap_or(0) + 1;
        let json = serde_json::to_vec_pretty(&record).expect("a record always serializes");
        write_atomic(&self.record_path(&key), &json)?;
        Ok(record.version)
    }

    fn remove(&self, key: &RecordKey, expect: Expect) -> Result<bool, StoreError> {
        let _lock = self.lock()?;
        let current = self.read(key)?.map(|r| r.version);
        check(expect, current)?;
        if current.is_none() {
            return Ok(false);
        }
        let path = self.record_path(key);
        fs::remove_file(&path).map_err(io_err("remove", &path))?;
        sync_dir(&self.dir)?;
        Ok(true)
    }

    /// Every record's key, from the file names (and, for owned records, the owner's
    /// bytes from inside the file), restricted to the owner tag `only` if given.
    fn keys(&self, only: Option<&str>) -> Result<Vec<RecordKey>, StoreError> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&*self.dir).map_err(io_err("list", &self.dir))? {
            let entry = entry.map_err(io_err("list", &self.dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let Some(stem) = name.strip_suffix(RECORD_EXT) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let bad_name = || StoreError::Corrupt {
                path: entry.path(),
                reason: "the file name is not a record's key".into(),
            };
            let (tag, hex) = match stem.strip_prefix('o') {
                Some(owned) => {
                    let (tag, hex) = owned.split_once('-').ok_or_else(bad_name)?;
                    (Some(tag), hex)
                }
                None => (None, stem),
            };
            if only.is_some() && tag != only {
                continue;
            }
            let account_id = decode_hex(hex).ok_or_else(bad_name)?;
            let owner = match tag {
                None => Vec::new(),
                Some(tag) => {
                    let record = read_record(&entry.path())?.ok_or_else(bad_name)?;
                    if owner_tag(&record.owner) != tag || record.account_id != account_id {
                        return Err(StoreError::Corrupt {
                            path: entry.path(),
                            reason: "the file holds another account's record".into(),
                        });
                    }
                    record.owner
                }
            };
            out.push(RecordKey { owner, account_id });
        }
        out.sort();
        Ok(out)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        job: impl FnOnce(FileStore) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || job(store))
            .await
            .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
    }
}

/// Hex digits of an owner tag in a file name.
const OWNER_TAG_HEX: usize = 32;

/// The first 16 bytes of the owner's SHA-256, in hex.
fn owner_tag(owner: &[u8]) -> String {
    let mut tag = String::with_capacity(OWNER_TAG_HEX);
    push_hex(&mut tag, &Sha256::digest(owner)[..OWNER_TAG_HEX / 2]);
    tag
}

fn push_hex(out: &mut String, bytes: &[u8]) {
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
}

fn decode_hex(hex: &str) -> Option<String> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    String::from_utf8(bytes?).ok()
}

fn read_record(path: &Path) -> Result<Option<StoredRecord>, StoreError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    parse_record(&bytes, path).map(Some)
}

/// Decodes a record file's bytes. Records are untrusted: errors name the place, never
/// the contents.
pub(crate) fn parse_record(bytes: &[u8], path: &Path) -> Result<StoredRecord, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
        path: path.to_owned(),
        reason: format!("not a record: line {} column {}", e.line(), e.column()),
    })
}

/// The directory a file is in, where its temp file goes (so the rename stays within
/// one file system) and which is fsynced after it: `.` for a bare file name.
fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Creates `dir` and its missing parents (mode 0700), and `sync`s the parent of each
/// directory it creates, top down: without that, a power loss soon after can lose a new
/// directory, with the records acknowledged in it, on a file system that does not
/// commit a `mkdir` by itself.
fn create_dirs_durably(
    dir: &Path,
    sync: &mut dyn FnMut(&Path) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut missing = Vec::new();
    let mut at = dir;
    loop {
        match fs::symlink_metadata(at) {
            Ok(_) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => missing.push(at),
            Err(e) => return Err(io_err("open", at)(e)),
        }
        match at.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => at = parent,
            _ => break,
        }
    }
    for created in missing.into_iter().rev() {
        match fs::DirBuilder::new().mode(0o700).create(created) {
            // Another process made it meanwhile; its entry must be durable all the same.
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err("create", created)(e)),
        }
        sync(dir_of(created))?;
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsync", dir))
}

/// Writes `bytes` to `path` atomically and durably, mode 0600: temp file, fsync,
/// rename, fsync of the directory.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = dir_of(path);
    let mut suffix = [0u8; 8];
    getrandom::fill(&mut suffix).expect("the OS random number generator failed");
    let tmp = dir.join(format!("{TEMP_PREFIX}{:016x}", u64::from_le_bytes(suffix)));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(no_follow())
            .open(&tmp)
            .map_err(io_err("create", &tmp))?;
        file.write_all(bytes).map_err(io_err("write", &tmp))?;
        file.sync_all().map_err(io_err("fsync", &tmp))?;
        fs::rename(&tmp, path).map_err(io_err("rename", path))?;
        sync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl TokenStore for FileStore {
    async fn get(&self, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError> {
        let key = key.clone();
        self.blocking(move |s| s.read(&key)).await
    }

    async fn put(&self, record: &StoredRecord, expect: Expect) -> Result<u64, StoreError> {
        let record = record.clone();
        self.blocking(move |s| s.write(&record, expect)).await
    }

    async fn delete(&self, key: &RecordKey, expect: Expect) -> Result<bool, StoreError> {
        let key = key.clone();
        self.blocking(move |s| s.remove(&key, expect)).await
    }

    async fn list(&self) -> Result<Vec<RecordKey>, StoreError> {
        self.blocking(|s| s.keys(None)).await
    }

    /// Reads only the owner's files (found by their owner tag).
    async fn list_owner(&self, owner: &[u8]) -> Result<Vec<String>, StoreError> {
        if owner.is_empty() {
            let legacy = self
                .list()
                .await?
                .into_iter()
                .filter(|k| k.owner.is_empty());
            return Ok(legacy.map(|k| k.account_id).collect());
        }
        let owner = owner.to_vec();
        self.blocking(move |s| {
            let keys = s.keys(Some(&owner_tag(&owner)))?;
            let own = keys.into_iter().filter(|k| k.owner == owner);
            Ok(own.map(|k| k.account_id).collect())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use std::path::Path;

    use super::{FileStore, FileStoreOptions, LOCK_FILE, create_dirs_durably, dir_of, sync_dir};
    use crate::error::StoreError;
    use crate::vault::RecordKey;

    #[test]
    fn a_symlinked_store_directory_is_refused_unless_allowed() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        FileStore::open(&real).unwrap();
        let link = tmp.path().join("link");
        symlink(&real, &link).unwrap();
        let refused = FileStore::open(&link).unwrap_err();
        assert!(
            matches!(&refused, StoreError::UnsafeDirectory { reason, .. } if reason.contains("symlink")),
            "{refused}"
        );
        let options = FileStoreOptions {
            follow_symlink: true,
            ..FileStoreOptions::default()
        };
        FileStore::open_with(&link, options).unwrap();
    }

    #[test]
    fn a_directory_others_can_write_is_refused_unless_allowed() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shared");
        FileStore::open(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o770)).unwrap();
        let refused = FileStore::open(&dir).unwrap_err();
        assert!(
            matches!(&refused, StoreError::UnsafeDirectory { reason, .. } if reason.contains("chmod 700")),
            "{refused}"
        );
        let options = FileStoreOptions {
            allow_shared_dir: true,
            ..FileStoreOptions::default()
        };
        FileStore::open_with(&dir, options).unwrap();
    }

    #[test]
    fn a_missing_directory_is_created_only_when_asked() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("typo");
        let err = FileStore::open_with(&missing, FileStoreOptions::default()).unwrap_err();
        assert!(matches!(err, StoreError::Io { op: "open", .. }), "{err}");
        assert!(!missing.exists());
        let options = FileStoreOptions {
            create: true,
            ..FileStoreOptions::default()
        };
        FileStore::open_with(&missing, options).unwrap();
        assert!(missing.is_dir());
    }

    #[test]
    fn a_record_that_cannot_be_read_is_an_error_not_an_absent_account() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FileStore::open(tmp.path().join("store")).unwrap();
        // A directory where the record file should be: reading it fails (EISDIR).
        let key = |account| RecordKey::new(b"owner", account);
        std::fs::create_dir(store.record_path(&key("acct"))).unwrap();
        let err = store.read(&key("acct")).unwrap_err();
        assert!(matches!(err, StoreError::Io { op: "read", .. }), "{err}");
        assert!(store.read(&key("another")).unwrap().is_none());
    }

    #[test]
    fn a_file_is_written_beside_itself_and_a_failed_fsync_is_an_error() {
        assert_eq!(
            dir_of(Path::new("/var/lib/app/rec.json")),
            Path::new("/var/lib/app")
        );
        assert_eq!(dir_of(Path::new("keyring")), Path::new("."));
        let tmp = tempfile::tempdir().unwrap();
        sync_dir(tmp.path()).unwrap();
        let err = sync_dir(&tmp.path().join("gone")).unwrap_err();
        assert!(matches!(err, StoreError::Io { op: "fsync", .. }), "{err}");
    }

    #[test]
    fn the_lock_file_is_never_followed_through_a_symlink() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        FileStore::open(&dir).unwrap();
        let elsewhere = tmp.path().join("elsewhere");
        std::fs::write(&elsewhere, b"not the store's").unwrap();
        std::fs::remove_file(dir.join(LOCK_FILE)).unwrap();
        symlink(&elsewhere, dir.join(LOCK_FILE)).unwrap();
        let err = FileStore::open(&dir).unwrap_err();
        assert!(matches!(err, StoreError::Io { op: "open", .. }), "{err}");
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"not the store's");
    }

    #[test]
    fn each_directory_created_is_made_durable_in_its_parent_top_down() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().to_path_buf();
        let dir = top.join("a").join("b").join("store");
        let mut synced = Vec::new();
        create_dirs_durably(&dir, &mut |p: &Path| {
            synced.push(p.to_path_buf());
            sync_dir(p)
        })
        .unwrap();
        assert_eq!(
            synced,
            [top.clone(), top.join("a"), top.join("a").join("b")],
            "the parent of every new directory, and only those"
        );
        for d in [top.join("a"), top.join("a/b"), dir.clone()] {
            let mode = std::fs::metadata(&d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        // Nothing to create: nothing to sync.
        synced.clear();
        create_dirs_durably(&dir, &mut |p: &Path| {
            synced.push(p.to_path_buf());
            Ok(())
        })
        .unwrap();
        assert!(synced.is_empty());
        // Another process making a directory first is no error, and its entry is synced.
        let raced = top.join("d").join("e");
        create_dirs_durably(&raced, &mut |p: &Path| {
            if p == top {
                std::fs::create_dir(top.join("d").join("e")).unwrap();
            }
            sync_dir(p)
        })
        .unwrap();
        assert!(raced.is_dir());
        // A directory that cannot be made is an error (here its parent is a dangling
        // symlink: the child is not found, and making it fails).
        symlink(top.join("nowhere"), top.join("f")).unwrap();
        let err = create_dirs_durably(&top.join("f").join("g"), &mut sync_dir).unwrap_err();
        assert!(matches!(err, StoreError::Io { op: "create", .. }), "{err}");
        // A parent that cannot be made durable fails the open.
        let err = create_dirs_durably(&top.join("c"), &mut |p: &Path| sync_dir(&p.join("gone")))
            .unwrap_err();
        assert!(matches!(err, StoreError::Io { op: "fsync", .. }), "{err}");
    }
}
