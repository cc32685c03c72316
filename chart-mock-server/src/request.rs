//! Reading requests: the context a request is handled in, bodies with their size
//! limit, content types, bearer tokens and the `Chart-API-Version` check.

// Readers return the error answer itself as `Err`; it is built once per request and
// boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::header;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde::de::DeserializeOwned;

use uuid::Uuid;

use crate::config::ClientIx;
use crate::model::{Chart, CodeFacts};
use crate::response::{Resp, error_std};

/// How long a client may take to send its request head, its body, or finish a TLS handshake.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// The only `Chart-API-Version` the mock knows.
pub const API_VERSION: &str = "2024-01-01";

/// What the server knows beyond the request.
#[derive(Clone)]
pub(crate) struct Ctx {
    /// The model.
    pub(crate) chart: Arc<Chart>,
    /// The admin token for non-loopback control-plane requests.
    pub(crate) admin_token: Option<Arc<str>>,
    /// The port the mock serves, and the host name it was started as (besides IP
    /// literals and `localhost`): what a control-plane `Host` header may name.
    pub(crate) served: Served,
    /// The request log's budget of lines a second.
    pub(crate) log: Arc<LogBudget>,
}

/// The most request lines logged in a second. A person cannot read more, and under load
/// the line cost more than the rest of a request's handling.
pub const REQUEST_LINES_PER_SEC: u64 = 100;

/// The request log's budget: at most [`REQUEST_LINES_PER_SEC`] lines a second. Past it,
/// lines are counted instead, and the count is logged when a later second starts (with
/// its first request) or at shutdown. The journal keeps recent requests either way.
#[derive(Debug)]
pub(crate) struct LogBudget {
    base: std::time::Instant,
    /// The second (since `base`) that `used` counts.
    second: AtomicU64,
    used: AtomicU64,
    skipped: AtomicU64,
}

impl Default for LogBudget {
    fn default() -> Self {
        Self {
            base: std::time::Instant::now(),
            second: AtomicU64::new(0),
            used: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        }
    }
}

impl LogBudget {
    /// Whether a request's line may be logged now; if not, it is counted.
    pub(crate) fn take(&self) -> bool {
        let now = self.base.elapsed().as_secs();
        let second = self.second.load(Ordering::Relaxed);
        if now != second
            && self
                .second
                .compare_exchange(second, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.used.store(0, Ordering::Relaxed);
            self.report_skipped();
        }
        if self.used.fetch_add(1, Ordering::Relaxed) < REQUEST_LINES_PER_SEC {
            return true;
        }
        self.skipped.fetch_add(1, Ordering::Relaxed);
        false
    }

    /// Logs how many request lines were skipped since the last report, if any.
    pub(crate) fn report_skipped(&self) {
        let skipped = self.skipped.swap(0, Ordering::Relaxed);
        if skipped > 0 {
            tracing::info!(
                skipped,
                "request lines not logged: over {REQUEST_LINES_PER_SEC} a second \
                 (GET /__chart/journal lists recent requests)"
            );
        }
    }
}

/// Where the mock is served, for checking `Host` and `Origin` headers.
#[derive(Clone, Debug, Default)]
pub(crate) struct Served {
    pub(crate) port: u16,
    pub(crate) host_name: Option<Arc<str>>,
}

/// Facts about a request for its journal entry and the report.
#[derive(Default)]
pub(crate) struct Note {
    pub(crate) outcome: Option<String>,
    pub(crate) client: Option<ClientIx>,
    pub(crate) code_id: Option<Uuid>,
    pub(crate) metadata: Option<Arc<str>>,
    /// `/auth/token`: the body was JSON (content type and shape).
    pub(crate) json_body: Option<bool>,
    /// `/auth/token`: `redirect_uri` was sent.
    pub(crate) redirect_uri_sent: Option<bool>,
    /// The code came from the Redirect flow.
    pub(crate) code_redirect_flow: Option<bool>,
    /// The account of the token issued.
    pub(crate) issued_account: Option<Uuid>,
    /// The account of the token disconnected.
    pub(crate) disconnected_account: Option<Uuid>,
}

impl Note {
    /// Notes the code a request carried, if the mock knows it.
    pub(crate) fn code(&mut self, facts: Option<CodeFacts>) {
        if let Some(f) = facts {
            self.code_id = Some(f.id);
            self.code_redirect_flow = Some(f.redirect_flow);
            self.metadata = f.metadata;
        }
    }
}

pub(crate) fn api_version_error(req: &Request<hyper::body::Incoming>) -> Option<Resp> {
    let version = req.headers().get("chart-api-version")?;
    if version.as_bytes() == API_VERSION.as_bytes() {
        return None;
    }
    Some(error_std(
        StatusCode::BAD_REQUEST,
        &format!("Unknown Chart-API-Version; the supported version is {API_VERSION}."),
    ))
}

/// Reads a body of at most [`MAX_BODY`] bytes; the error is the 413 answer.
pub(crate) async fn read_body(req: Request<hyper::body::Incoming>) -> Result<Bytes, Resp> {
    let mut body = req.into_body();
    let mut collected = Vec::new();
    let mut seen = 0usize;
    let deadline = tokio::time::Instant::now() + HEADER_READ_TIMEOUT;
    loop {
        let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(_) => {
                return Err(error_std(
                    StatusCode::REQUEST_TIMEOUT,
                    "The request body took too long.",
                ));
            }
        };
        let Ok(frame) = frame else {
            return Err(error_std(
                StatusCode::BAD_REQUEST,
                "The request body could not be read.",
            ));
        };
        if let Ok(data) = frame.into_data() {
            seen += data.len();
            if seen <= MAX_BODY {
                collected.extend_from_slice(&data);
            } else if seen > DRAIN_LIMIT {
                // Too large to drain politely: answer now; hyper closes the connection.
                break;
            }
        }
    }
    if seen > MAX_BODY {
        // The body was drained (up to a limit) so the client reads the 413 instead of
        // a broken pipe while it is still sending.
        return Err(error_std(
            StatusCode::PAYLOAD_TOO_LARGE,
            "The request body exceeds 64 KiB.",
        ));
    }
    Ok(Bytes::from(collected))
}

/// How much of an oversized body is read and discarded before answering 413.
const DRAIN_LIMIT: usize = 1024 * 1024;

pub(crate) fn is_json(req: &Request<hyper::body::Incoming>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// The token of an `Authorization: Bearer` header.
pub(crate) fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// A JSON body, `{}` when empty; the error is the 400 answer.
pub(crate) async fn json_body<T: DeserializeOwned>(
    req: Request<hyper::body::Incoming>,
) -> Result<T, Resp> {
    // A browser can send `text/plain` cross-origin without asking; JSON it cannot.
    if !is_json(&req) {
        return Err(error_std(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The content type must be application/json.",
        ));
    }
    let bytes = read_body(req).await?;
    let bytes = if bytes.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| error_std(StatusCode::BAD_REQUEST, &format!("Bad JSON body: {e}.")))
}
