//! [`ChartClient`]: the three Chart API calls (`/auth/token`, `/introspect`,
//! `/disconnect`) over the transport.

use std::fmt;
use std::sync::Arc;

use http::{Method, StatusCode, Uri};
use tracing::Instrument;

use crate::config::Config;
use crate::error::{ConfigError, Error};
use crate::secret::{AccessToken, AuthorizationCode};
use crate::transport::{Answer, Transport};
use crate::wire::{self, ClassifyName, Introspection, TokenResponse};

/// A client for Chart's API. Cheap to clone: clones share one connection pool.
///
/// ```no_run
/// # async fn run() -> Result<(), chart_auth::Error> {
/// let client = chart_auth::ChartClient::new(chart_auth::Config::from_env()?)?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ChartClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    transport: Transport,
    /// Built once, for every request.
    token_uri: Uri,
    introspect_uri: Uri,
    disconnect_uri: Uri,
}

impl fmt::Debug for ChartClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChartClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl ChartClient {
    /// Builds the client and its connection pool. The TLS configuration is built once
    /// here and shared by every request.
    pub fn new(config: Config) -> Result<Self, Error> {
        let transport = Transport::new(&config)?;
        let uri = |path: &str| {
            format!("{}{path}", config.api_base)
                .parse::<Uri>()
                .map_err(|_| ConfigError::BadUrl {
                    what: "API base",
                    url: config.api_base.clone(),
                    problem: "does not take a path",
                })
        };
        let (token_uri, introspect_uri, disconnect_uri) = (
            uri("/auth/token")?,
            uri("/introspect")?,
            uri("/disconnect")?,
        );
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                transport,
                token_uri,
                introspect_uri,
                disconnect_uri,
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Exchanges a code at `POST /auth/token`. Callers go through
    /// [`Connection::exchange`](crate::Connection::exchange), which takes the code from
    /// a verified callback; this is the step it runs.
    pub(crate) async fn exchange_code(
        &self,
        code: &AuthorizationCode,
        redirect_uri: Option<&str>,
    ) -> Result<TokenResponse, Error> {
        let cfg = &self.inner.config;
        let body = wire::token_request(&cfg.client_id, &cfg.client_secret, code, redirect_uri)?;
        let answer = self
            .inner
            .transport
            .send(
                Method::POST,
                &self.inner.token_uri,
                Some(body.into_bytes()),
                None,
                true,
            )
            .await?;
        if answer.status != StatusCode::OK {
            return Err(answer.error(&[code.expose_secret(), cfg.client_secret.expose_secret()]));
        }
        TokenResponse::parse(&answer.body).map_err(|e| match e {
            Error::MalformedResponse { reason, .. } => Error::MalformedResponse {
                reason,
                detail: answer.detail(),
            },
            other => other,
        })
    }

    /// Calls `GET /introspect` with an access token.
    pub async fn introspect_token(&self, token: &AccessToken) -> Result<Introspection, Error> {
        let span = tracing::info_span!(
            "chart.introspect",
            status = tracing::field::Empty,
            attempt = tracing::field::Empty
        );
        async {
            let answer = self
                .bearer_call(Method::GET, &self.inner.introspect_uri, token)
                .await?;
            serde_json::from_slice(&answer.body).map_err(|e| Error::MalformedResponse {
                reason: format!(
                    "introspection is not the expected JSON: {}",
                    e.classify_name()
                ),
                detail: answer.detail(),
            })
        }
        .instrument(span)
        .await
    }

    /// Calls `POST /disconnect`, revoking the access token at Chart.
    pub async fn disconnect_token(&self, token: &AccessToken) -> Result<(), Error> {
        let span = tracing::info_span!(
            "chart.disconnect",
            status = tracing::field::Empty,
            attempt = tracing::field::Empty
        );
        async {
            self.bearer_call(Method::POST, &self.inner.disconnect_uri, token)
                .await
                .map(drop)
        }
        .instrument(span)
        .await
    }

    /// Sends a bodyless request with the token as Bearer; any status but 200 is an error.
    async fn bearer_call(
        &self,
        method: Method,
        uri: &Uri,
        token: &AccessToken,
    ) -> Result<Answer, Error> {
        let answer = self
            .inner
            .transport
            .send(method, uri, None, Some(token), false)
            .await?;
        if answer.status != StatusCode::OK {
            return Err(answer.error(&[token.expose_secret()]));
        }
        Ok(answer)
    }
}
