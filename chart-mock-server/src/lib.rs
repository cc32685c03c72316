//! # chart-mock-server
//!
//! A faithful mock of Chart's token API for tests and for frontend teams: single-use
//! codes that expire on the mock's clock, every error of `POST /auth/token`,
//! `/introspect`, `/disconnect`, a Connect page for both flows, a control plane under
//! `/__chart/`, TLS with a generated CA, and fault injection.
//!
//! In-process, on a random loopback port, shut down on drop:
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use chart_mock_server::{MintRequest, MockConfig, MockServer, SANDBOX_CLIENT_ID};
//! let mock = MockServer::start(MockConfig::default()).await?;
//! let minted = mock.mint_code(&MintRequest { client_id: SANDBOX_CLIENT_ID.into(), ..Default::default() })?;
//! assert!(mock.url().starts_with("http://127.0.0.1:"));
//! assert_eq!(minted.expires_in, 600);
//! # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
//! ```
//!
//! # Layers
//!
//! Each module imports only from the ones before it: `config`, `report` (the
//! conformance checks over what the mock saw), `model` (codes, tokens, clock, faults,
//! journal; inside it `maps`, `fault` and `journal`), `tls`, `response` and `request`
//! (helpers), then the handlers `api`
//! (Chart's endpoints), `connect` (the Connect page) and `control` (the control plane
//! and its OpenAPI document), then `dispatch` (faults, routing, journal),
//! `connections` (caps and timeouts) and `server`.
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations, unreachable_pub)]

mod config;

mod report;

mod model;

mod tls;

mod response;

mod request;

mod api;

mod connect;

mod control;

mod dispatch;

mod connections;

mod server;

pub use config::{
    ClientConfig, ConfigError, MockConfig, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET,
    SANDBOX_REDIRECT_URIS,
};
pub use control::OPENAPI;
pub use model::{
    Chart, Fault, FaultKind, GrantOutcome, JOURNAL_FIELD_MAX, JOURNAL_MAX_BYTES, JournalEntry,
    MAX_ADVANCE_SECS, MAX_METADATA_LEN, MAX_RETRY_AFTER_SECS, MintError, MintRequest, MintedCode,
    PROVIDERS, Scenario, TokenInfo,
};
pub use report::{Check, CheckResult, ClientReport, Report, Verdict};
pub use request::{API_VERSION, HEADER_READ_TIMEOUT, MAX_BODY, REQUEST_LINES_PER_SEC};
pub use response::error_name;
pub use server::{MockServer, StartError};
pub use tls::CA_VALIDITY_DAYS;

/// Entry points for the fuzz targets in `fuzz/`; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use std::sync::Arc;

    use bytes::Bytes;
    use http::StatusCode;

    use crate::model::Chart;
    use crate::request::{Ctx, Note};
    use crate::response::MockBody;

    /// Runs a `POST /auth/token` body through the mock; gives the status and body.
    pub async fn auth_token(chart: Arc<Chart>, body: &[u8]) -> (StatusCode, Bytes) {
        let ctx = Ctx {
            chart,
            admin_token: None,
            served: Default::default(),
            log: Default::default(),
        };
        let resp = crate::api::token_grant(&ctx, body, &mut Note::default()).await;
        let status = resp.status();
        let body = match resp.into_body() {
            MockBody::Full(b) => b.unwrap_or_default(),
            MockBody::Broken { .. } => Bytes::new(),
        };
        (status, body)
    }

    /// Parses a Connect form (or query) and checks it against the mock's clients.
    pub fn connect_form(chart: Arc<Chart>, pairs: &[u8]) -> Result<(), String> {
        crate::connect::check_form(
            &Ctx {
                chart,
                admin_token: None,
                served: Default::default(),
                log: Default::default(),
            },
            pairs,
        )
    }
}
