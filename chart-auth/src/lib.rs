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
