//! The keyring: 256-bit keys with 32-bit ids, one of them primary, and the text format
//! they are saved in.
//!
//! # Nonce budget
//! New records are sealed in format v2, XAES-256-GCM (C2SP): each seal draws a random
//! 192-bit nonce, whose first 96 bits derive a fresh AES-256-GCM subkey from the key.
//! Two seals collide only if all 192 bits repeat, which after q seals under one key has
//! a probability of about q²/2¹⁹³: 2⁻³³ at q = 2⁸⁰. (Plain AES-GCM with random 96-bit
//! nonces allows 2³² seals per key, NIST SP 800-38D; that was format v1's limit, and it
//! depended on how many processes sealed.)
//!
//! Each key counts its seals in this process and refuses to seal past
//! [`Keyring::DEFAULT_SEAL_LIMIT`] (2⁴⁸). The fleet-wide bound is then the number of
//! process lifetimes that seal under one key times 2⁴⁸: it stays under 2⁸⁰ for up to 2³²
//! process starts, far beyond any key's life. [`Keyring::seals`] shows the count; rotate
//! keys at least yearly anyway.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use xaes_256_gcm::Xaes256Gcm;
use zeroize::Zeroizing;

use super::key_source::{
    DATA_KEY_LEN as KEY_LEN, DataKey, KeySource, PLAINTEXT, Plaintext, shown_scheme,
};
use super::seal::{self, KeyCiphers, RecordIdentity, sealed_key_id};
use super::store::write_atomic;
use crate::error::{KeySourceError, VaultError};
use crate::ids::KeyId;

/// The environment variable that names the keyring file, for the library and the CLI.
const KEYRING_FILE_VAR: &str = "CHART_KEYRING_FILE";
/// The environment variable that holds a keyring's text.
const KEYRING_TEXT_VAR: &str = "CHART_VAULT_KEYRING";
/// No wrapped key is longer than this, whatever wraps it.
const MAX_WRAPPED_KEY: usize = 1024;
/// The line that says how a keyring's keys are kept, when they are not plaintext.
const KEK_DIRECTIVE: &str = "kek";
const TEXT_HEADER: &str =
    "# chart-auth keyring v1. Secret: keep it out of version control, mode 0600.\n";
/// Permission bits for group and others: a key file must have none.
const PRIVATE_MODE_MASK: u32 = 0o077;
/// No keyring file is larger than this (about 10,000 keys).
const MAX_KEYRING_FILE: usize = 1 << 20;

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

struct KeyEntry {
    material: Zeroizing<[u8; KEY_LEN]>,
    ciphers: KeyCiphers,
    status: KeyStatus,
    seals: AtomicU64,
}

/// A set of AES-256-GCM keys, one of them primary.
///
/// Cipher instances are kept per key (their round keys zeroize on drop).
///
/// ```
/// use chart_auth::vault::{Keyring, RecordIdentity};
/// let mut ring = Keyring::generate();
/// let id = RecordIdentity { client_id: "c", owner: b"user-1", account_id: "a", provider_id: "irs" };
/// let sealed = ring.seal(&id, b"token")?;
/// let new_key = ring.add_key()?;
/// ring.promote(new_key)?;
/// assert_eq!(&ring.unseal(&id, &sealed)?[..], b"token");
/// # Ok::<(), chart_auth::VaultError>(())
/// ```
pub struct Keyring {
    keys: BTreeMap<KeyId, KeyEntry>,
    primary: KeyId,
    seal_limit: u64,
    source: Arc<dyn KeySource>,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("source", &self.source.scheme())
            .field(
                "keys",
                &self
                    .keys
                    .iter()
                    .map(|(id, k)| (id.0, k.status.as_str()))
                    .collect::<BTreeMap<_, _>>(),
            )
            .finish()
    }
}

impl Keyring {
    /// Seals allowed per key in one process: 2⁴⁸ (see the module docs on the budget).
    pub const DEFAULT_SEAL_LIMIT: u64 = 1 << 48;

