//! The sealed formats and the AAD that binds a sealed token to its record.
//!
//! ```text
//! v2 (written): version(1) = 0x02 ‖ key_id(4, big endian) ‖ nonce(24) ‖ ciphertext ‖ tag(16)
//! v1 (read):    version(1) = 0x01 ‖ key_id(4, big endian) ‖ nonce(12) ‖ ciphertext ‖ tag(16)
//! ```
//!
//! v2 is XAES-256-GCM (C2SP): the first 12 bytes of its 24-byte random nonce derive a
//! fresh AES-256-GCM subkey from the keyring key, and the last 12 are that subkey's GCM
//! nonce. Its AAD is `"chart-auth/vault/v2" ‖ version ‖ key_id` followed by the client
//! id, the owner, the account id and the provider id, each prefixed by its 4-byte
//! length. v1 is AES-256-GCM under the keyring key itself, with the AAD
//! `"chart-auth/vault/v1" ‖ version ‖ key_id ‖ client ‖ account ‖ provider`: it binds no
//! owner, so a v1 record opens only for the legacy (empty) owner. Either way a sealed
//! token moved onto another record fails to unseal. This layer knows the formats and
//! the ciphers; which key to use is the keyring's business.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use xaes_256_gcm::Xaes256Gcm;
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::ids::KeyId;

/// The version byte of the sealed format that new records are written in.
pub const FORMAT_VERSION: u8 = 2;
/// The version byte of the first format (no owner, one AES-256-GCM key), still read.
pub const FORMAT_V1: u8 = 1;
const VERSION_LEN: usize = 1;
const KEY_ID_LEN: usize = 4;
const V1_NONCE_LEN: usize = 12;
const V2_NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// AADs up to this size are built on the stack.
const AAD_STACK_LEN: usize = 512;

/// The identity a sealed token is bound to (through the AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordIdentity<'a> {
    /// The OAuth client the token was issued to.
    pub client_id: &'a str,
    /// Whose account it is (empty for a legacy v1 record).
    pub owner: &'a [u8],
    /// The account the token is for.
    pub account_id: &'a str,
    /// The account's tax provider.
    pub provider_id: &'a str,
}

impl RecordIdentity<'_> {
    /// Builds the AAD of `version` (on the stack when it fits) and hands it to `use_aad`.
    fn with_aad<T>(&self, version: u8, key_id: KeyId, use_aad: impl FnOnce(&[u8]) -> T) -> T {
        let (prefix, parts): (&[u8], &[&[u8]]) = if version == FORMAT_V1 {
            (
                b"chart-auth/vault/v1",
                &[
                    self.client_id.as_bytes(),
                    self.account_id.as_bytes(),
                    self.provider_id.as_bytes(),
                ],
            )
        } else {
            (
                b"chart-auth/vault/v2",
                &[
                    self.client_id.as_bytes(),
                    self.owner,
                    self.account_id.as_bytes(),
                    self.provider_id.as_bytes(),
                ],
            )
        };
        let len = prefix.len()
            + VERSION_LEN
            + KEY_ID_LEN
            + parts.iter().map(|p| 4 + p.len()).sum::<usize>();
        let mut stack = [0u8; AAD_STACK_LEN];
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
        put(prefix);
        put(&[version]);
        put(&key_id.0.to_be_bytes());
        for part in parts {
            put(&(part.len() as u32).to_be_bytes());
            put(part);
        }
        use_aad(buf)
    }
}

/// The parts of a well-formed sealed blob's header.
struct Header {
    version: u8,
    key_id: KeyId,
    nonce_len: usize,
}

impl Header {
    fn len(&self) -> usize {
        VERSION_LEN + KEY_ID_LEN + self.nonce_len
    }
}

fn header(sealed: &[u8]) -> Result<Header, VaultError> {
    let version = *sealed.first().ok_or(VaultError::Truncated(0))?;
    let nonce_len = match version {
        FORMAT_VERSION => V2_NONCE_LEN,
        FORMAT_V1 => V1_NONCE_LEN,
        other => return Err(VaultError::UnknownVersion(other)),
    };
    if sealed.len() < VERSION_LEN + KEY_ID_LEN + nonce_len + TAG_LEN {
        return Err(VaultError::Truncated(sealed.len()));
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&sealed[VERSION_LEN..VERSION_LEN + KEY_ID_LEN]);
    Ok(Header {
        version,
        key_id: KeyId(u32::from_be_bytes(id)),
        nonce_len,
    })
}

