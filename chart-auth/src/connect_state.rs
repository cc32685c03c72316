//! The signed Connect state: the OAuth `state` parameter this SDK issues when a
//! Connect session begins and verifies when the callback arrives.
//!
//! A Connect state carries the flow (and its `redirect_uri`), an expiry, a unique id
//! and a keyed tag of the caller's session binding and owner. It is HMAC-SHA256
//! signed, so a callback this application did not start for this session and owner
//! (login CSRF, or an account planted on another user), a stale one or one meant for
//! the other flow is refused before any code is sent to Chart. It
//! does not make a stolen code useless: see the callback's docs.
//!
//! ```text
//! version(1) ‖ flow(1) ‖ expiry(8, big endian) ‖ id(16) ‖ session tag(16) ‖ redirect_uri ‖ HMAC(32)
//! ```
//!
//! The session tag is a truncated HMAC of the session binding and the owner,
//! length-prefixed so that no two pairs give the same bytes.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::error::{ConfigError, ConnectStateError};
use crate::ids::Owner;

/// Which Connect flow a code came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Chart Connect ran in an iframe and posted the code to the page. The exchange
    /// sends no `redirect_uri`.
    Embedded,
    /// Chart Connect redirected the browser to `redirect_uri`; the exchange sends it.
    Redirect {
        /// The whitelisted callback URL.
        redirect_uri: String,
    },
}

impl Flow {
    /// The flow's kind, without its data.
    pub fn kind(&self) -> FlowKind {
        match self {
            Self::Embedded => FlowKind::Embedded,
            Self::Redirect { .. } => FlowKind::Redirect,
        }
    }

    /// The `redirect_uri` the exchange must send, if any.
    pub fn redirect_uri(&self) -> Option<&str> {
        match self {
            Self::Embedded => None,
            Self::Redirect { redirect_uri } => Some(redirect_uri),
        }
    }
}

/// The channel a callback arrived on: a browser redirect, or a post from the frontend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowKind {
    /// `GET /api/chart/callback?code=..&state=..` from Chart Connect's redirect.
    Redirect,
    /// `{code, state}` posted by the frontend from Chart Connect's `onSuccess`.
    Embedded,
}

impl FlowKind {
    /// `"redirect"` or `"embedded"`.
    ///
    /// ```
    /// use chart_auth::FlowKind;
    /// assert_eq!((FlowKind::Redirect.as_str(), FlowKind::Embedded.as_str()), ("redirect", "embedded"));
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redirect => "redirect",
            Self::Embedded => "embedded",
        }
    }
}

/// The unique id of one Connect state, used to refuse replayed callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnectStateId(pub(crate) [u8; ID_LEN]);

impl ConnectStateId {
    /// The id's bytes (random, not secret).
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

/// A state that passed verification: its flow, id and expiry.
#[derive(Clone, Debug)]
pub struct VerifiedConnectState {
    pub(crate) flow: Flow,
    pub(crate) id: ConnectStateId,
    pub(crate) expires_at: SystemTime,
}

type HmacSha256 = Hmac<Sha256>;

const STATE_VERSION: u8 = 1;
const SIG_LEN: usize = 32;
const TAG_LEN: usize = 16;

const ID_LEN: usize = 16;
// Where each field of the signed payload starts (see the module docs).
const FLOW_AT: usize = 1;
const EXPIRY_AT: usize = FLOW_AT + 1;
const ID_AT: usize = EXPIRY_AT + 8;
const TAG_AT: usize = ID_AT + ID_LEN;
/// version, flow, expiry, id, session tag; the `redirect_uri` follows.
const HEADER_LEN: usize = TAG_AT + TAG_LEN;
const FLOW_EMBEDDED: u8 = 0;
const FLOW_REDIRECT: u8 = 1;
/// States longer than this are refused before decoding.
pub const MAX_CONNECT_STATE_LEN: usize = 4096;

/// Signs and verifies Connect `state` values with HMAC-SHA256.
///
/// A state carries the flow (and `redirect_uri`), an expiry, a unique id and a keyed
/// tag of the caller's session binding and owner; neither is in the state itself.
///
/// ```
/// use chart_auth::{ConnectStateError, ConnectStateSigner, Flow, FlowKind, Owner};
/// let signer = ConnectStateSigner::generate();
/// let (alice, bob) = (Owner::new("alice")?, Owner::new("bob")?);
/// let state = signer.issue(&Flow::Embedded, b"session-1", &alice);
/// assert!(signer.verify(&state, b"session-1", &alice, FlowKind::Embedded).is_ok());
/// assert_eq!(signer.verify(&state, b"session-2", &alice, FlowKind::Embedded).unwrap_err(),
///            ConnectStateError::SessionMismatch);
/// assert_eq!(signer.verify(&state, b"session-1", &bob, FlowKind::Embedded).unwrap_err(),
///            ConnectStateError::SessionMismatch);
/// # Ok::<(), chart_auth::OwnerError>(())
/// ```
pub struct ConnectStateSigner {
    key: Zeroizing<[u8; 32]>,
    ttl: Duration,
}

impl fmt::Debug for ConnectStateSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectStateSigner")
            .field("key", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl ConnectStateSigner {
    /// The default lifetime of a state: 15 minutes, enough to finish Chart Connect.
    pub const DEFAULT_TTL: Duration = Duration::from_secs(15 * 60);

    /// A signer with a fresh random key, good for one process.
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        getrandom::fill(key.as_mut()).expect("the OS random number generator failed");
        Self {
            key,
            ttl: Self::DEFAULT_TTL,
        }
    }

    /// A signer with a shared key (at least 32 bytes), for several instances.
    pub fn from_key(key: &[u8]) -> Result<Self, ConfigError> {
        if key.len() < 32 {
            return Err(ConfigError::StateKeyTooShort);
        }
        let mut derived = Zeroizing::new([0u8; 32]);
        let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
        mac.update(b"chart-auth/state-key/v1");
        derived.copy_from_slice(&mac.finalize().into_bytes());
        Ok(Self {
            key: derived,
            ttl: Self::DEFAULT_TTL,
        })
    }

    /// Sets how long issued states stay valid.
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    fn mac(&self, domain: &[u8]) -> HmacSha256 {
        let mut mac =
            HmacSha256::new_from_slice(self.key.as_ref()).expect("HMAC takes any key length");
        mac.update(domain);
        mac
    }

    fn session_tag(&self, session: &[u8], owner: &Owner) -> [u8; TAG_LEN] {
        let mut mac = self.mac(b"chart-auth/session/v2\0");
        mac.update(&(session.len() as u64).to_be_bytes());
        mac.update(session);
        mac.update(owner.as_bytes());
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&mac.finalize().into_bytes()[..TAG_LEN]);
        tag
    }