    fn entry(material: DataKey, status: KeyStatus) -> KeyEntry {
        let ciphers = KeyCiphers {
            v2: Xaes256Gcm::new_from_slice(material.as_ref()).expect("32-byte key"),
            v1: Aes256Gcm::new_from_slice(material.as_ref()).expect("32-byte key"),
        };
        KeyEntry {
            material,
            ciphers,
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
            source: Arc::new(Plaintext),
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
            source: Arc::new(Plaintext),
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
    /// line, never its contents. A keyring whose keys are wrapped (it has a `kek` line)
    /// needs its key source: [`Keyring::parse_with`].
    pub fn parse(text: &str) -> Result<Self, VaultError> {
        Self::parse_with(text, Arc::new(Plaintext))
    }

    /// Parses the keyring text format with the key source that wrapped its keys.
    ///
    /// A wrapped keyring starts with a line naming how its keys are kept, such as
    /// `kek pkcs11 aes-key-wrap-pad`, and each key field is the base64 of the wrapped
    /// key. The source must be of the kind the file names: a plaintext keyring is not
    /// opened as a wrapped one, nor the reverse.
    pub fn parse_with(text: &str, source: Arc<dyn KeySource>) -> Result<Self, VaultError> {
        let trimmed = text.trim();
        if !trimmed.is_empty()
            && !trimmed.contains(char::is_whitespace)
            && !trimmed.starts_with('#')
        {
            check_scheme(PLAINTEXT, source.as_ref())?;
            let key =
                decode_key(trimmed).map_err(|r| VaultError::BadKeyring(format!("the key {r}")))?;
            let mut ring = Self::from_key(KeyId(1), key.as_ref())?;
            ring.source = source;
            return Ok(ring);
        }
        let mut keys = BTreeMap::new();
        let mut primary = None;
        let mut scheme: Option<&str> = None;
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |reason: &str| VaultError::BadKeyring(format!("line {}: {reason}", n + 1));
            if let Some(rest) = line
                .strip_prefix(KEK_DIRECTIVE)
                .filter(|r| r.starts_with(' '))
            {
                if scheme.is_some() || !keys.is_empty() {
                    return Err(bad("the `kek` line must come once, before the keys"));
                }
                let named = rest.trim();
                check_scheme(named, source.as_ref())?;
                scheme = Some(named);
                continue;
            }
            // A file without a `kek` line holds plaintext keys.
            let scheme = match scheme {
                Some(named) => named,
                None => {
                    check_scheme(PLAINTEXT, source.as_ref())?;
                    *scheme.insert(PLAINTEXT)
                }
            };
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
            let key = if scheme == PLAINTEXT {
                decode_key(key).map_err(|r| bad(&format!("the key {r}")))?
            } else {
                let wrapped = decode_wrapped(key).map_err(|r| bad(&format!("the key {r}")))?;
                source.unwrap_key(id, scheme, &wrapped)?
            };
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
            source,
        })
    }

    /// Writes the keyring in the text format [`Keyring::parse`] reads, each key as the
    /// keyring's [key source](Keyring::key_source) wraps it.
    ///
    /// The zeroizing buffer is sized before anything is written, so it never grows and
    /// leaves key text behind in freed memory.
    pub fn to_text(&self) -> Result<Zeroizing<String>, VaultError> {
        let scheme = self.source.scheme();
        let kek_line = if scheme == PLAINTEXT {
            String::new()
        } else {
            format!("{KEK_DIRECTIVE} {scheme}\n")
        };
        let mut lines = Vec::with_capacity(self.keys.len());
        for (id, k) in &self.keys {
            let head = format!("{} {} ", id.0, k.status.as_str());
            lines.push((head, self.source.wrap_key(*id, &k.material)?));
        }
        let len = TEXT_HEADER.len()
            + kek_line.len()
            + lines
                .iter()
                .map(|(head, stored)| {
                    head.len() + base64::encoded_len(stored.len(), true).unwrap_or(0) + 1
                })
                .sum::<usize>();
        let mut out = Zeroizing::new(String::with_capacity(len));
        out.push_str(TEXT_HEADER);
        out.push_str(&kek_line);
        for (head, stored) in lines {
            out.push_str(&head);
            STANDARD.encode_string(stored.as_slice(), &mut out);
            out.push('\n');
        }
        debug_assert_eq!(out.len(), len, "the keyring text was sized exactly");
        Ok(out)
    }

