//! The hyper + rustls transport: the pooled connection, the retry loop that knows
//! authorization codes are single use, and the classification of what went wrong.
//!
//! # What it guarantees
//! - HTTPS through rustls, HTTP/1.1 or HTTP/2 by ALPN, webpki roots plus any extra
//!   roots you add (or your own `rustls::ClientConfig`); `http://` only to loopback.
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
use zeroize::Zeroizing;

use crate::config::{Config, RetryPolicy};
use crate::error::{ConfigError, Error, ErrorDetail, UnknownCause};
use crate::secret::{AccessToken, SecretBuf};
use crate::wire::{self, parse_retry_after};

const USER_AGENT: &str = concat!("chart-auth-rust/", env!("CARGO_PKG_VERSION"));
/// How long an idle pooled connection is kept.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The largest jitter added to a `Retry-After` wait.
const RETRY_AFTER_JITTER: Duration = Duration::from_millis(100);
/// The response buffer's first size when Chart sends no `Content-Length`.
const INITIAL_BODY_CAPACITY: usize = 1024;
/// `Bearer ` before the token in the `Authorization` header.
const BEARER_PREFIX: &[u8] = b"Bearer ";

type HttpsClient = HyperClient<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A response whose body sits in a zeroizing buffer.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Zeroizing<Vec<u8>>,
}

impl Answer {
    /// What is known of the answer, for an error that has no Chart error body.
    pub(crate) fn detail(&self) -> ErrorDetail {
        ErrorDetail {
            status: Some(self.status),
            request_id: wire::request_id(&self.headers),
            ..ErrorDetail::default()
        }
    }

    /// The error for a non-success answer, with `secrets` scrubbed from it.
    pub(crate) fn error(&self, secrets: &[&str]) -> Error {
        wire::error_from_response(self.status, &self.headers, &self.body, secrets)
    }
}

/// The pooled HTTPS client and the limits every request runs under.
pub(crate) struct Transport {
    http: HttpsClient,
    api_version: Option<HeaderValue>,
    request_timeout: Duration,
    deadline: Duration,
    max_response_bytes: usize,
    retry: RetryPolicy,
}

impl Transport {
    /// Builds the TLS configuration and the connection pool once, for every request.
    pub(crate) fn new(config: &Config) -> Result<Self, Error> {
        let tls = match &config.tls {
            Some(own) => {
                // hyper-rustls sets the ALPN protocols itself and refuses preset ones.
                let mut tls = rustls::ClientConfig::clone(own);
                tls.alpn_protocols.clear();
                tls
            }
            None => {
                let mut roots = rustls::RootCertStore::empty();
                if config.webpki_roots {
                    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                }
                for cert in &config.extra_roots {
                    roots
                        .add(cert.clone())
                        .map_err(|e| ConfigError::BadRootCertificate(e.to_string()))?;
                }
                rustls::ClientConfig::builder_with_provider(Arc::new(
                    rustls::crypto::ring::default_provider(),
                ))
                .with_safe_default_protocol_versions()
                .map_err(ConfigError::Tls)?
                .with_root_certificates(roots)
                .with_no_client_auth()
            }
        };
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
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .build(https);
        let api_version = config
            .api_version
            .as_deref()
            .map(|v| HeaderValue::from_str(v).map_err(|_| ConfigError::BadApiVersion))
            .transpose()?;
        Ok(Self {
            http,
            api_version,
            request_timeout: config.request_timeout,
            deadline: config.deadline,
            max_response_bytes: config.max_response_bytes,
            retry: config.retry.clone(),
        })
    }

    /// Sends one logical request, retrying only where no code can have been spent.
    ///
    /// `body` is shared by every attempt without copying (it is a zeroizing buffer).
    ///
    /// A `single_use` request (one that spends a code) is never retried after an
    /// answer that may have come from a proxy in front of Chart: a 5xx without Chart's
    /// error body gives [`Error::OutcomeUnknown`].
    pub(crate) async fn send(
        &self,
        method: Method,
        uri: &Uri,
        body: Option<Bytes>,
        bearer: Option<&AccessToken>,
        single_use: bool,
    ) -> Result<Answer, Error> {
        let started = Instant::now();
        let deadline = started + self.deadline;
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
            if let Some(v) = &self.api_version {
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
                .map_err(|_| Error::Internal("could not build the request"))?;

            let remaining = deadline.saturating_duration_since(Instant::now());
            let budget = remaining.min(self.request_timeout);
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
                    if attempt >= self.retry.max_attempts {
                        return Err(err);
                    }
                    backoff(&self.retry, attempt)
                }
                Ok(Err(AttemptError::Sent(err))) => return Err(err),
                Ok(Ok(answer))
                    if single_use
                        && answer.status.is_server_error()
                        && !wire::is_chart_error(&answer.body) =>
                {
                    return Err(Error::OutcomeUnknown {
                        cause: UnknownCause::NotFromChart,
                        detail: answer.detail(),
                    });
                }
                // A wait past the deadline is not waited for: the answer goes back as it
                // is (a 429 becomes `RateLimited` with its Retry-After), not a timeout.
                Ok(Ok(answer)) => match retry_after(&answer) {
                    Some(wait)
                        if attempt < self.retry.max_attempts
                            && wait <= self.retry.max_retry_after
                            && ends_before(wait, deadline) =>
                    {
                        tracing::debug!(
                            attempt,
                            status = answer.status.as_u16(),
                            ?wait,
                            "Chart asked to retry"
                        );
                        wait + jitter(RETRY_AFTER_JITTER)
                    }
                    _ => {
                        span.record("status", answer.status.as_u16());
                        return Ok(answer);
                    }
                },
            };
            if !ends_before(retry_in, deadline) {
                return Err(Error::Timeout);
            }
            tokio::time::sleep(retry_in).await;
        }
    }

    async fn attempt(&self, req: Request<Full<Bytes>>) -> Result<Answer, AttemptError> {
        let resp = self.http.request(req).await.map_err(classify)?;
        let (parts, body) = resp.into_parts();
        let mut answer = Answer {
            status: parts.status,
            headers: parts.headers,
            body: Zeroizing::default(),
        };
        let limit = self.max_response_bytes;
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
            .reserve_exact(declared.unwrap_or(INITIAL_BODY_CAPACITY).min(limit));
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
                append_zeroizing(&mut answer.body, &data, limit);
            }
        }
        Ok(answer)
    }
}

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
    let mut buf = SecretBuf::with_capacity(BEARER_PREFIX.len() + token.expose_secret().len());
    buf.as_mut_vec().extend_from_slice(BEARER_PREFIX);
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

