//! The Chart API client: configuration, the hyper + rustls transport, and the retry
//! policy that knows authorization codes are single use.
//!
//! # What the transport guarantees
//! - HTTPS through rustls, HTTP/1.1 or HTTP/2 by ALPN, webpki roots plus any extra
//!   roots you add; `http://` only to loopback hosts.
//! - A connect timeout, a per-attempt timeout and an overall deadline; a cap on the
//!   response size; redirects are never followed.
//! - Requests that carry secrets are built in zeroizing buffers that hyper owns without
//!   copying; response bodies are collected into zeroizing buffers.
//!
//! # When it retries
//! Only when the request cannot have reached Chart (a connect or TLS failure) or Chart
//! said so (429 or 503 with a `Retry-After` within the cap). A timeout or a connection
//! lost after sending gives [`Error::OutcomeUnknown`] and is never resent, because the
//! code may already be spent.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Deserialize;
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::error::{Error, ErrorDetail, UnknownCause};
use crate::flow::{FlowKind, StateSigner};
use crate::secret::{AccessToken, ClientSecret, SecretBuf};

/// The production Chart API.
pub const DEFAULT_API_BASE: &str = "https://api.trychart.com";
/// The production Chart Connect page.
pub const DEFAULT_CONNECT_BASE: &str = "https://connect.trychart.com";
/// The API version sent as `Chart-API-Version` unless overridden.
pub const DEFAULT_API_VERSION: &str = "2024-01-01";

/// How the SDK retries requests that cannot have spent a code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. `1` disables retries.
    pub max_attempts: u32,
    /// The first backoff after a connect failure; it doubles each time, with full jitter.
    pub base_backoff: Duration,
    /// The longest backoff after a connect failure.
    pub max_backoff: Duration,
    /// The longest `Retry-After` the SDK waits for; longer ones are returned as errors.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// The SDK's configuration. Build it with [`Config::builder`] or [`Config::from_env`].
///
/// `Debug` shows everything but the client secret and the state key.
#[derive(Debug)]
pub struct Config {
    pub(crate) client_id: String,
    pub(crate) client_secret: ClientSecret,
    pub(crate) api_base: String,
    pub(crate) connect_base: String,
    pub(crate) api_version: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) deadline: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) webpki_roots: bool,
    pub(crate) extra_roots: Vec<CertificateDer<'static>>,
    pub(crate) retry: RetryPolicy,
    pub(crate) state_signer: StateSigner,
}

impl Config {
    /// Starts a configuration with the client credentials Chart issued.
    ///
    /// ```
    /// use chart_auth::{ClientSecret, Config};
    /// let config = Config::builder("my-client", ClientSecret::new("my-secret"))
    ///     .api_base("http://127.0.0.1:4010")
    ///     .build()?;
    /// assert_eq!(config.client_id(), "my-client");
    /// assert!(!format!("{config:?}").contains("my-secret"));
    /// # Ok::<(), chart_auth::Error>(())
    /// ```
    pub fn builder(client_id: impl Into<String>, client_secret: ClientSecret) -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                client_id: client_id.into(),
                client_secret,
                api_base: DEFAULT_API_BASE.into(),
                connect_base: DEFAULT_CONNECT_BASE.into(),
                api_version: Some(DEFAULT_API_VERSION.into()),
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(15),
                deadline: Duration::from_secs(30),
                max_response_bytes: 64 * 1024,
                webpki_roots: true,
                extra_roots: Vec::new(),
                retry: RetryPolicy::default(),
                state_signer: StateSigner::generate(),
            },
            pem_error: None,
        }
    }

    /// Reads `CHART_CLIENT_ID`, `CHART_CLIENT_SECRET` and, optionally, `CHART_API_BASE`
    /// and `CHART_CONNECT_BASE`.
    pub fn from_env() -> Result<Config, Error> {
        Self::builder_from_env()?.build()
    }

    /// Like [`Config::from_env`], but returns the builder for further settings.
    pub fn builder_from_env() -> Result<ConfigBuilder, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let client_id = var("CHART_CLIENT_ID")
            .ok_or_else(|| Error::Config("CHART_CLIENT_ID is not set".into()))?;
        let secret = var("CHART_CLIENT_SECRET")
            .ok_or_else(|| Error::Config("CHART_CLIENT_SECRET is not set".into()))?;
        let mut builder = Self::builder(client_id, ClientSecret::new(secret));
        if let Some(base) = var("CHART_API_BASE") {
            builder = builder.api_base(base);
        }
        if let Some(base) = var("CHART_CONNECT_BASE") {
            builder = builder.connect_base(base);
        }
        Ok(builder)
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The API base URL, without a trailing slash.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }
}

