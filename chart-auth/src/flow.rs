//! The typed Connect flow: `Connection<CodeReceived>` → `Connection<Exchanged>` →
//! `Connection<Stored>`, and the signed `state` that starts it.
//!
//! Each step consumes the value before it, so exchanging twice, storing before
//! exchanging or reading a token from a stored connection does not compile. A
//! `Connection<CodeReceived>` can only be made by verifying a callback against a `state`
//! this SDK signed.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::client::ChartClient;
use crate::error::{Error, StateError};
use crate::secret::{AccessToken, AuthorizationCode};

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
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Redirect => "redirect",
            Self::Embedded => "embedded",
        }
    }
}

/// What [`ChartClient::begin_connect`] gives: the signed state and, for the Redirect
/// flow, the URL to send the browser to.
#[derive(Clone, Debug)]
pub struct ConnectStart {
    /// The signed `state`. It is not secret, but it is bound to the session.
    pub state: String,
    /// The Chart Connect URL, for the Redirect flow.
    pub connect_url: Option<String>,
    /// The flow this state is for.
    pub flow: FlowKind,
}

/// A tax provider, as named by Chart. Unknown names are kept, not refused.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProviderId {
    /// `turbotax`
    TurboTax,
    /// `hr` (H&R Block)
    HrBlock,
    /// `taxact`
    TaxAct,
    /// `tax_slayer`
    TaxSlayer,
    /// `jackson` (Jackson Hewitt)
    Jackson,
    /// `free_tax_usa`
    FreeTaxUsa,
    /// `irs`
    Irs,
    /// `irs_tax_pro`
    IrsTaxPro,
    /// `pilot`
    Pilot,
    /// `cch_axcess`
    CchAxcess,
    /// `drake`
    Drake,
    /// `proconnect`
    ProConnect,
    /// `chart-sandbox`
    ChartSandbox,
    /// A provider this SDK version does not know yet.
    Other(String),
}

const PROVIDERS: [(ProviderId, &str); 13] = [
    (ProviderId::TurboTax, "turbotax"),
    (ProviderId::HrBlock, "hr"),
    (ProviderId::TaxAct, "taxact"),
    (ProviderId::TaxSlayer, "tax_slayer"),
    (ProviderId::Jackson, "jackson"),
    (ProviderId::FreeTaxUsa, "free_tax_usa"),
    (ProviderId::Irs, "irs"),
    (ProviderId::IrsTaxPro, "irs_tax_pro"),
    (ProviderId::Pilot, "pilot"),
    (ProviderId::CchAxcess, "cch_axcess"),
    (ProviderId::Drake, "drake"),
    (ProviderId::ProConnect, "proconnect"),
    (ProviderId::ChartSandbox, "chart-sandbox"),
];

impl ProviderId {
    /// Chart's name for the provider.
    ///
    /// ```
    /// use chart_auth::ProviderId;
    /// assert_eq!(ProviderId::from("hr"), ProviderId::HrBlock);
    /// assert_eq!(ProviderId::from("new_one").as_str(), "new_one");
    /// ```
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(name) => name,
            known => PROVIDERS
                .iter()
                .find(|(p, _)| p == known)
                .map_or("", |(_, name)| name),
        }
    }

    /// Every provider this SDK version knows.
    pub fn known() -> impl Iterator<Item = ProviderId> {
        PROVIDERS.iter().map(|(p, _)| p.clone())
    }
}

impl From<&str> for ProviderId {
    fn from(name: &str) -> Self {
        PROVIDERS
            .iter()
            .find(|(_, n)| *n == name)
            .map_or_else(|| Self::Other(name.to_owned()), |(p, _)| p.clone())
    }
}

impl fmt::Display for ProviderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The unique id of one signed state, used to refuse replayed callbacks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StateId([u8; 16]);

/// A state that passed verification: its flow, id and expiry.
#[derive(Clone, Debug)]
pub struct VerifiedState {
    pub(crate) flow: Flow,
    pub(crate) id: StateId,
    pub(crate) expires_at: SystemTime,
}

type HmacSha256 = Hmac<Sha256>;

const STATE_VERSION: u8 = 1;
const SIG_LEN: usize = 32;
const TAG_LEN: usize = 16;
/// version, flow, expiry, id, session tag.
const HEADER_LEN: usize = 1 + 1 + 8 + 16 + TAG_LEN;
/// States longer than this are refused before decoding.
pub const MAX_STATE_LEN: usize = 4096;

