//! The sealed format and the AAD that binds a sealed token to its record.
//!
//! ```text
//! version(1) = 0x01 ‖ key_id(4, big endian) ‖ nonce(12) ‖ ciphertext ‖ tag(16)
//! ```
//!
//! The AAD is `"chart-auth/vault/v1" ‖ version ‖ key_id` followed by the client id, the
//! account id and the provider id, each prefixed by its 4-byte length, so a sealed
//! token moved onto another record fails to unseal. This layer knows the format and
//! the cipher; which key to use is the keyring's business.

use aes_gcm::aead::AeadInOut;
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use zeroize::Zeroizing;

use crate::error::VaultError;
use crate::ids::KeyId;

/// The sealed format's version byte.
pub const FORMAT_VERSION: u8 = 1;
const VERSION_LEN: usize = 1;
const KEY_ID_LEN: usize = 4;
const NONCE_LEN: usize = 12;
const HEADER_LEN: usize = VERSION_LEN + KEY_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
const AAD_PREFIX: &[u8] = b"chart-auth/vault/v1";
/// AADs up to this size are built on the stack.
const AAD_STACK_LEN: usize = 256;

/// The identity a sealed token is bound to (through the AAD).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecordIdentity<'a> {
    /// The OAuth client the token was issued to.
    pub client_id: &'a str,
    /// The account the token is for.
    pub account_id: &'a str,
    /// The account's tax provider.
    pub provider_id: &'a str,
}

impl RecordIdentity<'_> {
    /// Builds the AAD (on the stack when it fits) and hands it to `use_aad`.
    fn with_aad<T>(&self, key_id: KeyId, use_aad: impl FnOnce(&[u8]) -> T) -> T {
        let parts = [self.client_id, self.account_id, self.provider_id];
        let len = AAD_PREFIX.len()
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
        put(AAD_PREFIX);
        put(&[FORMAT_VERSION]);
        put(&key_id.0.to_be_bytes());
        for part in parts {
            put(&(part.len() as u32).to_be_bytes());
            put(part.as_bytes());
        }
        use_aad(buf)
    }
}

/// The key id a sealed blob names, if its header is well formed. Unknown versions are
/// refused here, before any key is looked up.
///
/// ```
/// use chart_auth::vault::{KeyId, sealed_key_id};
/// let mut blob = vec![1, 0, 0, 0, 7];
/// blob.resize(40, 0);
/// assert_eq!(sealed_key_id(&blob)?, KeyId(7));
/// # Ok::<(), chart_auth::VaultError>(())
/// ```
pub fn sealed_key_id(sealed: &[u8]) -> Result<KeyId, VaultError> {
    if sealed.len() < HEADER_LEN + TAG_LEN {
        return Err(VaultError::Truncated(sealed.len()));
    }
    if sealed[0] != FORMAT_VERSION {
        return Err(VaultError::UnknownVersion(sealed[0]));
    }
    let mut id = [0u8; KEY_ID_LEN];
    id.copy_from_slice(&sealed[VERSION_LEN..VERSION_LEN + KEY_ID_LEN]);
    Ok(KeyId(u32::from_be_bytes(id)))
}

/// Seals `plaintext` with `cipher`, the key `key_id`, under a fresh random nonce.
pub(crate) fn seal(
    cipher: &Aes256Gcm,
    key_id: KeyId,
    identity: &RecordIdentity<'_>,
    plaintext: &[u8],
) -> Result<Vec<u8>, VaultError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).expect("the OS random number generator failed");
    let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
    out.push(FORMAT_VERSION);
    out.extend_from_slice(&key_id.0.to_be_bytes());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(plaintext);
    let tag = identity.with_aad(key_id, |aad| {
        encrypt_detached(cipher, &nonce, aad, &mut out[HEADER_LEN..])
    })?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Unseals a blob whose key id ([`sealed_key_id`]) was already checked and whose key
/// is `cipher`, into a zeroizing buffer.
pub(crate) fn unseal(
    cipher: &Aes256Gcm,
    identity: &RecordIdentity<'_>,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let key_id = sealed_key_id(sealed)?;
    let mut nonce = [0u8; NONCE_LEN];
    nonce.copy_from_slice(&sealed[VERSION_LEN + KEY_ID_LEN..HEADER_LEN]);
    let (body, tag) = sealed[HEADER_LEN..].split_at(sealed.len() - HEADER_LEN - TAG_LEN);
    let mut tag_bytes = [0u8; TAG_LEN];
    tag_bytes.copy_from_slice(tag);
    let mut plain = Zeroizing::new(body.to_vec());
    identity.with_aad(key_id, |aad| {
        decrypt_detached(cipher, &nonce, aad, &mut plain, &tag_bytes)
    })?;
    Ok(plain)
}

/// AES-256-GCM encryption in place with a detached tag: the vault's cipher layer.
pub fn encrypt_detached(
    cipher: &Aes256Gcm,
    nonce: &[u8; NONCE_LEN],
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
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    buf: &mut [u8],
    tag: &[u8; TAG_LEN],
) -> Result<(), VaultError> {
    cipher
        .decrypt_inout_detached(&Nonce::from(*nonce), aad, buf.into(), &Tag::from(*tag))
        .map_err(|_| VaultError::Tampered)
}