    /// How this keyring's keys are kept at rest: where they were loaded from, and how
    /// [`Keyring::save`] writes them.
    pub fn key_source(&self) -> &Arc<dyn KeySource> {
        &self.source
    }

    /// Keeps the keys under another source from the next [`Keyring::save`] on: wrapping
    /// a plaintext keyring, unwrapping one, or moving to a new key-encryption key. The
    /// data keys, and so every sealed record, stay as they are.
    pub fn set_key_source(&mut self, source: Arc<dyn KeySource>) {
        self.source = source;
    }

    /// Reads the keyring named by the environment: the file at `CHART_KEYRING_FILE`
    /// (the same variable the `chart-auth` CLI reads, checked as [`Keyring::load`]
    /// does), or else the text in `CHART_VAULT_KEYRING` (the text format, or one base64
    /// key). When `CHART_PKCS11_MODULE` is set, the keys are unwrapped by the
    #[cfg_attr(
        feature = "pkcs11",
        doc = "[`Pkcs11KeySource`](super::Pkcs11KeySource)"
    )]
    #[cfg_attr(not(feature = "pkcs11"), doc = "`Pkcs11KeySource`")]
    /// that the `CHART_PKCS11_*` variables describe (feature `pkcs11`).
    pub fn from_env() -> Result<Self, VaultError> {
        Self::from_settings(
            std::env::var_os(KEYRING_FILE_VAR),
            std::env::var(KEYRING_TEXT_VAR).ok().map(Zeroizing::new),
            env_key_source()?,
        )
    }

    /// [`Keyring::from_env`] on the values of its two variables: the file wins when it
    /// is named, an empty name counts as unset.
    fn from_settings(
        file: Option<std::ffi::OsString>,
        text: Option<Zeroizing<String>>,
        source: Arc<dyn KeySource>,
    ) -> Result<Self, VaultError> {
        if let Some(path) = file.filter(|p| !p.is_empty()) {
            return Self::load_with(Path::new(&path), source);
        }
        let text = text.ok_or_else(|| {
            VaultError::BadKeyring(format!(
                "neither {KEYRING_FILE_VAR} nor {KEYRING_TEXT_VAR} is set"
            ))
        })?;
        Self::parse_with(&text, source)
    }

    /// Reads a keyring file of plaintext keys. See [`Keyring::load_with`].
    pub fn load(path: &Path) -> Result<Self, VaultError> {
        Self::load_with(path, Arc::new(Plaintext))
    }

    /// Reads a keyring file whose keys `source` wrapped. Like ssh with a private key,
    /// it refuses a file that group or others may read or write.
    pub fn load_with(path: &Path, source: Arc<dyn KeySource>) -> Result<Self, VaultError> {
        let cannot = |e: std::io::Error| {
            VaultError::BadKeyring(format!("cannot read {}: {e}", path.display()))
        };
        let mut file = File::open(path).map_err(cannot)?;
        let meta = file.metadata().map_err(cannot)?;
        let mode = meta.permissions().mode();
        if mode & PRIVATE_MODE_MASK != 0 {
            return Err(VaultError::BadKeyring(format!(
                "{} is accessible by others (mode {:o}); run `chmod 600 {}`",
                path.display(),
                mode & 0o777,
                path.display()
            )));
        }
        // Sized up front so that reading never reallocates and leaves key text behind.
        let size = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        if size > MAX_KEYRING_FILE {
            return Err(VaultError::BadKeyring(format!(
                "{} is larger than a keyring can be",
                path.display()
            )));
        }
        let mut bytes = Zeroizing::new(Vec::with_capacity(size + 1));
        file.by_ref()
            .take(MAX_KEYRING_FILE as u64)
            .read_to_end(&mut bytes)
            .map_err(cannot)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| VaultError::BadKeyring(format!("{} is not UTF-8 text", path.display())))?;
        Self::parse_with(text, source)
    }

    /// Writes the keyring file atomically and durably, mode 0600, with each key as the
    /// keyring's key source wraps it.
    pub fn save(&self, path: &Path) -> Result<(), VaultError> {
        write_atomic(path, self.to_text()?.as_bytes()).map_err(VaultError::Store)
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

    /// How many records a key has sealed in this process. Seals refused for the nonce
    /// budget are not counted.
    pub fn seals(&self, id: KeyId) -> Option<u64> {
        self.keys.get(&id).map(|k| k.seals.load(Ordering::Relaxed))
    }

    /// Adds a fresh random key as active (not yet primary) and returns its id.
    ///
    /// The id is one more than the highest; when that would pass `u32::MAX` it is
    /// [`VaultError::KeyIdsExhausted`], never a replaced key.
    pub fn add_key(&mut self) -> Result<KeyId, VaultError> {
        let id = match self.keys.keys().next_back() {
            None => KeyId(1),
            Some(last) => KeyId(last.0.checked_add(1).ok_or(VaultError::KeyIdsExhausted)?),
        };
        self.keys
            .insert(id, Self::entry(random_key(), KeyStatus::Active));
        Ok(id)
    }

    /// Adds a given key (32 raw bytes) as active.
    pub fn add_key_bytes(&mut self, id: KeyId, key: &[u8]) -> Result<(), VaultError> {
        if self.keys.contains_key(&id) {
            return Err(VaultError::KeyExists(id));
        }
        self.keys
            .insert(id, Self::entry(key_array(key)?, KeyStatus::Active));
        Ok(())
    }

    /// Makes an active key the primary; the old primary stays active.
    pub fn promote(&mut self, id: KeyId) -> Result<(), VaultError> {
        match self.keys.get(&id).map(|k| k.status) {
            None => return Err(VaultError::NoSuchKey(id)),
            Some(KeyStatus::Retired) => return Err(VaultError::PromoteRetired(id)),
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
            return Err(VaultError::RetirePrimary(id));
        }
        let key = self.keys.get_mut(&id).ok_or(VaultError::NoSuchKey(id))?;
        key.status = KeyStatus::Retired;
        Ok(())
    }

    /// Undoes [`Keyring::retire`]: the key unseals again, as an active key.
    pub fn activate(&mut self, id: KeyId) -> Result<(), VaultError> {
        let key = self.keys.get_mut(&id).ok_or(VaultError::NoSuchKey(id))?;
        if key.status == KeyStatus::Retired {
            key.status = KeyStatus::Active;
        }
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
        // Counted only when under the limit, so a refused seal never counts; the count
        // is taken before sealing, so concurrent seals can never pass the limit.
        key.seals
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.seal_limit).then_some(n + 1)
            })
            .map_err(|_| VaultError::NonceBudgetExhausted(id))?;
        seal::seal(&key.ciphers, id, identity, plaintext)
    }

    /// Unseals a blob bound to `identity` into a zeroizing buffer. Unknown versions and
    /// key ids, and retired keys, are refused before any decryption is tried.
    pub fn unseal(
        &self,
        identity: &RecordIdentity<'_>,
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, VaultError> {
        let id = sealed_key_id(sealed)?;
        let key = self.keys.get(&id).ok_or(VaultError::UnknownKey(id))?;
        if key.status == KeyStatus::Retired {
            return Err(VaultError::KeyRetired(id));
        }
        seal::unseal(&key.ciphers, identity, sealed)
    }
}