/// Signs and verifies Connect `state` values with HMAC-SHA256.
///
/// A state carries the flow (and `redirect_uri`), an expiry, a unique id and a keyed
/// tag of the caller's session binding; the binding itself is never in the state.
///
/// ```
/// use chart_auth::{Flow, FlowKind, StateError, StateSigner};
/// let signer = StateSigner::generate();
/// let state = signer.issue(&Flow::Embedded, b"session-1");
/// assert!(signer.verify(&state, b"session-1", FlowKind::Embedded).is_ok());
/// assert_eq!(signer.verify(&state, b"session-2", FlowKind::Embedded).unwrap_err(),
///            StateError::SessionMismatch);
/// ```
pub struct StateSigner {
    key: Zeroizing<[u8; 32]>,
    ttl: Duration,
}

impl fmt::Debug for StateSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateSigner")
            .field("key", &"<redacted>")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl StateSigner {
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
    pub fn from_key(key: &[u8]) -> Result<Self, Error> {
        if key.len() < 32 {
            return Err(Error::Config(
                "the state key must be at least 32 bytes".into(),
            ));
        }
        let mut derived = Zeroizing::new([0u8; 32]);
        let mut mac =
            HmacSha256::new_from_slice(key).map_err(|_| Error::Config("bad state key".into()))?;
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

    fn session_tag(&self, session: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.mac(b"chart-auth/session/v1\0");
        mac.update(session);
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&mac.finalize().into_bytes()[..TAG_LEN]);
        tag
    }

    /// Issues a state for `flow`, bound to `session`, valid for the signer's TTL.
    pub fn issue(&self, flow: &Flow, session: &[u8]) -> String {
        self.issue_at(flow, session, SystemTime::now())
    }

    /// Like [`StateSigner::issue`], at a given time (for tests and custom clocks).
    pub fn issue_at(&self, flow: &Flow, session: &[u8], now: SystemTime) -> String {
        let expires = now.duration_since(UNIX_EPOCH).unwrap_or_default() + self.ttl;
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).expect("the OS random number generator failed");
        let uri = flow.redirect_uri().unwrap_or("").as_bytes();
        let mut payload = Vec::with_capacity(HEADER_LEN + uri.len() + SIG_LEN);
        payload.push(STATE_VERSION);
        payload.push(match flow.kind() {
            FlowKind::Embedded => 0,
            FlowKind::Redirect => 1,
        });
        payload.extend_from_slice(&expires.as_secs().to_be_bytes());
        payload.extend_from_slice(&id);
        payload.extend_from_slice(&self.session_tag(session));
        payload.extend_from_slice(uri);
        let mut mac = self.mac(b"chart-auth/state/v1\0");
        mac.update(&payload);
        payload.extend_from_slice(&mac.finalize().into_bytes());
        URL_SAFE_NO_PAD.encode(payload)
    }

    /// Verifies a state from a callback that arrived `via` a channel, for `session`.
    pub fn verify(
        &self,
        state: &str,
        session: &[u8],
        via: FlowKind,
    ) -> Result<VerifiedState, StateError> {
        self.verify_at(state, session, via, SystemTime::now())
    }

    /// Like [`StateSigner::verify`], at a given time (for tests and custom clocks).
    pub fn verify_at(
        &self,
        state: &str,
        session: &[u8],
        via: FlowKind,
        now: SystemTime,
    ) -> Result<VerifiedState, StateError> {
        if state.len() > MAX_STATE_LEN {
            return Err(StateError::Forged);
        }
        let raw = URL_SAFE_NO_PAD
            .decode(state)
            .map_err(|_| StateError::Forged)?;
        if raw.len() < HEADER_LEN + SIG_LEN {
            return Err(StateError::Forged);
        }
        let (payload, sig) = raw.split_at(raw.len() - SIG_LEN);
        let mut mac = self.mac(b"chart-auth/state/v1\0");
        mac.update(payload);
        mac.verify_slice(sig).map_err(|_| StateError::Forged)?;
        // Signed by us from here on, so the layout is trusted.
        if payload[0] != STATE_VERSION {
            return Err(StateError::Forged);
        }
        let tag = &payload[26..HEADER_LEN];
        if !bool::from(tag.ct_eq(&self.session_tag(session))) {
            return Err(StateError::SessionMismatch);
        }
        let mut exp = [0u8; 8];
        exp.copy_from_slice(&payload[2..10]);
        let expires_at = UNIX_EPOCH + Duration::from_secs(u64::from_be_bytes(exp));
        if now >= expires_at {
            return Err(StateError::Expired);
        }
        let flow = match payload[1] {
            0 => Flow::Embedded,
            1 => Flow::Redirect {
                redirect_uri: String::from_utf8(payload[HEADER_LEN..].to_vec())
                    .map_err(|_| StateError::Forged)?,
            },
            _ => return Err(StateError::Forged),
        };
        if flow.kind() != via {
            return Err(StateError::FlowMismatch);
        }
        let mut id = [0u8; 16];
        id.copy_from_slice(&payload[10..26]);
        Ok(VerifiedState {
            flow,
            id: StateId(id),
            expires_at,
        })
    }
}

