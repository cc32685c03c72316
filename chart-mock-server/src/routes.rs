//! The mock's HTTP layer: Chart's endpoints, the Connect page and the control plane.
//!
//! Every answer carries `Chart-Request-Id`; every error body is
//! `{"code": <status>, "name": "<name>", "message": "<sentence>"}`; every request is
//! journaled without its secrets.

// Handlers return the error answer itself as `Err`; it is built once per request and
// boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use serde::Serialize;
use subtle::ConstantTimeEq;

use crate::connect;
use crate::state::{Chart, Fault, FaultKind, GrantOutcome, JournalEntry, MintError, MintRequest};

/// The largest request body accepted.
pub const MAX_BODY: usize = 64 * 1024;
/// The only `Chart-API-Version` the mock knows.
pub const API_VERSION: &str = "2024-01-01";

/// A response body: whole, or cut off by a fault.
#[derive(Debug)]
pub enum MockBody {
    /// The whole body.
    Full(Option<Bytes>),
    /// Sends `first` (if any), lets it reach the wire, then breaks the connection.
    Broken {
        /// What is sent before the break.
        first: Option<Bytes>,
        /// A short pause that makes hyper flush what was sent before the break.
        pause: Pin<Box<tokio::time::Sleep>>,
    },
}

impl MockBody {
    /// A body that sends `first`, then breaks the connection.
    pub fn broken(first: Bytes) -> Self {
        Self::Broken {
            first: Some(first),
            pause: Box::pin(tokio::time::sleep(Duration::from_millis(20))),
        }
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Self::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Self::Broken { first, pause } => {
                if let Some(d) = first.take().filter(|d| !d.is_empty()) {
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                match pause.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => Poll::Ready(Some(Err(std::io::Error::other(
                        "fault injected: connection cut",
                    )))),
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, Self::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Self::Full(d) => SizeHint::with_exact(d.as_ref().map_or(0, |d| d.len() as u64)),
            Self::Broken { .. } => SizeHint::default(),
        }
    }
}

/// The connection is dropped without an answer (the `reset` fault).
#[derive(Debug)]
pub struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injected: connection reset")
    }
}

impl std::error::Error for ResetConnection {}

/// What the server knows beyond the request.
#[derive(Clone)]
pub struct Ctx {
    /// The model.
    pub chart: Arc<Chart>,
    /// The admin token for non-loopback control-plane requests.
    pub admin_token: Option<Arc<str>>,
}

/// Facts about a request for its journal entry.
#[derive(Default)]
struct Note {
    outcome: Option<String>,
    client_id: Option<String>,
    code_id: Option<String>,
}

type Resp = Response<MockBody>;

fn json_response(status: StatusCode, body: &impl Serialize) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(MockBody::Full(Some(Bytes::from(bytes))));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The error name Chart uses for a status.
pub fn error_name(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "invalid_request_error",
        401 => "invalid_client_error",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        408 => "request_timeout",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        429 => "rate_limit_exceeded_error",
        500 => "server_error",
        502 => "bad_gateway",
        503 => "service_unavailable",
        504 => "gateway_timeout",
        _ => "error",
    }
}

fn error(status: StatusCode, name: &str, message: &str) -> Resp {
    #[derive(Serialize)]
    struct ErrorAnswer<'a> {
        code: u16,
        name: &'a str,
        message: &'a str,
    }
    json_response(
        status,
        &ErrorAnswer {
            code: status.as_u16(),
            name,
            message,
        },
    )
}

fn error_std(status: StatusCode, message: &str) -> Resp {
    error(status, error_name(status), message)
}