/// Builds a [`Config`]; every setting has a safe default.
#[derive(Debug)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
    pem_error: Option<String>,
}

impl ConfigBuilder {
    /// The Chart API base URL (default [`DEFAULT_API_BASE`]). `http://` is allowed only
    /// for loopback hosts, such as the mock server.
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        self.config.api_base = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The Chart Connect page used by [`ChartClient::begin_connect`]
    /// (default [`DEFAULT_CONNECT_BASE`]).
    pub fn connect_base(mut self, url: impl Into<String>) -> Self {
        self.config.connect_base = url.into();
        self
    }

    /// The `Chart-API-Version` header; `None` sends none.
    pub fn api_version(mut self, version: Option<&str>) -> Self {
        self.config.api_version = version.map(str::to_owned);
        self
    }

    /// How long a TCP connect plus TLS handshake may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long one attempt may take, from sending to the end of the body (default 15 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// How long a call may take in all, retries and waits included (default 30 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = deadline;
        self
    }

    /// The largest response body accepted (default 64 KiB).
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.config.max_response_bytes = limit;
        self
    }

    /// Trusts the certificates in this PEM (e.g. a private CA, or the mock's CA) in
    /// addition to the webpki roots.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Self {
        let mut found = false;
        for cert in CertificateDer::pem_slice_iter(pem) {
            match cert {
                Ok(cert) => {
                    found = true;
                    self.config.extra_roots.push(cert);
                }
                Err(e) => self.pem_error = Some(format!("bad root certificate PEM: {e}")),
            }
        }
        if !found && self.pem_error.is_none() {
            self.pem_error = Some("no certificate found in the root certificate PEM".into());
        }
        self
    }

    /// Whether to trust the webpki (Mozilla) roots (default `true`). Turn it off to
    /// trust only the roots added with [`ConfigBuilder::add_root_certificates_pem`].
    pub fn webpki_roots(mut self, enabled: bool) -> Self {
        self.config.webpki_roots = enabled;
        self
    }

    /// The retry policy (see [`RetryPolicy`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// The key that signs Connect `state` values. By default a random key is made per
    /// process; set one shared key when several instances serve the callback.
    pub fn state_signer(mut self, signer: StateSigner) -> Self {
        self.config.state_signer = signer;
        self
    }

    /// Checks the settings and builds the configuration.
    pub fn build(self) -> Result<Config, Error> {
        if let Some(e) = self.pem_error {
            return Err(Error::Config(e));
        }
        let c = self.config;
        if c.client_id.is_empty() {
            return Err(Error::Config("the client id is empty".into()));
        }
        if c.client_secret.expose_secret().is_empty() {
            return Err(Error::Config("the client secret is empty".into()));
        }
        check_base_url(&c.api_base, "API base")?;
        check_base_url(&c.connect_base, "Connect base")?;
        if let Some(v) = &c.api_version
            && HeaderValue::from_str(v).is_err()
        {
            return Err(Error::Config(
                "the API version is not a valid header value".into(),
            ));
        }
        if c.connect_timeout > c.request_timeout || c.request_timeout > c.deadline {
            return Err(Error::Config(
                "timeouts must satisfy connect_timeout <= request_timeout <= deadline".into(),
            ));
        }
        if c.retry.max_attempts == 0 {
            return Err(Error::Config(
                "retry.max_attempts must be at least 1".into(),
            ));
        }
        if !c.webpki_roots && c.extra_roots.is_empty() {
            return Err(Error::Config("no trusted root certificates".into()));
        }
        Ok(c)
    }
}

