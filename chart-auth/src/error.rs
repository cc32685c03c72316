//! Every error type of the SDK, in one place: [`Error`] and the types it wraps.
//!
//! The bottom of the crate: it imports only the shared identifiers ([`KeyId`]).
//! Every variant of [`Error`] carries what a caller needs to act (the HTTP status, Chart's error
//! `name` and `message`, the `Chart-Request-Id`) and never a secret: messages from the
//! server are scrubbed of the code and client secret before they are kept.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use http::StatusCode;

use crate::ids::KeyId;

/// What Chart said about a failed request, as far as the request got.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorDetail {
    /// The HTTP status, when a response arrived.
    pub status: Option<StatusCode>,
    /// Chart's error `name`, e.g. `invalid_grant_error`.
    pub name: Option<String>,
    /// Chart's human-readable `message` (scrubbed of any secret the SDK sent).
    pub message: Option<String>,
    /// The `Chart-Request-Id` response header, for support tickets.
    pub request_id: Option<String>,
}

impl fmt::Display for ErrorDetail {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        if let Some(status) = self.status {
            write!(f, "HTTP {}", status.as_u16())?;
            sep = ", ";
        }
        if let Some(name) = &self.name {
            write!(f, "{sep}{name}")?;
            sep = ", ";
        }
        if let Some(message) = &self.message {
            write!(f, "{sep}\"{message}\"")?;
            sep = ", ";
        }
        if let Some(id) = &self.request_id {
            write!(f, "{sep}request id {id}")?;
        }
        Ok(())
    }
}

/// Why the outcome of a request that may have reached Chart is unknown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UnknownCause {
    /// The request deadline passed while the request was in flight.
    Timeout,
    /// The connection closed, or the response broke off, after the request was sent.
    ConnectionLost,
    /// A server error that is not Chart's own (no Chart error body): a proxy or load
    /// balancer in front of Chart answered, and Chart may have seen the request.
    NotFromChart,
}

/// Why a Connect callback's `state` (the signed Connect state) was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectStateError {
    /// Not a state this SDK issued: bad encoding or bad signature.
    Forged,
    /// The state's lifetime has passed.
    Expired,
    /// The state was issued to another session (login CSRF: a callback this session did
    /// not start).
    SessionMismatch,
    /// The state was issued for the other Connect flow.
    FlowMismatch,
    /// The state was already used by an earlier callback.
    Replayed,
}

impl fmt::Display for ConnectStateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Forged => "the state is not one this application issued",
            Self::Expired => "the state has expired",
            Self::SessionMismatch => "the state belongs to another session",
            Self::FlowMismatch => "the state was issued for the other Connect flow",
            Self::Replayed => "the state was already used",
        })
    }
}

