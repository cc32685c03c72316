//! Secret values: zeroized on drop, redacted in `Debug`, compared in constant time.
//!
//! None of these types implements `Display`, `Serialize` or (except where noted) `Clone`.
//! The only way to read one is an explicit [`expose_secret`](AccessToken::expose_secret).
//!
//! # What is wiped, and what is not
//! Wiped on drop: these types, the request bodies that carry the code and client secret
//! (handed to hyper without a copy), the `Authorization` header built from a token, the
//! response bodies collected from Chart, vault keys and their AES key schedules, the
//! HMAC key of the Connect state signer, and unsealed plaintext.
//!
//! Not wiped, because the SDK does not own the memory: rustls's TLS record buffers
//! (plaintext before encryption and after decryption), hyper's read buffers and header
//! maps, the `hmac` crate's internal key schedule, and copies the allocator leaves
//! behind when a caller's `String` grows before it is wrapped. Zeroizing narrows the
//! window in which a memory dump or a core file shows a secret; it does not close it.
//! Disable core dumps and swap for processes that hold tokens.

use std::fmt;

use bytes::Bytes;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

macro_rules! secret_string {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Zeroize, ZeroizeOnDrop)]
        pub struct $name(String);

        impl $name {
            /// Wraps a secret value. The `String` is moved in, so no copy is left behind.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// Reads the secret. Every call site is a place where the secret leaves its
            /// protective type, so keep them few and easy to audit.
            pub fn expose_secret(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!(stringify!($name), "(<redacted>)"))
            }
        }

        impl PartialEq for $name {
            /// Constant-time in the contents (the length is not secret).
            fn eq(&self, other: &Self) -> bool {
                self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
            }
        }

        impl Eq for $name {}
    };
}

secret_string! {
    /// The OAuth client secret that Chart issued to this application.
    ///
    /// ```
    /// use chart_auth::ClientSecret;
    /// let secret = ClientSecret::new("s3cr3t");
    /// assert_eq!(format!("{secret:?}"), "ClientSecret(<redacted>)");
    /// assert_eq!(secret.expose_secret(), "s3cr3t");
    /// ```
    ClientSecret
}

secret_string! {
    /// A single-use authorization code from Chart Connect.
    ///
    /// It is deliberately not `Clone`: a code can be exchanged once, so there is only
    /// ever one value to spend.
    AuthorizationCode
}

secret_string! {
    /// An access token for the Chart API. Treat it like a password.
    ///
    /// Not `Clone`: keep one copy, sealed in the vault, and open it when needed.
    AccessToken
}

/// A byte buffer that zeroizes its contents when the last reference is dropped.
///
/// Used for request bodies that carry secrets: [`SecretBuf::into_bytes`] hands the
/// buffer to hyper without copying it, and the bytes are wiped once hyper is done.
#[derive(Default)]
pub(crate) struct SecretBuf(Zeroizing<Vec<u8>>);

impl SecretBuf {
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self(Zeroizing::new(Vec::with_capacity(capacity)))
    }

    pub(crate) fn as_mut_vec(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }

    #[cfg(test)]
    pub(crate) fn as_slice(&self) -> &[u8] {
        &self.0
    }

    pub(crate) fn into_bytes(self) -> Bytes {
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for SecretBuf {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SecretBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretBuf(<{} bytes redacted>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_eq_compares_contents() {
        let a = AccessToken::new("tok-123");
        assert_eq!(format!("{a:?}"), "AccessToken(<redacted>)");
        assert_eq!(
            format!("{:#?}", AuthorizationCode::new("c")),
            "AuthorizationCode(<redacted>)"
        );
        assert_eq!(a, AccessToken::new("tok-123"));
        assert_ne!(a, AccessToken::new("tok-124"));
        assert_ne!(a, AccessToken::new("tok-12"));
    }

    #[test]
    fn secret_buf_bytes_share_the_buffer() {
        let mut buf = SecretBuf::with_capacity(8);
        buf.as_mut_vec().extend_from_slice(b"abc");
        let ptr = buf.as_slice().as_ptr();
        let bytes = buf.into_bytes();
        assert_eq!(bytes.as_ptr(), ptr, "into_bytes must not copy the secret");
        assert_eq!(&bytes[..], b"abc");
    }
}
