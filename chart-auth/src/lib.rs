//! # chart-auth
//!
//! Turn the authorization code from Chart Connect into an access token, and keep that
//! token as safe as a password.
//!
//! The flow is a typestate: each stage consumes the one before it, so misuse does not
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
//! use std::sync::Arc;
//! use chart_auth::vault::{Keyring, MemoryStore, Vault};
//! use chart_auth::{
//!     AuthorizationCode, ChartClient, ChartConnect, ClientSecret, Config, ConnectStateSigner, Flow,
//!     FlowKind, Owner,
//! };
//! use chart_mock_server::{MintRequest, MockConfig, MockServer};
//!
//! let mock = MockServer::start(MockConfig { tls: true, ..MockConfig::default() }).await?;
//! let client = ChartClient::new(
//!     Config::builder("chart-sandbox-client", ClientSecret::new("chart-sandbox-secret"))
//!         .api_base(mock.url())
//!         .add_root_certificates_pem(mock.ca_pem().unwrap().as_bytes())
//!         .build()?,
//! )?;
//! let vault = Arc::new(Vault::new("chart-sandbox-client", Keyring::generate(), MemoryStore::default()));
//! let chart = ChartConnect::new(client, ConnectStateSigner::generate(), vault);
//!
//! // 1. A signed-in user starts Chart Connect: sign a Connect state bound to their session
//! //    and to them, the owner of the account it will connect (your user or tenant id).
//! let alice = Owner::new("user-alice")?;
//! let redirect_uri = "http://localhost:3000/api/chart/callback".to_string();
//! let flow = Flow::Redirect { redirect_uri: redirect_uri.clone() };
//! let start = chart.begin_connect(flow, b"session-1", &alice)?;
//!
//! // 2. Chart Connect redirects back with a code (here the mock mints one).
//! let code = mock.mint_code(&MintRequest {
//!     client_id: "chart-sandbox-client".into(),
//!     redirect_uri: Some(redirect_uri),
//!     ..MintRequest::default()
//! })?.code;
//!
//! // 3. The callback verifies the state (for this session and owner), exchanges the code
//! //    once, and seals the token as Alice's.
//! let code_of = |code: &str| AuthorizationCode::new(code);
//! let received = chart.receive_code(code_of(&code), &start.state, b"session-1", &alice, FlowKind::Redirect)?;
//! let stored = received.exchange(chart.client()).await?.store(chart.vault()).await?;
//! assert_eq!(stored.owner(), &alice);
//!
//! // A reload of the callback verifies again, but its exchange is refused before anything
//! // is sent: the state was claimed (Chart would revoke the token if the code came back).
//! let reload = chart.receive_code(code_of(&code), &start.state, b"session-1", &alice, FlowKind::Redirect)?;
//! let refused = chart.complete(reload).await.unwrap_err();
//! assert_eq!((refused.label(), refused.http_status().as_u16()), ("already_used", 409));
//!
//! // 4. Later calls unseal Alice's token from the vault; for anyone else it is not there.
//! let who = chart.introspect(&alice, stored.account_id()).await?;
//! assert_eq!(who.taxpayer_id, stored.account_id());
//! let bob = Owner::new("user-bob")?;
//! assert!(chart.introspect(&bob, stored.account_id()).await.is_err());
//! assert!(chart.accounts(&bob).await?.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! # Layers
//!
//! Each module imports only from the modules above it in this list (see
//! `docs/ARCHITECTURE.md` for the picture):
//!
//! 1. `secret`: zeroizing secret types.
//! 2. `ids`: the identifiers every layer shares ([`ProviderId`], [`KeyId`](vault::KeyId),
//!    [`Owner`]).
//! 3. `error`: every error type of the crate.
//! 4. [`vault`]: sealed tokens at rest, knowing nothing of HTTP or of the flow;
//!    inside it `store` (memory, file, postgres; records keyed by owner and account),
//!    then `seal` (formats v1 and v2, AAD), then `key_source`
//!    (plaintext, or wrapped by a KEK in an HSM), then `keyring`, then
//!    [`Vault`](vault::Vault).
//! 5. `wire`: Chart's request, response and error bodies; scrubbing.
//! 6. `config`: [`Config`] and its builder.
//! 7. `transport`: hyper + rustls, the retry loop, classification.
//! 8. `client`: [`ChartClient`], the three API calls.
//! 9. `connect_state`: the signed Connect state ([`ConnectStateSigner`]).
//! 10. `replay`: [`ReplayGuard`], claiming each Connect state once across instances.
//! 11. `flow`: the typestate [`Connection`] and [`ChartConnect`], which joins client,
//!     signer, vault and replay guard; every exchange claims its state first.
//! 12. `callback`: [`CallbackService`], the endpoint.
//!
//! Words: *Connect state* is the signed OAuth `state`; a *stage* is a step of the
//! typestate; to *seal* and *unseal* is to encrypt and decrypt a token; a *label* is an
//! error's machine-readable name; *code* always means the authorization code.
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

// The layers, bottom up; each imports only from the ones before it.
mod secret;

mod ids;

mod error;

pub mod vault;

mod wire;

mod config;

mod transport;

mod client;

mod connect_state;

mod replay;

mod flow;

mod callback;

pub use callback::{CallbackBuilder, CallbackService, MAX_CALLBACK_BODY, Session};
pub use client::ChartClient;
pub use config::{
    Config, ConfigBuilder, DEFAULT_API_BASE, DEFAULT_API_VERSION, DEFAULT_CONNECT_BASE, RetryPolicy,
};
pub use connect_state::{
    ConnectStateId, ConnectStateSigner, Flow, FlowKind, MAX_CONNECT_STATE_LEN, VerifiedConnectState,
};
pub use error::{
    ConfigError, ConnectStateError, Error, ErrorDetail, KeySourceError, StoreError, UnknownCause,
    VaultError,
};
pub use flow::{
    ChartConnect, CodeReceived, ConnectStart, Connection, Exchanged, MAX_CODE_LEN, Replaced, Stage,
    Stored,
};
pub use ids::{Owner, OwnerError, ProviderId};
#[cfg(feature = "postgres")]
pub use replay::{CLOCK_SKEW_MARGIN, PostgresReplayGuard};
pub use replay::{Claim, GuardFuture, MAX_CLAIMS, MemoryReplayGuard, ReplayGuard, SESSION_QUOTA};
pub use secret::{AccessToken, AuthorizationCode, ClientSecret};
pub use wire::Introspection;

/// Entry points for fuzz targets and tests: parsers of untrusted input that the flow
/// otherwise reaches only over the network. Not part of the stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::vault::seal::{decrypt_detached, encrypt_detached};
    pub use crate::wire::{TokenResponse, error_from_response};

    /// Decodes a record file's bytes as [`FileStore`](crate::vault::FileStore) does.
    pub fn decode_record(bytes: &[u8]) -> Result<crate::vault::StoredRecord, crate::StoreError> {
        crate::vault::store::parse_record(bytes, std::path::Path::new("<fuzz input>"))
    }
}

/// The README's Rust blocks, compiled as doctests (with `--all-features`, as the
/// README's test command runs them: blocks use `PostgresStore` and `Pkcs11Config`).
#[cfg(all(doctest, feature = "postgres", feature = "pkcs11"))]
#[doc = include_str!("../../README.md")]
mod readme {}