/// Every way an SDK operation can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The code is invalid, expired or already used, or the `redirect_uri` did not match.
    #[error("invalid grant ({0})")]
    InvalidGrant(ErrorDetail),
    /// Chart did not accept the client id and secret.
    #[error("invalid client credentials ({0})")]
    InvalidClient(ErrorDetail),
    /// The access token is unknown, revoked or disconnected.
    #[error("invalid access token ({0})")]
    InvalidToken(ErrorDetail),
    /// Chart rejected the request as malformed.
    #[error("invalid request ({0})")]
    InvalidRequest(ErrorDetail),
    /// Chart asked us to slow down, and the wait did not fit in the deadline.
    #[error("rate limited, retry after {retry_after:?} ({detail})")]
    RateLimited {
        /// Chart's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
        /// What Chart said.
        detail: ErrorDetail,
    },
    /// Chart answered with a server error, or another unexpected status.
    #[error("Chart server error ({detail})")]
    Server {
        /// The HTTP status.
        status: StatusCode,
        /// What Chart said.
        detail: ErrorDetail,
    },
    /// The request may have reached Chart, and the code may be spent; it was not resent.
    #[error("outcome unknown: {cause:?} after the request was sent ({detail})")]
    OutcomeUnknown {
        /// What interrupted the request.
        cause: UnknownCause,
        /// What is known of the response.
        detail: ErrorDetail,
    },
    /// No connection could be made (every attempt failed before sending the request).
    #[error("could not connect to Chart: {reason}")]
    Connect {
        /// The underlying failure, without any secret.
        reason: String,
    },
    /// The TLS handshake failed, e.g. an untrusted certificate.
    #[error("TLS handshake with Chart failed: {reason}")]
    Tls {
        /// The underlying failure, without any secret.
        reason: String,
    },
    /// Connecting did not finish in time; the request was never sent.
    #[error("timed out connecting to Chart")]
    Timeout,
    /// Chart's answer could not be understood.
    #[error("malformed response from Chart: {reason} ({detail})")]
    MalformedResponse {
        /// What was wrong with it.
        reason: String,
        /// What is known of the response.
        detail: ErrorDetail,
    },
    /// Chart's answer was larger than the configured cap.
    #[error("response from Chart exceeds {limit} bytes ({detail})")]
    ResponseTooLarge {
        /// The cap in bytes.
        limit: usize,
        /// What is known of the response.
        detail: ErrorDetail,
    },
    /// The callback's `state` was refused.
    #[error("invalid Connect state: {0}")]
    InvalidConnectState(ConnectStateError),
    /// The user cancelled or Chart Connect refused the connection (`?error=...`).
    #[error("Connect was not completed: {error}")]
    ConnectDenied {
        /// The `error` parameter, e.g. `access_denied`.
        error: String,
    },
    /// The callback request lacked something it needs, e.g. the `code`.
    #[error("bad callback request: {0}")]
    BadCallback(String),
    /// The SDK was configured wrongly.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// A request could not be built. This is a bug in the SDK: please report it.
    #[error("internal error: {0}")]
    Internal(&'static str),
    /// Sealing, unsealing or storing a token failed.
    #[error("vault: {0}")]
    Vault(#[from] VaultError),
    /// The exchange succeeded but the token could not be stored. The new token was
    /// then revoked at Chart if `revoked`; if not, it stays live at Chart until it
    /// expires, and nothing here holds it.
    #[error("the token could not be stored (revoked at Chart: {revoked}): {source}")]
    NotStored {
        /// Whether `/disconnect` revoked the new token.
        revoked: bool,
        /// Why storing failed.
        source: Box<Error>,
    },
    /// The replay guard could not record the callback, so the code was not sent.
    #[error("replay guard: {0}")]
    ReplayGuard(StoreError),
}

impl Error {
    /// Whether trying again later can succeed without any change on our side
    /// (network trouble, rate limits, Chart outages). Note that a new attempt at an
    /// exchange needs a new code if the old one may be spent.
    ///
    /// ```
    /// # use chart_auth::Error;
    /// assert!(Error::Timeout.is_retryable());
    /// assert!(!Error::Internal("x").is_retryable());
    /// ```
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::RateLimited { .. }
            | Self::Connect { .. }
            | Self::Tls { .. }
            | Self::Timeout
            | Self::OutcomeUnknown { .. } => true,
            Self::Server { status, .. } => status.is_server_error(),
            _ => false,
        }
    }

    /// Whether the authorization code may have been spent by this failure, so that the
    /// user must go through Chart Connect again.
    pub fn code_may_be_spent(&self) -> bool {
        !matches!(
            self,
            Self::Connect { .. }
                | Self::Tls { .. }
                | Self::Timeout
                | Self::Config(_)
                | Self::Internal(_)
                | Self::ReplayGuard(_)
                | Self::InvalidConnectState(_)
                | Self::BadCallback(_)
        )
    }

    /// A sentence fit to show the end user. It never contains server text or secrets.
    ///
    /// ```
    /// # use chart_auth::{Error, ErrorDetail};
    /// let err = Error::InvalidGrant(ErrorDetail::default());
    /// assert_eq!(
    ///     err.user_message(),
    ///     "This connection link expired or was already used. Please connect your account again."
    /// );
    /// ```
    pub fn user_message(&self) -> &'static str {
        match self {
            Self::InvalidGrant(_) => {
                "This connection link expired or was already used. Please connect your account again."
            }
            Self::InvalidToken(_) => {
                "Your account connection is no longer active. Please connect your account again."
            }
            Self::InvalidClient(_)
            | Self::InvalidRequest(_)
            | Self::Config(_)
            | Self::Internal(_) => {
                "We could not connect your account because of a problem on our side. Please try again later."
            }
            Self::RateLimited { .. } => {
                "Chart is busy right now. Please wait a minute and connect your account again."
            }
            Self::Server { .. } | Self::Connect { .. } | Self::Tls { .. } | Self::Timeout => {
                "Chart is temporarily unavailable. Please try again in a few minutes."
            }
            Self::OutcomeUnknown { .. } => {
                "We could not confirm your connection. Please connect your account again."
            }
            Self::MalformedResponse { .. } | Self::ResponseTooLarge { .. } => {
                "Chart sent an unexpected answer. Please try again later."
            }
            Self::InvalidConnectState(ConnectStateError::Expired) => {
                "This connection attempt took too long. Please start again."
            }
            // Most often a refresh or the back button after the account connected.
            Self::InvalidConnectState(ConnectStateError::Replayed) => {
                "This connection was already completed. If your account is not listed as connected, please connect it again."
            }
            Self::InvalidConnectState(_) | Self::BadCallback(_) => {
                "This connection attempt is not valid. Please start again from our site."
            }
            Self::ConnectDenied { .. } => {
                "You cancelled the connection. You can connect your account at any time."
            }
            Self::Vault(VaultError::NotFound) => "This account is not connected.",
            Self::Vault(_) | Self::NotStored { .. } => {
                "We could not save your connection. Please connect your account again."
            }
            Self::ReplayGuard(_) => {
                "We could not complete your connection because of a problem on our side. Please try again."
            }
        }
    }

    /// A stable, machine-readable label for the error, e.g. `invalid_grant`, fit for an
    /// error page's query string or a JSON answer.
    ///
    /// ```
    /// # use chart_auth::{Error, ConnectStateError};
    /// assert_eq!(Error::InvalidConnectState(ConnectStateError::Expired).label(), "invalid_state");
    /// // A replay (a reload after success, most often) is not a forgery: its own label.
    /// assert_eq!(Error::InvalidConnectState(ConnectStateError::Replayed).label(), "already_used");
    /// ```
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidGrant(_) => "invalid_grant",
            Self::InvalidClient(_) => "invalid_client",
            Self::InvalidToken(_) => "invalid_token",
            Self::InvalidRequest(_) => "invalid_request",
            Self::RateLimited { .. } => "rate_limited",
            Self::Server { .. } => "chart_unavailable",
            Self::OutcomeUnknown { .. } => "outcome_unknown",
            Self::Connect { .. } => "connect_failed",
            Self::Tls { .. } => "tls_failed",
            Self::Timeout => "timeout",
            Self::MalformedResponse { .. } => "malformed_response",
            Self::ResponseTooLarge { .. } => "response_too_large",
            Self::InvalidConnectState(ConnectStateError::Replayed) => "already_used",
            Self::InvalidConnectState(_) => "invalid_state",
            Self::ConnectDenied { .. } => "access_denied",
            Self::BadCallback(_) => "bad_callback",
            Self::Config(_) => "config",
            Self::Internal(_) => "internal",
            Self::Vault(VaultError::NotFound) => "not_found",
            Self::Vault(_) => "vault",
            Self::NotStored { .. } => "not_stored",
            Self::ReplayGuard(_) => "replay_guard",
        }
    }

    /// The HTTP status a backend should answer its own frontend with for this error.
    pub fn http_status(&self) -> StatusCode {
        match self {
            // An account that is not this owner's, or not there at all.
            Self::Vault(VaultError::NotFound) => StatusCode::NOT_FOUND,
            Self::InvalidGrant(_)
            | Self::BadCallback(_)
            | Self::InvalidConnectState(ConnectStateError::Expired) => StatusCode::BAD_REQUEST,
            Self::InvalidConnectState(ConnectStateError::Replayed) => StatusCode::CONFLICT,
            Self::InvalidConnectState(_) => StatusCode::FORBIDDEN,
            Self::ConnectDenied { .. } => StatusCode::OK,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Timeout
            | Self::OutcomeUnknown {
                cause: UnknownCause::Timeout,
                ..
            } => StatusCode::GATEWAY_TIMEOUT,
            Self::Server { .. }
            | Self::OutcomeUnknown { .. }
            | Self::Connect { .. }
            | Self::Tls { .. }
            | Self::MalformedResponse { .. }
            | Self::ResponseTooLarge { .. }
            | Self::InvalidToken(_) => StatusCode::BAD_GATEWAY,
            Self::InvalidClient(_)
            | Self::InvalidRequest(_)
            | Self::Config(_)
            | Self::Internal(_)
            | Self::Vault(_)
            | Self::NotStored { .. } => StatusCode::INTERNAL_SERVER_ERROR,
            Self::ReplayGuard(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    /// What Chart said, when the error came from a Chart response.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        match self {
            Self::InvalidGrant(d)
            | Self::InvalidClient(d)
            | Self::InvalidToken(d)
            | Self::InvalidRequest(d) => Some(d),
            Self::RateLimited { detail, .. }
            | Self::Server { detail, .. }
            | Self::OutcomeUnknown { detail, .. }
            | Self::MalformedResponse { detail, .. }
            | Self::ResponseTooLarge { detail, .. } => Some(detail),
            _ => None,
        }
    }

    /// The HTTP status of Chart's answer, if one arrived.
    pub fn status(&self) -> Option<StatusCode> {
        self.detail().and_then(|d| d.status)
    }

    /// The `Chart-Request-Id` of Chart's answer, if one arrived.
    pub fn request_id(&self) -> Option<&str> {
        self.detail().and_then(|d| d.request_id.as_deref())
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Vault(VaultError::Store(e))
    }
}

