//! Where the keyring's data keys come from, and how they are kept at rest.
//!
//! A keyring file holds each AES data key as its source wraps it. [`Plaintext`] keeps
//! them as they are (the key file or environment variable of the first releases).
//! [`Pkcs11KeySource`] (feature `pkcs11`) keeps them only wrapped by a non-extractable
//! key-encryption key (KEK) in an HSM: envelope encryption, as Tink, Vault transit and
//! the AWS Encryption SDK do. Either way, sealing and opening records run in process
//! with the unwrapped data keys, which live only in zeroizing memory.
//!
//! # Another source, such as a cloud KMS
//! Implement [`KeySource`]: `wrap_key` is the KMS's Encrypt (or GenerateDataKey's
//! ciphertext), `unwrap_key` its Decrypt, and `scheme` names the KMS key so that a
//! keyring is never opened with the wrong one. Only PKCS#11 is tested here.

use std::fmt;

use zeroize::Zeroizing;

use crate::error::KeySourceError;
use crate::ids::KeyId;

#[cfg(feature = "pkcs11")]
mod pkcs11;
#[cfg(feature = "pkcs11")]
pub use pkcs11::{
    KEY_VAR, MODULE_VAR, PIN_FILE_VAR, PIN_VAR, Pkcs11Config, Pkcs11KeySource, TOKEN_VAR,
    WrapMechanism,
};

/// The environment variable that names the PKCS#11 module; without the `pkcs11`
/// feature it is only checked, so that a wrapped keyring is never taken for plaintext.
#[cfg(not(feature = "pkcs11"))]
pub(crate) const MODULE_VAR: &str = "CHART_PKCS11_MODULE";

/// The length of a data key: AES-256.
pub const DATA_KEY_LEN: usize = 32;

/// A data key, unwrapped. Zeroized on drop.
pub type DataKey = Zeroizing<[u8; DATA_KEY_LEN]>;

/// Wraps data keys for the keyring file and unwraps them when it is loaded.
///
/// ```
/// use chart_auth::vault::{KeySource, Plaintext, KeyId};
/// let key = zeroize::Zeroizing::new([7u8; 32]);
/// let stored = Plaintext.wrap_key(KeyId(1), &key)?;
/// assert_eq!(*Plaintext.unwrap_key(KeyId(1), &Plaintext.scheme(), &stored)?, *key);
/// # Ok::<(), chart_auth::KeySourceError>(())
/// ```
pub trait KeySource: Send + Sync + fmt::Debug {
    /// How the keyring file records this source, one line: `plaintext`, or its kind and
    /// parameters, such as `pkcs11 aes-key-wrap-pad`. The first word must match when a
    /// keyring is loaded; the whole line is handed back to [`KeySource::unwrap_key`].
    fn scheme(&self) -> String;

    /// Names the source for people, such as which key in which token; never a secret.
    fn describe(&self) -> String {
        self.scheme()
    }

    /// Wraps data key `id` for storage in the keyring file.
    fn wrap_key(&self, id: KeyId, key: &DataKey) -> Result<Zeroizing<Vec<u8>>, KeySourceError>;

    /// Unwraps data key `id`, which the keyring file stored under `scheme`.
    fn unwrap_key(
        &self,
        id: KeyId,
        scheme: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, KeySourceError>;
}

/// Data keys kept as they are: the keyring file itself is the secret.
#[derive(Clone, Copy, Debug, Default)]
pub struct Plaintext;

/// The scheme name of [`Plaintext`].
pub(crate) const PLAINTEXT: &str = "plaintext";

/// A scheme line from a keyring file as errors may show it: known words only, so that a
/// key pasted onto the `kek` line is never echoed.
pub(crate) fn shown_scheme(scheme: &str) -> String {
    const KNOWN: [&str; 4] = [PLAINTEXT, "pkcs11", "aes-key-wrap-pad", "aes-gcm"];
    scheme
        .split_whitespace()
        .map(|word| {
            if KNOWN.contains(&word) {
                word
            } else {
                "<unknown>"
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

impl KeySource for Plaintext {
    fn scheme(&self) -> String {
        PLAINTEXT.into()
    }

    fn wrap_key(&self, _id: KeyId, key: &DataKey) -> Result<Zeroizing<Vec<u8>>, KeySourceError> {
        Ok(Zeroizing::new(key.to_vec()))
    }

    fn unwrap_key(
        &self,
        id: KeyId,
        _scheme: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, KeySourceError> {
        let key: [u8; DATA_KEY_LEN] = wrapped
            .try_into()
            .map_err(|_| KeySourceError::UnwrapFailed(id))?;
        Ok(Zeroizing::new(key))
    }
}

#[cfg(test)]
mod tests {
    use zeroize::Zeroizing;

    use super::{KeySource, Plaintext, shown_scheme};
    use crate::error::KeySourceError;
    use crate::ids::KeyId;

    #[test]
    fn plaintext_keeps_keys_as_they_are_and_refuses_a_wrong_length() {
        let key = Zeroizing::new([7u8; 32]);
        let stored = Plaintext.wrap_key(KeyId(1), &key).unwrap();
        assert_eq!(stored.as_slice(), &[7u8; 32]);
        let back = Plaintext
            .unwrap_key(KeyId(1), "plaintext", &stored)
            .unwrap();
        assert_eq!(*back, [7u8; 32]);
        assert!(matches!(
            Plaintext.unwrap_key(KeyId(9), "plaintext", &[7u8; 31]),
            Err(KeySourceError::UnwrapFailed(KeyId(9)))
        ));
        assert_eq!(Plaintext.scheme(), "plaintext");
        assert_eq!(Plaintext.describe(), "plaintext");
    }

    #[test]
    fn a_shown_scheme_keeps_known_words_and_hides_the_rest() {
        assert_eq!(shown_scheme("pkcs11 aes-gcm"), "pkcs11 aes-gcm");
        assert_eq!(
            shown_scheme("pkcs11  aes-key-wrap-pad q2VjcmV0a2V5"),
            "pkcs11 aes-key-wrap-pad <unknown>"
        );
        assert_eq!(shown_scheme("plaintext"), "plaintext");
    }
}