    /// Issues a state for `flow`, bound to `session` and `owner`, valid for the
    /// signer's TTL.
    pub fn issue(&self, flow: &Flow, session: &[u8], owner: &Owner) -> String {
        self.issue_at(flow, session, owner, SystemTime::now())
    }

    /// Like [`ConnectStateSigner::issue`], at a given time (for tests and custom clocks).
    pub fn issue_at(&self, flow: &Flow, session: &[u8], owner: &Owner, now: SystemTime) -> String {
        let expires = now
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(self.ttl);
        let mut id = [0u8; ID_LEN];
        getrandom::fill(&mut id).expect("the OS random number generator failed");
        let uri = flow.redirect_uri().unwrap_or("").as_bytes();
        let mut payload = Vec::with_capacity(HEADER_LEN + uri.len() + SIG_LEN);
        payload.push(STATE_VERSION);
        payload.push(match flow.kind() {
            FlowKind::Embedded => FLOW_EMBEDDED,
            FlowKind::Redirect => FLOW_REDIRECT,
        });
        payload.extend_from_slice(&expires.as_secs().to_be_bytes());
        payload.extend_from_slice(&id);
        payload.extend_from_slice(&self.session_tag(session, owner));
        payload.extend_from_slice(uri);
        let mut mac = self.mac(b"chart-auth/state/v1\0");
        mac.update(&payload);
        payload.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// Verifies a state from a callback that arrived `via` a channel, for `session` and
    /// `owner`.
    pub fn verify(
        &self,
        state: &str,
        session: &[u8],
        owner: &Owner,
        via: FlowKind,
    ) -> Result<VerifiedConnectState, ConnectStateError> {
        self.verify_at(state, session, owner, via, SystemTime::now())
    }

    /// Like [`ConnectStateSigner::verify`], at a given time (for tests and custom clocks).
    pub fn verify_at(
        &self,
        state: &str,
        session: &[u8],
        owner: &Owner,
        via: FlowKind,
        now: SystemTime,
    ) -> Result<VerifiedConnectState, ConnectStateError> {
        if state.len() > MAX_CONNECT_STATE_LEN {
            return Err(ConnectStateError::Forged);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(state)
            .map_err(|_| ConnectStateError::Forged)?;
        if raw.len() < HEADER_LEN + SIG_LEN {
            return Err(ConnectStateError::Forged);
        }
        let (payload, sig) = raw.split_at(raw.len() - SIG_LEN);
        let mut mac = self.mac(b"chart-auth/state/v1\0");
        mac.update(payload);
        mac.verify_slice(sig)
            .map_err(|_| ConnectStateError::Forged)?;
        // Signed by us from here on, so the layout is trusted.
        if payload[0] != STATE_VERSION {
            return Err(ConnectStateError::Forged);
        }
        let tag = &payload[TAG_AT..HEADER_LEN];
        if !bool::from(tag.ct_eq(&self.session_tag(session, owner))) {
            return Err(ConnectStateError::SessionMismatch);
        }
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&payload[EXPIRY_AT..ID_AT]);
        let expires_at = UNIX_EPOCH
            .checked_add(Duration::from_secs(u64::from_be_bytes(exp)))
            .ok_or(ConnectStateError::Forged)?;
        if now >= expires_at {
            return Err(ConnectStateError::Expired);
        }
        let flow = match payload[FLOW_AT] {
            FLOW_EMBEDDED => Flow::Embedded,
            FLOW_REDIRECT => Flow::Redirect {
                redirect_uri: String::from_utf8(payload[HEADER_LEN..].to_vec())
                    .map_err(|_| ConnectStateError::Forged)?,
            },
            _ => return Err(ConnectStateError::Forged),
        };
        if flow.kind() != via {
            return Err(ConnectStateError::FlowMismatch);
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&payload[ID_AT..TAG_AT]);
        Ok(VerifiedConnectState {
            flow,
            id: ConnectStateId(id),
            expires_at,
        })
    }
}

impl VerifiedConnectState {
    /// The flow the state was issued for.
    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// The state's unique id.
    pub fn id(&self) -> ConnectStateId {
        self.id
    }

    /// When the state stops being valid.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}