/// Checks that `url` is an absolute `https://` URL, or `http://` on a loopback host.
pub(crate) fn check_base_url(url: &str, what: &str) -> Result<(), Error> {
    let uri: Uri = url
        .parse()
        .map_err(|_| Error::Config(format!("the {what} URL {url:?} is not a valid URL")))?;
    let host = uri
        .host()
        .ok_or_else(|| Error::Config(format!("the {what} URL {url:?} has no host")))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(Error::Config(format!(
            "the {what} URL {url:?} uses http:// on a non-loopback host; use https://"
        ))),
        _ => Err(Error::Config(format!(
            "the {what} URL {url:?} must be https://"
        ))),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

type Transport = HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for Chart's API. Cheap to clone: clones share one connection pool.
///
/// ```no_run
/// # async fn run() -> Result<(), chart_auth::Error> {
/// let client = chart_auth::ChartClient::new(chart_auth::Config::from_env()?)?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct ChartClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: Config,
    http: Transport,
    /// Built once: the endpoint URIs and the version header.
    token_uri: Uri,
    introspect_uri: Uri,
    disconnect_uri: Uri,
    api_version: Option<HeaderValue>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// A response whose body sits in a zeroizing buffer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

impl Answer {
    pub(crate) fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            status: Some(self.status),
            request_id: request_id(&self.headers),
            ..ErrorDetail::default()
        }
    }
}

fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("chart-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(128).collect())
}

impl ChartClient {
    /// Builds the client and its connection pool. The TLS configuration is built once
    /// here and shared by every request.
    pub fn new(config: Config) -> Result<Self, Error> {
        let mut roots = rustls::RootCertStore::empty();
        if config.webpki_roots {
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        }
        for cert in &config.extra_roots {
            roots
                .add(cert.clone())
                .map_err(|e| Error::Config(format!("unusable root certificate: {e}")))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Config(format!("TLS setup failed: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();

        let mut tcp = HttpConnector::new();
        tcp.enforce_http(false);
        tcp.set_nodelay(true);
        tcp.set_connect_timeout(Some(config.connect_timeout));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(tcp);
        let http = HyperClient::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(https);
        let uri = |path: &str| {
            format!("{}{path}", config.api_base)
                .parse::<Uri>()
                .map_err(|_| Error::Config(format!("bad API base {:?}", config.api_base)))
        };
        let (token_uri, introspect_uri, disconnect_uri) = (
            uri("/auth/token")?,
            uri("/introspect")?,
            uri("/disconnect")?,
        );
        let api_version = config
            .api_version
            .as_deref()
            .map(|v| HeaderValue::from_str(v).map_err(|_| Error::Config("bad API version".into())))
            .transpose()?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                http,
                token_uri,
                introspect_uri,
                disconnect_uri,
                api_version,
            }),
        })
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub(crate) fn signer(&self) -> &StateSigner {
        &self.inner.config.state_signer
    }