/// Whether a wait begun now ends before the deadline.
fn ends_before(wait: Duration, deadline: Instant) -> bool {
    Instant::now() + wait < deadline
}

fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .base_backoff
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(policy.max_backoff);
    jitter(exp)
}

/// Appends `data` to a body that may hold a token. When it must grow, the bytes move to a
/// fresh buffer (at most `limit` bytes, doubling otherwise) and the old one is zeroized
/// as it drops: `Vec`'s own reallocation would leave a copy in freed memory.
fn append_zeroizing(body: &mut Zeroizing<Vec<u8>>, data: &[u8], limit: usize) {
    let needed = body.len() + data.len();
    if body.capacity() < needed {
        let mut bigger = Zeroizing::new(Vec::with_capacity(
            limit.min(2 * body.capacity() + data.len()).max(needed),
        ));
        bigger.extend_from_slice(body);
        *body = bigger;
    }
    body.extend_from_slice(data);
}

/// A uniformly random duration in `[0, max]` ("full jitter").
fn jitter(max: Duration) -> Duration {
    let mut b = [0u8; 4];
    // A failed read leaves zeros: no jitter, which is still a wait within the bound.
    let _ = getrandom::fill(&mut b);
    max.mul_f64(f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use zeroize::Zeroizing;

    use super::{append_zeroizing, backoff, jitter};
    use crate::config::RetryPolicy;

    #[test]
    fn backoff_doubles_from_the_base_and_never_passes_the_cap() {
        let policy = RetryPolicy {
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(700),
            ..RetryPolicy::default()
        };
        // Full jitter: each wait is in [0, min(base * 2^(attempt-1), cap)].
        for (attempt, ceiling) in [(1, 100), (2, 200), (3, 400), (4, 700), (5, 700), (40, 700)] {
            let waits: Vec<Duration> = (0..200).map(|_| backoff(&policy, attempt)).collect();
            let ceiling = Duration::from_millis(ceiling);
            assert!(waits.iter().all(|w| *w <= ceiling), "attempt {attempt}");
            // Spread over the range, not stuck at either end.
            assert!(waits.iter().any(|w| *w > ceiling / 2), "attempt {attempt}");
            assert!(waits.iter().any(|w| *w < ceiling / 2), "attempt {attempt}");
        }
    }

    #[test]
    fn jitter_stays_within_its_bound() {
        let max = Duration::from_secs(3);
        assert!((0..1_000).map(|_| jitter(max)).all(|j| j <= max));
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_growing_body_moves_to_a_fresh_buffer_and_a_fitting_one_stays() {
        let mut body = Zeroizing::new(Vec::with_capacity(8));
        body.extend_from_slice(b"abc");
        let first = body.as_ptr();
        // Exactly fills the capacity: no move.
        append_zeroizing(&mut body, b"defgh", 100);
        assert_eq!((body.as_slice(), body.capacity()), (&b"abcdefgh"[..], 8));
        assert_eq!(body.as_ptr(), first);
        // One byte over: a fresh buffer of twice the capacity plus the new bytes.
        append_zeroizing(&mut body, b"i", 100);
        assert_eq!((body.as_slice(), body.capacity()), (&b"abcdefghi"[..], 17));
        // Near the limit, the limit bounds the new capacity.
        let big = [b'x'; 10];
        append_zeroizing(&mut body, &big, 20);
        assert_eq!((body.len(), body.capacity()), (19, 20));
        // A body already over the limit still gets what it needs (the caller checks the limit).
        append_zeroizing(&mut body, &big, 20);
        assert_eq!((body.len(), body.capacity()), (29, 29));
    }
}
