//! Building the mock's answers: the body type (which faults can cut), JSON and HTML
//! answers, and Chart's error bodies `{"code", "name", "message"}`.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use serde::Serialize;

/// A response body: whole, or cut off by a fault.
#[derive(Debug)]
pub(crate) enum MockBody {
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
    pub(crate) fn broken(first: Bytes) -> Self {
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
pub(crate) struct ResetConnection;

impl std::fmt::Display for ResetConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("fault injected: connection reset")
    }
}

impl std::error::Error for ResetConnection {}

/// An answer of the mock.
pub(crate) type Resp = Response<MockBody>;

pub(crate) fn json_response(status: StatusCode, body: &impl Serialize) -> Resp {
    json_bytes(
        status,
        Bytes::from(serde_json::to_vec(body).unwrap_or_default()),
    )
}

/// An answer whose body is JSON already.
pub(crate) fn json_bytes(status: StatusCode, body: Bytes) -> Resp {
    let mut resp = Response::new(MockBody::Full(Some(body)));
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

pub(crate) fn error(status: StatusCode, name: &str, message: &str) -> Resp {
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

pub(crate) fn error_std(status: StatusCode, message: &str) -> Resp {
    error(status, error_name(status), message)
}

pub(crate) fn with_retry_after(mut resp: Resp, secs: u64) -> Resp {
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    resp
}

pub(crate) fn method_not_allowed(allow: &'static str) -> Resp {
    let mut resp = error_std(
        StatusCode::METHOD_NOT_ALLOWED,
        &format!("Use {allow} for this endpoint."),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

/// Builds an HTML answer that no page may frame (`frame-ancestors 'none'`, against
/// clickjacking); the embedded Connect page sets its own.
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
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             frame-ancestors 'none'",
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