    /// Sends one logical request, retrying only where no code can have been spent.
    ///
    /// `body` is shared by every attempt without copying (it is a zeroizing buffer).
    pub(crate) async fn send(
        &self,
        method: Method,
        uri: &Uri,
        body: Option<Bytes>,
        bearer: Option<&AccessToken>,
    ) -> Result<Answer, Error> {
        let cfg = &self.inner.config;
        let started = Instant::now();
        let deadline = started + cfg.deadline;
        let auth = bearer.map(bearer_header);
        let span = tracing::Span::current();
        let mut attempt = 0;
        loop {
            attempt += 1;
            span.record("attempt", attempt);
            let mut req = Request::builder().method(method.clone()).uri(uri.clone());
            let headers = req.headers_mut().expect("a fresh builder has headers");
            headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
            headers.insert(header::USER_AGENT, HeaderValue::from_static(USER_AGENT));
            if let Some(v) = &self.inner.api_version {
                headers.insert("chart-api-version", v.clone());
            }
            if let Some(auth) = &auth {
                headers.insert(header::AUTHORIZATION, auth.clone());
            }
            if body.is_some() {
                headers.insert(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                );
            }
            let req = req
                .body(Full::new(body.clone().unwrap_or_default()))
                .map_err(|e| Error::Config(format!("bad request: {e}")))?;

            let remaining = deadline.saturating_duration_since(Instant::now());
            let budget = remaining.min(cfg.request_timeout);
            let outcome = tokio::time::timeout(budget, self.attempt(req)).await;
            let retry_in = match outcome {
                Err(_elapsed) => {
                    return Err(Error::OutcomeUnknown {
                        cause: UnknownCause::Timeout,
                        detail: ErrorDetail::default(),
                    });
                }
                Ok(Err(AttemptError::NotSent(err))) => {
                    tracing::debug!(attempt, error = %err, "request not sent");
                    if attempt >= cfg.retry.max_attempts {
                        return Err(err);
                    }
                    backoff(&cfg.retry, attempt)
                }
                Ok(Err(AttemptError::Sent(err))) => return Err(err),
                Ok(Ok(answer)) => match retry_after(&answer) {
                    Some(wait)
                        if attempt < cfg.retry.max_attempts
                            && wait <= cfg.retry.max_retry_after =>
                    {
                        tracing::debug!(
                            attempt,
                            status = answer.status.as_u16(),
                            ?wait,
                            "Chart asked to retry"
                        );
                        wait + jitter(Duration::from_millis(100))
                    }
                    _ => {
                        span.record("status", answer.status.as_u16());
                        return Ok(answer);
                    }
                },
            };
            if Instant::now() + retry_in >= deadline {
                return Err(Error::Timeout);
            }
            tokio::time::sleep(retry_in).await;
        }
    }

    async fn attempt(&self, req: Request<Full<Bytes>>) -> Result<Answer, AttemptError> {
        let resp = self.inner.http.request(req).await.map_err(classify)?;
        let (parts, body) = resp.into_parts();
        let mut answer = Answer {
            status: parts.status,
            headers: parts.headers,
            body: Zeroizing::default(),
        };
        let limit = self.inner.config.max_response_bytes;
        let declared = answer
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(AttemptError::Sent(Error::ResponseTooLarge {
                limit,
                detail: answer.detail(),
            }));
        }
        // Pre-size so that growing never leaves an unzeroized copy behind.
        answer
            .body
            .reserve_exact(declared.unwrap_or(1024).min(limit));
        let mut body = body;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|_| {
                AttemptError::Sent(Error::OutcomeUnknown {
                    cause: UnknownCause::ConnectionLost,
                    detail: answer.detail(),
                })
            })?;
            if let Ok(data) = frame.into_data() {
                if answer.body.len() + data.len() > limit {
                    return Err(AttemptError::Sent(Error::ResponseTooLarge {
                        limit,
                        detail: answer.detail(),
                    }));
                }
                if answer.body.capacity() < answer.body.len() + data.len() {
                    let mut bigger = Zeroizing::new(Vec::with_capacity(
                        limit.min(2 * answer.body.capacity() + data.len()),
                    ));
                    bigger.extend_from_slice(&answer.body);
                    answer.body = bigger;
                }
                answer.body.extend_from_slice(&data);
            }
        }
        Ok(answer)
    }
}

const USER_AGENT: &str = concat!("chart-auth-rust/", env!("CARGO_PKG_VERSION"));

enum AttemptError {
    /// The request cannot have reached Chart.
    NotSent(Error),
    /// The request may have reached Chart.
    Sent(Error),
}