/// The key id a sealed blob names, if its header is well formed. Unknown versions are
/// refused here, before any key is looked up.
///
/// ```
/// use chart_auth::vault::{KeyId, sealed_key_id};
/// let mut blob = vec![2, 0, 0, 0, 7];
/// blob.resize(45, 0);
/// assert_eq!(sealed_key_id(&blob)?, KeyId(7));
/// assert!(sealed_key_id(&[9; 45]).is_err());
/// # Ok::<(), chart_auth::VaultError>(())
/// ```
pub fn sealed_key_id(sealed: &[u8]) -> Result<KeyId, VaultError> {
    Ok(header(sealed)?.key_id)
}

/// The format version of a sealed blob, if its header is well formed.
pub fn sealed_version(sealed: &[u8]) -> Result<u8, VaultError> {
    Ok(header(sealed)?.version)
}

/// One keyring key's two ciphers: XAES-256-GCM for v2, AES-256-GCM for v1. Both
/// zeroize their round keys on drop.
pub(crate) struct KeyCiphers {
    pub(crate) v2: Xaes256Gcm,
    pub(crate) v1: Aes256Gcm,
}

/// Seals `plaintext` in format v2 under the key `key_id`, with a fresh random nonce.
pub(crate) fn seal(
    ciphers: &KeyCiphers,
    key_id: KeyId,
    identity: &RecordIdentity<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; V2_NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the OS random number generator failed");
    let header_len = VERSION_LEN + KEY_ID_LEN + V2_NONCE_LEN;
    let mut out = Vec::with_capacity(header_len + plaintext.len() + TAG_LEN);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&key_id.0.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = identity.with_aad(FORMAT_VERSION, key_id, |aad| {
        ciphers
            .v2
            .encrypt_inout_detached(&nonce.into(), aad, out[header_len..].as_mut().into())
            .map_err(|_| VaultError::Tampered)
    })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Unseals a blob (v2, or v1 for the legacy owner) whose key is `ciphers`, into a
/// zeroizing buffer.
pub(crate) fn unseal(
    ciphers: &KeyCiphers,
    identity: &RecordIdentity<'_>,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let header = header(sealed)?;
    if header.version == FORMAT_V1 && !identity.owner.is_empty() {
        // A v1 AAD binds no owner: opening one for an owner would let a legacy record
        // moved under that owner's name be read as theirs.
        return Err(VaultError::Tampered);
    }
    let nonce = &sealed[VERSION_LEN + KEY_ID_LEN..header.len()];
    let (body, tag) = sealed[header.len()..].split_at(sealed.len() - header.len() - TAG_LEN);
    let tag = Tag::try_from(tag).map_err(|_| VaultError::Tampered)?;
    let mut plain = Zeroizing::new(body.to_vec());
    identity.with_aad(header.version, header.key_id, |aad| {
        if header.version == FORMAT_V1 {
            let nonce = nonce.try_into().map_err(|_| VaultError::Tampered)?;
            decrypt_detached(&ciphers.v1, nonce, aad, &mut plain, &tag.into())
        } else {
            let nonce = xaes_256_gcm::Nonce::try_from(nonce).map_err(|_| VaultError::Tampered)?;
            ciphers
                .v2
                .decrypt_inout_detached(&nonce, aad, plain.as_mut_slice().into(), &tag)
                .map_err(|_| VaultError::Tampered)
        }
    })?;
    Ok(plain)
}

/// AES-256-GCM encryption in place with a detached tag: the vault's cipher layer.
pub fn encrypt_detached(
    cipher: &Aes256Gcm,
    nonce: &[u8; V1_NONCE_LEN],
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
    nonce: &[u8; V1_NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), VaultError> {
    cipher
        .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into(), &Tag::from(*tag))
        .map_err(|_| VaultError::Tampered)
}