/// Why a [`Config`](crate::Config) or a [`ConnectStateSigner`](crate::ConnectStateSigner)
/// was refused. No variant carries a secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required environment variable is missing or empty.
    #[error("{0} is not set")]
    MissingEnv(&'static str),
    /// The client id is empty.
    #[error("the client id is empty")]
    EmptyClientId,
    /// The client secret is empty.
    #[error("the client secret is empty")]
    EmptyClientSecret,
    /// A URL is unusable: not a URL, no host, or not `https://` (`http://` is allowed
    /// only on loopback hosts).
    #[error("the {what} URL {url:?} {problem}")]
    BadUrl {
        /// Which URL: `API base`, `Connect base` or `redirect`.
        what: &'static str,
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The `Chart-API-Version` is not a valid header value.
    #[error("the API version is not a valid header value")]
    BadApiVersion,
    /// The timeouts are out of order.
    #[error("timeouts must satisfy connect_timeout <= request_timeout <= deadline")]
    TimeoutOrder,
    /// `retry.max_attempts` is zero.
    #[error("retry.max_attempts must be at least 1")]
    NoAttempts,
    /// A root certificate could not be read or used.
    #[error("bad root certificate: {0}")]
    BadRootCertificate(String),
    /// Neither webpki roots nor extra roots are trusted.
    #[error("no trusted root certificates")]
    NoTrustedRoots,
    /// rustls refused the TLS settings.
    #[error("TLS setup failed: {0}")]
    Tls(#[from] rustls::Error),
    /// A shared Connect state key shorter than 32 bytes.
    #[error("the Connect state key must be at least 32 bytes")]
    StateKeyTooShort,
}

/// Every way sealing, unsealing, or managing keys and records can fail. No variant
/// ever carries key material or plaintext.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// The sealed blob is shorter than the format allows.
    #[error("sealed record is truncated ({0} bytes)")]
    Truncated(usize),
    /// The sealed blob has a format version this build does not know.
    #[error("sealed record has unknown format version {0}")]
    UnknownVersion(u8),
    /// The sealed blob names a key that is not in the keyring.
    #[error("sealed record uses key {0}, which is not in the keyring")]
    UnknownKey(KeyId),
    /// The sealed blob names a retired key.
    #[error("sealed record uses retired key {0}")]
    KeyRetired(KeyId),
    /// Authentication failed: the blob was changed or moved onto another record.
    #[error("sealed record failed authentication (tampered, or bound to another record)")]
    Tampered,
    /// The key has sealed as many records as its nonce budget allows; rotate.
    #[error("key {0} reached its nonce budget; add and promote a new key")]
    NonceBudgetExhausted(KeyId),
    /// The keyring text or key is malformed.
    #[error("bad keyring: {0}")]
    BadKeyring(String),
    /// A keyring change named a key that is not in the keyring.
    #[error("keyring: no key {0}")]
    NoSuchKey(KeyId),
    /// A keyring change would add a key id that is taken.
    #[error("keyring: key {0} already exists")]
    KeyExists(KeyId),
    /// A retired key cannot be promoted.
    #[error("keyring: key {0} is retired")]
    PromoteRetired(KeyId),
    /// The primary key cannot be retired.
    #[error("keyring: key {0} is primary; promote another first")]
    RetirePrimary(KeyId),
    /// No record for this account.
    #[error("no stored token for this account")]
    NotFound,
    /// A token of one OAuth client was stored in the vault of another.
    #[error("the token belongs to another OAuth client than the vault's")]
    WrongClient,
    /// Every 32-bit key id is taken.
    #[error("keyring: no key id is left")]
    KeyIdsExhausted,
    /// One record failed during an operation over many (e.g. a rewrap).
    #[error("record {account_id:?}: {source}")]
    InRecord {
        /// The record's account.
        account_id: String,
        /// What failed.
        source: Box<VaultError>,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The key source (an HSM, say) could not wrap or unwrap the keyring's data keys.
    #[error(transparent)]
    KeySource(#[from] KeySourceError),
}

/// Every way a [key source](crate::vault::KeySource) can fail. The messages name the
/// module, token and key labels, never a PIN or key bytes.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeySourceError {
    /// The PKCS#11 module could not be loaded or initialized.
    #[error("cannot load the PKCS#11 module {module}: {reason}")]
    ModuleNotLoaded {
        /// The module's path.
        module: PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// No token with this label is present in the module's slots.
    #[error("no token labelled {label:?} in the PKCS#11 module")]
    TokenNotFound {
        /// The token label looked for.
        label: String,
    },
    /// The PIN was not given: neither a PIN file nor the PIN variable.
    #[error("no PIN: set {0} or give a PIN file")]
    PinMissing(&'static str),
    /// The token refused the PIN.
    #[error("the token refused the PIN")]
    PinRefused,
    /// The token locked its user PIN after too many wrong tries.
    #[error("the token's user PIN is locked")]
    PinLocked,
    /// No key-encryption key with this label is in the token.
    #[error("no key-encryption key labelled {label:?} in the token")]
    KekMissing {
        /// The key label looked for.
        label: String,
    },
    /// The key-encryption key exists but cannot serve: it is extractable, ambiguous,
    /// not an AES key, or not allowed to wrap and unwrap.
    #[error("the key-encryption key {label:?} cannot be used: {reason}")]
    KekUnusable {
        /// The key label.
        label: String,
        /// Why.
        reason: &'static str,
    },
    /// The module offers neither AES key wrap with padding (RFC 5649) nor AES-GCM for
    /// this purpose, or not the one the keyring was written with.
    #[error("the PKCS#11 module does not offer {0} for wrapping keys")]
    MechanismUnsupported(&'static str),
    /// A wrapped data key did not unwrap: another KEK, another token, or a changed file.
    #[error(
        "data key {0} does not unwrap under this key-encryption key (another KEK or token, or the keyring file was changed)"
    )]
    UnwrapFailed(KeyId),
    /// The keyring was written by another kind of key source than the one given.
    #[error("the keyring's keys are {found}, but they were opened as {given}; {hint}")]
    Mismatch {
        /// How the keyring file says its keys are kept.
        found: String,
        /// The source it was opened with.
        given: String,
        /// What to do.
        hint: &'static str,
    },
    /// Any other refusal by the module, with the operation that failed.
    #[error("PKCS#11 {operation} failed: {reason}")]
    Module {
        /// What was being done.
        operation: &'static str,
        /// The module's return value.
        reason: String,
    },
}

/// Every way a token store can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record changed since it was read (compare-and-swap failed).
    #[error("the record changed meanwhile")]
    Conflict,
    /// A record could not be read or parsed; it is reported, never dropped.
    #[error("corrupt record {path}: {reason}")]
    Corrupt {
        /// The file (for a database: the table and the account).
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The store directory is not safe to keep tokens in.
    #[error("refusing the store directory {path}: {reason}")]
    UnsafeDirectory {
        /// The directory.
        path: PathBuf,
        /// Why, and how to fix it.
        reason: &'static str,
    },
    /// The database URL cannot be used as given (it is never echoed: it may hold a
    /// password).
    #[error("refusing the database URL: {reason}")]
    DatabaseUrl {
        /// Why, and how to fix it.
        reason: &'static str,
    },
    /// The database cannot be reached: no connection could be had in time.
    #[error("the token database is unavailable: {source}")]
    Unavailable {
        /// Why (the pool's or the driver's error; it never holds the database URL).
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A database query failed, e.g. the connection was lost mid-query.
    #[error("the token database failed to {op}: {source}")]
    Backend {
        /// What was being done.
        op: &'static str,
        /// The driver's error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An I/O operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}