fn classify(err: hyper_util::client::legacy::Error) -> AttemptError {
    if !err.is_connect() {
        return AttemptError::Sent(Error::OutcomeUnknown {
            cause: UnknownCause::ConnectionLost,
            detail: ErrorDetail::default(),
        });
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&err);
    let mut timed_out = false;
    while let Some(e) = source {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return AttemptError::NotSent(Error::Tls {
                reason: tls.to_string(),
            });
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            timed_out |= io.kind() == std::io::ErrorKind::TimedOut;
            // `io::Error::source` skips the wrapped error itself, so step into it.
            if let Some(inner) = io.get_ref() {
                source = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        source = e.source();
    }
    if timed_out {
        return AttemptError::NotSent(Error::Timeout);
    }
    let reason = std::error::Error::source(&err).map_or_else(|| err.to_string(), |s| s.to_string());
    AttemptError::NotSent(Error::Connect { reason })
}

fn bearer_header(token: &AccessToken) -> HeaderValue {
    let mut buf = SecretBuf::with_capacity(7 + token.expose_secret().len());
    buf.as_mut_vec().extend_from_slice(b"Bearer ");
    buf.as_mut_vec()
        .extend_from_slice(token.expose_secret().as_bytes());
    let mut value = HeaderValue::from_maybe_shared(buf.into_bytes())
        .unwrap_or_else(|_| HeaderValue::from_static("Bearer invalid"));
    value.set_sensitive(true);
    value
}

/// The wait Chart asked for, if this answer is one the SDK may retry.
fn retry_after(answer: &Answer) -> Option<Duration> {
    if !matches!(
        answer.status,
        StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
    ) {
        return None;
    }
    parse_retry_after(&answer.headers)
}

pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(policy.max_backoff);
    jitter(exp)
}

/// A uniformly random duration in `[0, max]` ("full jitter").
fn jitter(max: Duration) -> Duration {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        return max / 2;
    }
    max.mul_f64(f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX))
}

/// The bodies of Chart's JSON answers, borrowed from the zeroizing response buffer.
#[derive(Deserialize)]
pub(crate) struct ErrorBody<'a> {
    #[serde(borrow, default)]
    pub(crate) name: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) message: Option<std::borrow::Cow<'a, str>>,
}

/// Maps a non-success answer to its error, scrubbing `secrets` out of it.
pub(crate) fn error_from_answer(answer: &Answer, secrets: &[&str]) -> Error {
    Error::from_response(answer.status, &answer.headers, &answer.body, secrets)
}

/// `text` with every secret replaced, then cut to `limit` characters; `None` if a
/// secret would still show (e.g. one that the replacement itself spells).
fn scrub(text: &str, limit: usize, secrets: &[&str]) -> Option<String> {
    let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    let mut out = text.to_owned();
    for s in &secrets {
        out = out.replace(s, "<redacted>");
    }
    let out: String = out.chars().take(limit).collect();
    (!secrets.iter().any(|s| out.contains(s))).then_some(out)
}

impl Error {
    /// Builds the error for a non-success Chart answer from its status, headers and
    /// body (`{"code", "name", "message"}`). Every string in `secrets` (e.g. the code
    /// and client secret that were sent) is scrubbed from what the error keeps.
    ///
    /// ```
    /// use chart_auth::Error;
    /// let body = br#"{"code":400,"name":"invalid_grant_error","message":"code abc123 expired"}"#;
    /// let err = Error::from_response(http::StatusCode::BAD_REQUEST, &http::HeaderMap::new(), body, &["abc123"]);
    /// assert!(matches!(err, Error::InvalidGrant(_)));
    /// assert_eq!(err.detail().unwrap().message.as_deref(), Some("code <redacted> expired"));
    /// ```
    pub fn from_response(
        status: StatusCode,
        headers: &HeaderMap,
        body: &[u8],
        secrets: &[&str],
    ) -> Error {
        let mut detail = ErrorDetail {
            status: Some(status),
            request_id: request_id(headers).and_then(|id| scrub(&id, 128, secrets)),
            ..ErrorDetail::default()
        };
        if let Ok(body) = serde_json::from_slice::<ErrorBody<'_>>(body) {
            detail.name = body.name.and_then(|n| scrub(&n, 64, secrets));
            detail.message = body.message.and_then(|m| scrub(&m, 512, secrets));
        }
        match (detail.name.as_deref(), status) {
            (Some("invalid_grant_error"), _) => Error::InvalidGrant(detail),
            (Some("invalid_client_error"), _) => Error::InvalidClient(detail),
            (Some("invalid_token_error"), _) => Error::InvalidToken(detail),
            (Some("rate_limit_exceeded_error"), _) | (_, StatusCode::TOO_MANY_REQUESTS) => {
                Error::RateLimited {
                    retry_after: parse_retry_after(headers),
                    detail,
                }
            }
            (_, StatusCode::UNAUTHORIZED) => Error::InvalidClient(detail),
            (_, s) if s.is_client_error() => Error::InvalidRequest(detail),
            (_, s) => Error::Server { status: s, detail },
        }
    }
}