/// Refuses to open a keyring with another kind of source than the one that wrote it.
fn check_scheme(found: &str, source: &dyn KeySource) -> Result<(), KeySourceError> {
    let given = source.scheme();
    let kind = |scheme: &str| scheme.split_whitespace().next().unwrap_or("").to_owned();
    if kind(found) == kind(&given) {
        return Ok(());
    }
    let hint = if found == PLAINTEXT {
        "wrap the keyring first (`chart-auth keyring wrap`), or open it without a key source"
    } else {
        "give the key source that wrapped them (for PKCS#11: --pkcs11-module, --token-label \
         and --key-label, or the CHART_PKCS11_* variables)"
    };
    Err(KeySourceError::Mismatch {
        found: shown_scheme(found),
        given,
        hint,
    })
}

/// The key source the `CHART_PKCS11_*` variables describe, or plaintext keys.
fn env_key_source() -> Result<Arc<dyn KeySource>, VaultError> {
    if std::env::var_os(super::key_source::MODULE_VAR).is_none_or(|m| m.is_empty()) {
        return Ok(Arc::new(Plaintext));
    }
    #[cfg(feature = "pkcs11")]
    {
        let config = super::key_source::Pkcs11Config::from_env()?;
        Ok(Arc::new(config.open()?))
    }
    #[cfg(not(feature = "pkcs11"))]
    Err(VaultError::BadKeyring(format!(
        "{} is set, but chart-auth was built without the `pkcs11` feature",
        super::key_source::MODULE_VAR
    )))
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

fn decode_wrapped(b64: &str) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let mut buf = Zeroizing::new(vec![0u8; MAX_WRAPPED_KEY]);
    let n = STANDARD
        .decode_slice(b64.as_bytes(), buf.as_mut_slice())
        .map_err(|_| "is not base64 of a wrapped key")?;
    buf.truncate(n);
    Ok(buf)
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

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    use std::sync::Arc;

    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use zeroize::Zeroizing;

    use super::{Keyring, MAX_KEYRING_FILE, Plaintext};
    use crate::error::VaultError;
    use crate::ids::KeyId;

    fn b64(byte: u8) -> String {
        STANDARD.encode([byte; 32])
    }

    fn message(result: Result<Keyring, VaultError>) -> String {
        match result {
            Ok(_) => panic!("accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn one_bare_key_is_key_1_and_a_lone_comment_is_no_keyring() {
        let ring = Keyring::parse(&format!("  {}\n", b64(1))).unwrap();
        assert_eq!(ring.primary(), KeyId(1));
        assert_eq!(ring.keys().count(), 1);
        assert!(message(Keyring::parse("#comment")).contains("no primary key"));
    }

    #[test]
    fn a_key_of_another_length_is_refused_by_what_is_wrong() {
        let short = STANDARD.encode([1u8; 31]);
        assert!(message(Keyring::parse(&short)).contains("is not 32 bytes long"));
        // Past the decoder's 35-byte buffer: refused before it is decoded in full.
        let long = STANDARD.encode([1u8; 40]);
        assert!(message(Keyring::parse(&long)).contains("is not base64 of 32 bytes"));
    }

    #[test]
    fn the_kek_line_comes_once_and_before_the_keys() {
        let after_a_key = format!("1 primary {}\nkek plaintext\n", b64(1));
        assert!(message(Keyring::parse(&after_a_key)).contains("must come once, before the keys"));
        let twice = format!("kek plaintext\nkek plaintext\n1 primary {}\n", b64(1));
        assert!(message(Keyring::parse(&twice)).contains("must come once, before the keys"));
    }

    fn private_file(dir: &std::path::Path, name: &str, text: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .unwrap();
        file.write_all(text).unwrap();
        path
    }

    #[test]
    fn a_keyring_file_may_be_up_to_its_cap_and_not_a_byte_more() {
        let dir = tempfile::tempdir().unwrap();
        let line = format!("7 primary {}\n", b64(7));
        let mut full = line.clone().into_bytes();
        full.resize(MAX_KEYRING_FILE - 1, b'#');
        full.push(b'\n');
        let at_cap = private_file(dir.path(), "at-cap", &full);
        assert_eq!(Keyring::load(&at_cap).unwrap().primary(), KeyId(7));
        full.push(b'#');
        let over = private_file(dir.path(), "over", &full);
        assert!(message(Keyring::load(&over)).contains("larger than a keyring can be"));
    }

    #[test]
    fn the_file_variable_wins_over_the_text_and_an_empty_one_is_unset() {
        let dir = tempfile::tempdir().unwrap();
        let file = private_file(
            dir.path(),
            "ring",
            format!("7 primary {}\n", b64(7)).as_bytes(),
        );
        let text = || Some(Zeroizing::new(format!("3 primary {}", b64(3))));
        let source = || Arc::new(Plaintext);
        let from = |file: Option<&std::path::Path>, text| {
            Keyring::from_settings(file.map(|f| f.as_os_str().to_owned()), text, source())
        };
        assert_eq!(from(Some(&file), text()).unwrap().primary(), KeyId(7));
        assert_eq!(from(Some("".as_ref()), text()).unwrap().primary(), KeyId(3));
        assert_eq!(from(None, text()).unwrap().primary(), KeyId(3));
        assert!(message(from(None, None)).contains("neither CHART_KEYRING_FILE nor"));
    }
}