impl VerifiedState {
    /// The flow the state was issued for.
    pub fn flow(&self) -> &Flow {
        &self.flow
    }

    /// The state's unique id.
    pub fn id(&self) -> StateId {
        self.id
    }

    /// When the state stops being valid.
    pub fn expires_at(&self) -> SystemTime {
        self.expires_at
    }
}

/// One account connection moving through the flow. `S` is its state:
/// [`CodeReceived`], [`Exchanged`] or [`Stored`].
#[derive(Debug)]
pub struct Connection<S> {
    state: S,
}

/// A verified code, ready to be exchanged once.
#[derive(Debug)]
pub struct CodeReceived {
    code: AuthorizationCode,
    verified: VerifiedState,
}

/// An exchanged code: the account and its live access token.
#[derive(Debug)]
pub struct Exchanged {
    client_id: String,
    account_id: String,
    provider_id: ProviderId,
    token: AccessToken,
}

/// A connection whose token is sealed in the vault. It holds no plaintext token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    pub(crate) account_id: String,
    pub(crate) provider_id: ProviderId,
    pub(crate) key_id: crate::vault::KeyId,
    pub(crate) stored_at: SystemTime,
}

/// A connection waiting to be exchanged.
pub type PendingConnection = Connection<CodeReceived>;
/// A connection holding a live access token.
pub type ExchangedConnection = Connection<Exchanged>;
/// A connection whose token is sealed in the vault.
pub type StoredConnection = Connection<Stored>;

impl Connection<CodeReceived> {
    pub(crate) fn received(code: AuthorizationCode, verified: VerifiedState) -> Self {
        Self {
            state: CodeReceived { code, verified },
        }
    }

    /// The flow the code came from.
    pub fn flow(&self) -> &Flow {
        &self.state.verified.flow
    }

    /// The id of the state this code arrived with (for replay protection).
    pub fn state_id(&self) -> StateId {
        self.state.verified.id
    }

    /// When the state this code arrived with expires.
    pub fn state_expires_at(&self) -> SystemTime {
        self.state.verified.expires_at
    }

    /// Exchanges the code for an access token at `POST /auth/token`.
    ///
    /// The code is consumed whatever happens: it is single use.
    pub async fn exchange(self, client: &ChartClient) -> Result<Connection<Exchanged>, Error> {
        let flow = self.state.verified.flow.kind();
        let span = tracing::info_span!(
            "chart.exchange",
            flow = flow.as_str(),
            provider = tracing::field::Empty,
            status = tracing::field::Empty,
            attempt = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        let started = std::time::Instant::now();
        let result = client
            .exchange_code(&self.state.code, self.state.verified.flow.redirect_uri())
            .instrument(span.clone())
            .await;
        span.record("duration_ms", started.elapsed().as_millis() as u64);
        match result {
            Ok(token) => {
                span.record("provider", token.provider_id.as_str());
                span.in_scope(|| tracing::info!("code exchanged"));
                Ok(Connection {
                    state: Exchanged {
                        client_id: client.config().client_id().to_owned(),
                        account_id: token.account_id,
                        provider_id: token.provider_id,
                        token: token.access_token,
                    },
                })
            }
            Err(err) => {
                span.in_scope(|| tracing::warn!(error = %err, "exchange failed"));
                Err(err)
            }
        }
    }
}

impl Connection<Exchanged> {
    /// The connected account.
    pub fn account_id(&self) -> &str {
        &self.state.account_id
    }

    /// The tax provider.
    pub fn provider_id(&self) -> &ProviderId {
        &self.state.provider_id
    }

    /// The access token, for calls made before it is stored.
    pub fn access_token(&self) -> &AccessToken {
        &self.state.token
    }

    pub(crate) fn into_parts(self) -> (String, String, ProviderId, AccessToken) {
        let Exchanged {
            client_id,
            account_id,
            provider_id,
            token,
        } = self.state;
        (client_id, account_id, provider_id, token)
    }
}

impl Connection<Stored> {
    pub(crate) fn stored(state: Stored) -> Self {
        Self { state }
    }

    /// The connected account.
    pub fn account_id(&self) -> &str {
        &self.state.account_id
    }

    /// The tax provider.
    pub fn provider_id(&self) -> &ProviderId {
        &self.state.provider_id
    }

    /// The id of the vault key that sealed the token.
    pub fn key_id(&self) -> crate::vault::KeyId {
        self.state.key_id
    }

    /// When the token was stored.
    pub fn stored_at(&self) -> SystemTime {
        self.state.stored_at
    }
}