/// Chart's answer to a successful `/auth/token`, borrowed from the zeroizing buffer.
#[derive(Deserialize)]
struct TokenBody<'a> {
    #[serde(borrow, default)]
    account_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    taxpayer_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    provider_id: std::borrow::Cow<'a, str>,
    #[serde(borrow)]
    access_token: std::borrow::Cow<'a, str>,
}

/// A successful token exchange, parsed from Chart's JSON.
#[derive(Debug)]
pub struct TokenResponse {
    /// The connected account (Chart's `account_id`, or `taxpayer_id` in newer API versions).
    pub account_id: String,
    /// The tax provider the user connected.
    pub provider_id: crate::flow::ProviderId,
    /// The access token.
    pub access_token: AccessToken,
}

impl TokenResponse {
    /// Parses the body of a 200 answer from `/auth/token`.
    ///
    /// ```
    /// let body = br#"{"taxpayer_id":"acc-1","provider_id":"irs","access_token":"tok"}"#;
    /// let parsed = chart_auth::TokenResponse::parse(body)?;
    /// assert_eq!(parsed.account_id, "acc-1");
    /// assert_eq!(parsed.provider_id.as_str(), "irs");
    /// # Ok::<(), chart_auth::Error>(())
    /// ```
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let malformed = |reason: String| Error::MalformedResponse {
            reason,
            detail: ErrorDetail::default(),
        };
        let parsed: TokenBody<'_> = serde_json::from_slice(body).map_err(|e| {
            // serde_json's messages describe positions and types, never the input text.
            malformed(format!(
                "token response is not the expected JSON: {}",
                e.classify_name()
            ))
        })?;
        let account_id = parsed
            .account_id
            .or(parsed.taxpayer_id)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| malformed("token response has no account_id or taxpayer_id".into()))?;
        if parsed.access_token.is_empty() {
            return Err(malformed("token response has an empty access_token".into()));
        }
        if parsed.provider_id.is_empty() {
            return Err(malformed("token response has an empty provider_id".into()));
        }
        Ok(Self {
            account_id: account_id.into_owned(),
            provider_id: crate::flow::ProviderId::from(parsed.provider_id.as_ref()),
            access_token: AccessToken::new(parsed.access_token.into_owned()),
        })
    }
}

trait ClassifyName {
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "missing or mistyped field",
            serde_json::error::Category::Eof => "unexpected end of input",
        }
    }
}

/// The answer of `GET /introspect`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Introspection {
    /// The connected account.
    pub taxpayer_id: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// The taxpayer's name, as the provider reports it.
    #[serde(default)]
    pub name: Option<String>,
    /// The tax provider.
    pub provider_id: String,
}

