//! # chart-auth
//!
//! Turn the authorization code from Chart Connect into an access token, and keep that
//! token as safe as a password.
//!
//! The flow is a typestate: each step consumes the one before it, so misuse does not
//! compile.
//!
//! ```text
//! Connection<CodeReceived> --exchange(&client)--> Connection<Exchanged> --store(&vault)--> Connection<Stored>
//! ```
//!
//! The whole flow, against the mock Chart server over TLS:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use chart_auth::vault::{Keyring, MemoryStore, Vault};
//! use chart_auth::{AuthorizationCode, ChartClient, ClientSecret, Config, Flow, FlowKind};
//! use chart_mock_server::{MintRequest, MockConfig, MockServer};
//!
//! let chart = MockServer::start(MockConfig { tls: true, ..MockConfig::default() }).await?;
//! let client = ChartClient::new(
//!     Config::builder("chart-sandbox-client", ClientSecret::new("chart-sandbox-secret"))
//!         .api_base(chart.url())
//!         .add_root_certificates_pem(chart.ca_pem().unwrap().as_bytes())
//!         .build()?,
//! )?;
//! let vault = Vault::new(Keyring::generate(), MemoryStore::default());
//!
//! // 1. The user starts Chart Connect: sign a state bound to their session.
//! let redirect_uri = "http://localhost:3000/api/chart/callback".to_string();
//! let start = client.begin_connect(Flow::Redirect { redirect_uri: redirect_uri.clone() }, b"session-1")?;
//!
//! // 2. Chart Connect redirects back with a code (here the mock mints one).
//! let code = chart.mint_code(&MintRequest {
//!     client_id: "chart-sandbox-client".into(),
//!     redirect_uri: Some(redirect_uri),
//!     ..MintRequest::default()
//! })?.code;
//!
//! // 3. The callback verifies the state, exchanges the code once, and seals the token.
//! let pending = client.receive_code(AuthorizationCode::new(code), &start.state, b"session-1", FlowKind::Redirect)?;
//! let stored = pending.exchange(&client).await?.store(&vault).await?;
//!
//! // 4. Later calls open the token from the vault.
//! let who = client.introspect(&vault, stored.account_id()).await?;
//! assert_eq!(who.taxpayer_id, stored.account_id());
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! Modules, in the order a code travels: [`CallbackService`] (the endpoint), the flow
//! types ([`Connection`]), [`ChartClient`] (transport and retries), and [`vault`].
#![forbid(unsafe_code)]

mod callback;
mod client;
mod error;
mod flow;
mod secret;
mod store;
pub mod vault;

pub use callback::{CallbackBuilder, CallbackService, MAX_CALLBACK_BODY, MAX_REMEMBERED_STATES};
pub use client::{
    ChartClient, Config, ConfigBuilder, DEFAULT_API_BASE, DEFAULT_API_VERSION,
    DEFAULT_CONNECT_BASE, Introspection, RetryPolicy, TokenResponse,
};
pub use error::{Error, ErrorDetail, StateError, UnknownCause};
pub use flow::{
    CodeReceived, ConnectStart, Connection, Exchanged, ExchangedConnection, Flow, FlowKind,
    MAX_STATE_LEN, PendingConnection, ProviderId, StateId, StateSigner, Stored, StoredConnection,
    VerifiedState,
};
pub use secret::{AccessToken, AuthorizationCode, ClientSecret};