fn with_retry_after(mut resp: Resp, secs: u64) -> Resp {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

fn method_not_allowed(allow: &'static str) -> Resp {
    let mut resp = error_std(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Use {allow} for this endpoint."),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// Handles one request. `Err` drops the connection without an answer.
pub async fn handle(
    ctx: Ctx,
    peer: SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> Result<Resp, ResetConnection> {
    let request_id = uuid::Uuid::new_v4().to_string();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let mut note = Note::default();
    let fault = if path.starts_with("/__chart/") {
        None
    } else {
        ctx.chart.take_fault(&path)
    };

    let mut resp = match &fault {
        Some(f) if f.kind == FaultKind::Status => status_fault(f),
        _ => {
            if let Some(Fault {
                kind: FaultKind::Latency,
                delay_ms,
                ..
            }) = &fault
            {
                tokio::time::sleep(Duration::from_millis(delay_ms.unwrap_or(1000))).await;
            }
            route(&ctx, peer, req, &mut note).await
        }
    };

    let status = resp.status().as_u16();
    let outcome = note.outcome.take().unwrap_or_else(|| outcome_of(&resp));
    ctx.chart.record(JournalEntry {
        request_id: request_id.clone(),
        at: ctx.chart.now(),
        method: method.to_string(),
        path,
        status,
        outcome,
        client_id: note.client_id,
        code_id: note.code_id,
        fault: fault.as_ref().map(|f| f.kind),
    });
    tracing::info!(%method, status, request_id, fault = ?fault.as_ref().map(|f| f.kind), "request");

    match fault.map(|f| f.kind) {
        Some(FaultKind::Reset) => return Err(ResetConnection),
        Some(FaultKind::Empty) => {
            resp = Response::new(MockBody::broken(Bytes::new()));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("64"));
        }
        Some(FaultKind::MalformedJson) => {
            resp = Response::new(MockBody::Full(Some(Bytes::from_static(
                b"<html>502 Bad Gateway</html>",
            ))));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
        }
        Some(FaultKind::Truncated) => {
            let whole = match resp.into_body() {
                MockBody::Full(Some(b)) => b,
                _ => Bytes::new(),
            };
            let half = whole.slice(..whole.len() / 2);
            resp = Response::new(MockBody::broken(half));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            resp.headers_mut().insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(whole.len().max(2)),
            );
        }
        _ => {}
    }
    resp.headers_mut().insert(
        "chart-request-id",
        HeaderValue::from_str(&request_id).unwrap_or(HeaderValue::from_static("unknown")),
    );
    Ok(resp)
}

/// `success`, or the error `name` of the answer's body.
fn outcome_of(resp: &Resp) -> String {
    if resp.status().is_success() || resp.status().is_redirection() {
        return "success".into();
    }
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        name: &'a str,
    }
    match resp.body() {
        MockBody::Full(Some(body)) => serde_json::from_slice::<Named<'_>>(body)
            .map(|n| n.name.to_owned())
            .ok(),
        _ => None,
    }
    .unwrap_or_else(|| error_name(resp.status()).into())
}

fn status_fault(f: &Fault) -> Resp {
    let status = f
        .status
        .and_then(|s| StatusCode::from_u16(s).ok())
        .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let resp = error_std(status, "Fault injected by the control plane.");
    if matches!(status.as_u16(), 429 | 503) {
        with_retry_after(resp, f.retry_after.unwrap_or(1))
    } else {
        resp
    }
}

async fn route(
    ctx: &Ctx,
    peer: SocketAddr,
    req: Request<hyper::body::Incoming>,
    note: &mut Note,
) -> Resp {
    let path = req.uri().path();
    if let Some(control) = path.strip_prefix("/__chart/") {
        let control = control.to_owned();
        if let Err(resp) = authorize_control(ctx, peer, &req) {
            return resp;
        }
        return control_plane(ctx, &control, req).await;
    }
    match path {
        "/auth/token" => token(ctx, req, note).await,
        "/introspect" => bearer_endpoint(ctx, req, Method::GET, note),
        "/disconnect" => bearer_endpoint(ctx, req, Method::POST, note),
        "/connect" => connect::page(ctx, req).await,
        _ => error_std(StatusCode::NOT_FOUND, "No such endpoint."),
    }
}

fn api_version_error(req: &Request<hyper::body::Incoming>) -> Option<Resp> {
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
    let deadline = tokio::time::Instant::now() + crate::HEADER_READ_TIMEOUT;
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

fn is_json(req: &Request<hyper::body::Incoming>) -> bool {
    req.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

/// A field of a JSON object: a non-empty string, or the 400 answer naming it.
/// A request field as the contract checks it: absent, null, a string, or another type.
/// Strings are borrowed from the body when they have no escapes.
#[derive(Default)]
enum Field<'a> {
    #[default]
    Absent,
    Null,
    Str(std::borrow::Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Field<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct FieldVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
            type Value = Field<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'a>, E> {
                Ok(Field::Str(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Field<'a>, E> {
                Ok(Field::Str(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Field<'a>, E> {
                Ok(Field::Null)
            }
            fn visit_none<E>(self) -> Result<Field<'a>, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
        }
        d.deserialize_any(FieldVisitor(std::marker::PhantomData))
    }
}

/// The body of `POST /auth/token`, borrowed from the request bytes.
#[derive(serde::Deserialize)]
struct TokenRequest<'a> {
    #[serde(borrow, default)]
    client_id: Field<'a>,
    #[serde(borrow, default)]
    client_secret: Field<'a>,
    #[serde(borrow, default)]
    code: Field<'a>,
    #[serde(borrow, default)]
    redirect_uri: Field<'a>,
}

/// A field's string, or the 400 answer naming it.
fn field<'a>(value: &'a Field<'_>, name: &str, required: bool) -> Result<Option<&'a str>, Resp> {
    let bad = |what: &str| {
        Err(error_std(
            StatusCode::BAD_REQUEST,
            &format!("The field `{name}` {what}."),
        ))
    };
    match value {
        Field::Absent | Field::Null if required => bad("is required"),
        Field::Absent | Field::Null => Ok(None),
        Field::Str(s) if s.is_empty() => bad("must not be empty"),
        Field::Str(s) if s.len() > 4096 => bad("is too long"),
        Field::Str(s) => Ok(Some(s)),
        Field::Other => bad("must be a string"),
    }
}

async fn token(ctx: &Ctx, req: Request<hyper::body::Incoming>, note: &mut Note) -> Resp {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    if let Some(resp) = api_version_error(&req) {
        return resp;
    }
    if !is_json(&req) {
        return error_std(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The content type must be application/json.",
        );
    }
    match read_body(req).await {
        Ok(body) => token_grant(ctx, &body, note).await,
        Err(resp) => resp,
    }
}

/// The body of `POST /auth/token`, once the method and headers have passed.
async fn token_grant(ctx: &Ctx, body: &[u8], note: &mut Note) -> Resp {
    // Only an object: serde would also read a struct from a JSON array.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed = if is_object {
        serde_json::from_slice::<TokenRequest<'_>>(body).ok()
    } else {
        None
    };
    let Some(body) = parsed else {
        return error_std(
            StatusCode::BAD_REQUEST,
            "The request body is not a JSON object.",
        );
    };
    let fields = (|| {
        Ok::<_, Resp>((
            field(&body.client_id, "client_id", true)?.unwrap_or_default(),
            field(&body.client_secret, "client_secret", true)?.unwrap_or_default(),
            field(&body.code, "code", true)?.unwrap_or_default(),
            field(&body.redirect_uri, "redirect_uri", false)?,
        ))
    })();
    let (client_id, secret, code, redirect_uri) = match fields {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    if ctx.chart.client(client_id).is_some() {
        note.client_id = Some(client_id.to_owned());
    }
    if !ctx.chart.authenticate(client_id, secret) {
        note.code_id = ctx.chart.code_id(code);
        return error_std(StatusCode::UNAUTHORIZED, "Client authentication failed.");
    }
    if !ctx.chart.take_rate() {
        note.code_id = ctx.chart.code_id(code);
        return with_retry_after(
            error_std(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests; slow down.",
            ),
            60,
        );
    }
    match ctx
        .chart
        .redeem_noting(client_id, code, redirect_uri, &mut note.code_id)
    {
        GrantOutcome::Issued {
            account_id,
            provider_id,
            access_token,
            slow,
        } => {
            if slow {
                tokio::time::sleep(ctx.chart.slow_delay()).await;
            }
            #[derive(Serialize)]
            struct TokenAnswer<'a> {
                account_id: &'a str,
                taxpayer_id: &'a str,
                provider_id: &'a str,
                access_token: &'a str,
            }
            json_response(
                StatusCode::OK,
                &TokenAnswer {
                    account_id: &account_id,
                    taxpayer_id: &account_id,
                    provider_id: &provider_id,
                    access_token: &access_token,
                },
            )
        }
        GrantOutcome::InvalidGrant(message) => {
            error(StatusCode::BAD_REQUEST, "invalid_grant_error", message)
        }
        GrantOutcome::RateLimited => with_retry_after(
            error_std(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests for this code; retry shortly.",
            ),
            1,
        ),
        GrantOutcome::ServerError => error_std(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Chart had an internal error.",
        ),
    }
}

fn bearer<B>(req: &Request<B>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

fn bearer_endpoint(
    ctx: &Ctx,
    req: Request<hyper::body::Incoming>,
    allowed: Method,
    note: &mut Note,
) -> Resp {
    if req.method() != allowed {
        return method_not_allowed(if allowed == Method::GET {
            "GET"
        } else {
            "POST"
        });
    }
    if let Some(resp) = api_version_error(&req) {
        return resp;
    }
    let invalid = || {
        error(
            StatusCode::UNAUTHORIZED,
            "invalid_token_error",
            "The access token is invalid or revoked.",
        )
    };
    let Some(token) = bearer(&req) else {
        return invalid();
    };
    let Some(info) = ctx.chart.introspect(token) else {
        return invalid();
    };
    note.client_id = Some(info.client_id.clone());
    if allowed == Method::GET {
        json_response(
            StatusCode::OK,
            &serde_json::json!({
                "taxpayer_id": info.account_id,
                "client_id": info.client_id,
                "name": "Sandy Taxpayer",
                "provider_id": info.provider_id,
            }),
        )
    } else {
        ctx.chart.revoke(token);
        json_response(StatusCode::OK, &serde_json::json!({"status": "success"}))
    }
}

fn authorize_control<B>(ctx: &Ctx, peer: SocketAddr, req: &Request<B>) -> Result<(), Resp> {
    if peer.ip().is_loopback() {
        return Ok(());
    }
    let Some(expected) = &ctx.admin_token else {
        return Err(error_std(
            StatusCode::FORBIDDEN,
            "The control plane is open only to loopback clients unless the server has an admin token.",
        ));
    };
    let given = bearer(req).unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err(error(
            StatusCode::UNAUTHORIZED,
            "invalid_token_error",
            "The admin token is missing or wrong.",
        ))
    }
}

async fn json_body<T: serde::de::DeserializeOwned>(
    req: Request<hyper::body::Incoming>,
) -> Result<T, Resp> {
    let bytes = read_body(req).await?;
    let bytes = if bytes.is_empty() {
        Bytes::from_static(b"{}")
    } else {
        bytes
    };
    serde_json::from_slice(&bytes)
        .map_err(|e| error_std(StatusCode::BAD_REQUEST, &format!("Bad JSON body: {e}.")))
}

async fn control_plane(ctx: &Ctx, route: &str, req: Request<hyper::body::Incoming>) -> Resp {
    let chart = &ctx.chart;
    match (req.method().clone(), route) {
        (Method::POST, "codes") => match json_body::<MintRequest>(req).await {
            Ok(mint) => match chart.mint(&mint) {
                Ok(code) => json_response(StatusCode::CREATED, &code),
                Err(
                    e @ (MintError::UnknownClient
                    | MintError::UnregisteredRedirect
                    | MintError::BadProvider),
                ) => error_std(StatusCode::BAD_REQUEST, &e.to_string()),
            },
            Err(resp) => resp,
        },
        (Method::POST, "clock") => {
            #[derive(serde::Deserialize)]
            #[serde(deny_unknown_fields)]
            struct Advance {
                advance_secs: u64,
            }
            match json_body::<Advance>(req).await {
                Ok(a) => {
                    chart.advance_clock(Duration::from_secs(a.advance_secs));
                    json_response(StatusCode::OK, &serde_json::json!({"now": chart.now()}))
                }
                Err(resp) => resp,
            }
        }
        (Method::POST, "faults") => match json_body::<Fault>(req).await {
            Ok(f) if f.times == 0 => {
                error_std(StatusCode::BAD_REQUEST, "`times` must be at least 1.")
            }
            Ok(f)
                if f.kind == FaultKind::Status
                    && f.status
                        .and_then(|s| StatusCode::from_u16(s).ok())
                        .is_none() =>
            {
                error_std(
                    StatusCode::BAD_REQUEST,
                    "A `status` fault needs a valid `status`.",
                )
            }
            Ok(f) => {
                let body = serde_json::to_value(&f).unwrap_or_default();
                chart.add_fault(f);
                json_response(StatusCode::CREATED, &body)
            }
            Err(resp) => resp,
        },
        (Method::DELETE, "faults") => {
            chart.clear_faults();
            json_response(StatusCode::OK, &serde_json::json!({"status": "cleared"}))
        }
        (Method::GET, "journal") => json_response(StatusCode::OK, &chart.journal()),
        (Method::DELETE, "journal") => {
            chart.clear_journal();
            json_response(StatusCode::OK, &serde_json::json!({"status": "cleared"}))
        }
        (Method::GET, "health") => {
            json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        }
        (_, "codes" | "clock") => method_not_allowed("POST"),
        (_, "faults") => method_not_allowed("POST, DELETE"),
        (_, "journal") => method_not_allowed("GET, DELETE"),
        (_, "health") => method_not_allowed("GET"),
        _ => error_std(StatusCode::NOT_FOUND, "No such control-plane route."),
    }
}

/// Builds an HTML answer.
pub(crate) fn html(status: StatusCode, body: String) -> Resp {
    let mut resp = Response::new(MockBody::Full(Some(Bytes::from(body))));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
        ),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Builds a 303 redirect.
pub(crate) fn see_other(location: &str) -> Resp {
    let mut resp = Response::new(MockBody::Full(None));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// Wraps [`handle`] as a hyper service for one connection.
pub fn service(
    ctx: Ctx,
    peer: SocketAddr,
) -> impl hyper::service::Service<
    Request<hyper::body::Incoming>,
    Response = Resp,
    Error = ResetConnection,
    Future = impl Future<Output = Result<Resp, ResetConnection>> + Send,
> + Clone {
    hyper::service::service_fn(move |req| handle(ctx.clone(), peer, req))
}

/// Entry points for the fuzz targets in `fuzz/`; not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    use super::*;

    /// Runs a `POST /auth/token` body through the mock; gives the status and body.
    pub async fn auth_token(chart: Arc<Chart>, body: &[u8]) -> (StatusCode, Bytes) {
        let ctx = Ctx {
            chart,
            admin_token: None,
        };
        let resp = token_grant(&ctx, body, &mut Note::default()).await;
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
            },
            pairs,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MockConfig;

    fn ctx(admin: Option<&str>) -> Ctx {
        Ctx {
            chart: Arc::new(Chart::new(&MockConfig::default())),
            admin_token: admin.map(Arc::from),
        }
    }

    fn req(auth: Option<&str>) -> Request<()> {
        let mut b = Request::builder().uri("/__chart/health");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn the_control_plane_is_open_on_loopback_and_guarded_elsewhere() {
        let loopback: SocketAddr = "127.0.0.1:5000".parse().unwrap();
        let remote: SocketAddr = "192.0.2.7:5000".parse().unwrap();
        assert!(authorize_control(&ctx(None), loopback, &req(None)).is_ok());
        assert!(authorize_control(&ctx(None), "[::1]:1".parse().unwrap(), &req(None)).is_ok());
        let refused = authorize_control(&ctx(None), remote, &req(Some("Bearer x"))).unwrap_err();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        let admin = ctx(Some("admin-token"));
        assert_eq!(
            authorize_control(&admin, remote, &req(None))
                .unwrap_err()
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            authorize_control(&admin, remote, &req(Some("Bearer wrong")))
                .unwrap_err()
                .status(),
            StatusCode::UNAUTHORIZED
        );
        assert!(authorize_control(&admin, remote, &req(Some("Bearer admin-token"))).is_ok());
    }

    #[test]
    fn error_names_follow_the_contract() {
        for (status, name) in [
            (400, "invalid_request_error"),
            (401, "invalid_client_error"),
            (405, "method_not_allowed"),
            (413, "payload_too_large"),
            (415, "unsupported_media_type"),
            (429, "rate_limit_exceeded_error"),
            (500, "server_error"),
        ] {
            assert_eq!(error_name(StatusCode::from_u16(status).unwrap()), name);
        }
    }
}