impl ChartClient {
    /// Exchanges a code at `POST /auth/token`. Prefer
    /// [`Connection::exchange`](crate::Connection::exchange), which takes the code from
    /// a verified callback; this is the step it runs.
    pub(crate) async fn exchange_code(
        &self,
        code: &crate::AuthorizationCode,
        redirect_uri: Option<&str>,
    ) -> Result<TokenResponse, Error> {
        let cfg = &self.inner.config;
        #[derive(serde::Serialize)]
        struct Body<'a> {
            client_id: &'a str,
            client_secret: &'a str,
            code: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            redirect_uri: Option<&'a str>,
        }
        let body = Body {
            client_id: &cfg.client_id,
            client_secret: cfg.client_secret.expose_secret(),
            code: code.expose_secret(),
            redirect_uri,
        };
        // Worst case JSON escaping is 6 bytes a char; size for it so the Vec never grows.
        let raw = cfg.client_id.len()
            + cfg.client_secret.expose_secret().len()
            + code.expose_secret().len()
            + redirect_uri.map_or(0, str::len);
        let mut buf = SecretBuf::with_capacity(6 * raw + 96);
        serde_json::to_writer(buf.as_mut_vec(), &body).map_err(|e| {
            Error::Config(format!(
                "could not encode the request: {}",
                e.classify_name()
            ))
        })?;
        let answer = self
            .send(
                Method::POST,
                &self.inner.token_uri,
                Some(buf.into_bytes()),
                None,
            )
            .await?;
        if answer.status != StatusCode::OK {
            return Err(error_from_answer(
                &answer,
                &[code.expose_secret(), cfg.client_secret.expose_secret()],
            ));
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
                .send(Method::GET, &self.inner.introspect_uri, None, Some(token))
                .await?;
            if answer.status != StatusCode::OK {
                return Err(error_from_answer(&answer, &[token.expose_secret()]));
            }
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
            let answer = self
                .send(Method::POST, &self.inner.disconnect_uri, None, Some(token))
                .await?;
            if answer.status != StatusCode::OK {
                return Err(error_from_answer(&answer, &[token.expose_secret()]));
            }
            Ok(())
        }
        .instrument(span)
        .await
    }

    /// Starts a Connect session: signs a `state` bound to `session` (e.g. a hash of the
    /// user's session id) and, for the Redirect flow, builds the Connect URL.
    ///
    /// ```
    /// use chart_auth::{ChartClient, ClientSecret, Config, Flow};
    /// let client = ChartClient::new(
    ///     Config::builder("my-client", ClientSecret::new("my-secret")).build()?,
    /// )?;
    /// let start = client.begin_connect(
    ///     Flow::Redirect { redirect_uri: "https://app.example.com/api/chart/callback".into() },
    ///     b"session-42",
    /// )?;
    /// assert!(start.connect_url.unwrap().starts_with("https://connect.trychart.com?client_id=my-client"));
    /// # Ok::<(), chart_auth::Error>(())
    /// ```
    pub fn begin_connect(
        &self,
        flow: crate::Flow,
        session: &[u8],
    ) -> Result<crate::ConnectStart, Error> {
        if let crate::Flow::Redirect { redirect_uri } = &flow {
            check_base_url(redirect_uri, "redirect")?;
        }
        let state = self.signer().issue(&flow, session);
        let connect_url = match &flow {
            crate::Flow::Redirect { redirect_uri } => {
                let cfg = &self.inner.config;
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("client_id", &cfg.client_id)
                    .append_pair("redirect_uri", redirect_uri)
                    .append_pair("state", &state)
                    .finish();
                let sep = if cfg.connect_base.contains('?') {
                    '&'
                } else {
                    '?'
                };
                Some(format!("{}{sep}{query}", cfg.connect_base))
            }
            crate::Flow::Embedded => None,
        };
        Ok(crate::ConnectStart {
            state,
            connect_url,
            flow: flow.kind(),
        })
    }

    /// Verifies a Connect callback (`code` and `state`) against the caller's session and
    /// the channel it arrived on, giving the code that can be exchanged.
    pub fn receive_code(
        &self,
        code: crate::AuthorizationCode,
        state: &str,
        session: &[u8],
        via: FlowKind,
    ) -> Result<crate::Connection<crate::CodeReceived>, Error> {
        if code.expose_secret().is_empty() {
            return Err(Error::BadCallback("the code is empty".into()));
        }
        let verified = self
            .signer()
            .verify(state, session, via)
            .map_err(Error::InvalidState)?;
        Ok(crate::Connection::received(code, verified))
    }
}
