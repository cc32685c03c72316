//! Dispatch: every request passes here. Faults are taken and applied, the request is
//! routed to the Chart API, the Connect page or the control plane, journaled without
//! its secrets, and answered with a `Chart-Request-Id`.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use crate::config::ClientIx;
use crate::model::{Fault, FaultKind, Record};
use crate::report::{Endpoint, Observation};
use crate::request::{Ctx, Note};
use crate::response::{MockBody, ResetConnection, Resp, error_name, error_std, with_retry_after};
use crate::{api, connect, control};

/// Handles one request. `Err` drops the connection without an answer.
pub(crate) async fn handle(
    ctx: std::sync::Arc<Ctx>,
    peer: SocketAddr,
    req: Request<hyper::body::Incoming>,
) -> Result<Resp, ResetConnection> {
    let started = std::time::Instant::now();
    let request_id = uuid::Uuid::new_v4();
    let method = req.method().clone();
    let path = journal_path(req.uri().path());
    let mut note = Note::default();
    let endpoint = match &*path {
        "/auth/token" => Some(Endpoint::Token),
        "/introspect" => Some(Endpoint::Introspect),
        "/disconnect" => Some(Endpoint::Disconnect),
        _ => None,
    };
    let api_version = req.headers().contains_key("chart-api-version");
    let url_secret = match endpoint {
        Some(_) => secret_in_url(&ctx, req.uri().query().unwrap_or("")),
        None => None,
    };
    let arrived_ms = ctx.chart.now_ms();
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
    let outcome = match note.outcome.take() {
        Some(outcome) => Cow::Owned(outcome),
        None => outcome_of(&resp),
    };
    let mut id_buf = [0; uuid::fmt::Hyphenated::LENGTH];
    let request_id_text = &*request_id.hyphenated().encode_lower(&mut id_buf);
    // The path only: a query may carry a code or a state.
    if ctx.log.take() {
        tracing::info!(
            %method,
            path = %path,
            status,
            outcome = %outcome,
            fault = fault.as_ref().map(|f| f.kind.as_str()).unwrap_or("none"),
            latency_ms = started.elapsed().as_secs_f64() * 1000.0,
            request_id = %request_id_text,
            "request"
        );
    }
    let observation = endpoint.map(|endpoint| {
        let retry_after = resp
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Observation {
            request_id,
            at_ms: arrived_ms,
            endpoint: Some(endpoint),
            client: note.client.or(url_secret.flatten()),
            status,
            retry_after,
            cut: matches!(
                fault.as_ref().map(|f| f.kind),
                Some(
                    FaultKind::Reset
                        | FaultKind::Empty
                        | FaultKind::Truncated
                        | FaultKind::MalformedJson
                )
            ),
            api_version,
            secret_in_url: url_secret.is_some(),
            json_body: note.json_body,
            redirect_uri_sent: note.redirect_uri_sent,
            code_id: note.code_id,
            code_redirect_flow: note.code_redirect_flow,
            issued_account: note.issued_account,
            disconnected_account: note.disconnected_account,
        }
    });
    let record = Record {
        request_id,
        at: ctx.chart.now(),
        method,
        path,
        status,
        outcome,
        client: note.client,
        code_id: note.code_id,
        fault: fault.as_ref().map(|f| f.kind),
        metadata: note.metadata,
    };
    ctx.chart.record(record, observation);

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
        HeaderValue::from_str(request_id_text).unwrap_or(HeaderValue::from_static("unknown")),
    );
    Ok(resp)
}

/// The path as the journal keeps it: the routes the mock serves without a copy.
fn journal_path(path: &str) -> Cow<'static, str> {
    const ROUTES: [&str; 5] = ["/auth/token", "/introspect", "/disconnect", "/connect", "/"];
    match ROUTES.iter().find(|r| **r == path) {
        Some(route) => Cow::Borrowed(route),
        None => Cow::Owned(path.to_owned()),
    }
}

/// Whether a query string carries a secret: a parameter named for one, or a value the
/// mock knows as a client secret, a code or a token. `Some(owner)` when it does, with
/// the client it belongs to when that is known.
fn secret_in_url(ctx: &Ctx, query: &str) -> Option<Option<ClientIx>> {
    const SECRET_NAMES: [&str; 4] = ["client_secret", "code", "access_token", "token"];
    let mut found = false;
    let mut owner = None;
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        if name == "client_id"
            && let Some(client) = ctx.chart.client_index(&value)
        {
            owner = Some(client);
            continue;
        }
        if SECRET_NAMES.contains(&name.as_ref()) || ctx.chart.is_known_secret(&value) {
            found = true;
            owner = owner.or_else(|| ctx.chart.owner_of(&value));
        }
    }
    found.then_some(owner)
}

/// `success`, or the error `name` of the answer's body.
fn outcome_of(resp: &Resp) -> Cow<'static, str> {
    if resp.status().is_success() || resp.status().is_redirection() {
        return Cow::Borrowed("success");
    }
    #[derive(serde::Deserialize)]
    struct Named<'a> {
        name: &'a str,
    }
    match resp.body() {
        MockBody::Full(Some(body)) => serde_json::from_slice::<Named<'_>>(body)
            .map(|n| Cow::Owned(n.name.to_owned()))
            .ok(),
        _ => None,
    }
    .unwrap_or_else(|| Cow::Borrowed(error_name(resp.status())))
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
        if let Err(resp) = control::authorize_control(ctx, peer, &req) {
            return resp;
        }
        return control::control_plane(ctx, &control, req).await;
    }
    match path {
        "/auth/token" => api::token(ctx, req, note).await,
        "/introspect" => api::bearer_endpoint(ctx, req, Method::GET, note),
        "/disconnect" => api::bearer_endpoint(ctx, req, Method::POST, note),
        // `/` too: the React SDK's dev mode loads http://localhost:3000/?... Without a
        // query, `/` is the landing page.
        "/" if req.method() == Method::GET && req.uri().query().is_none_or(str::is_empty) => {
            connect::landing(ctx)
        }
        "/connect" | "/" => connect::page(ctx, req).await,
        _ => error_std(StatusCode::NOT_FOUND, "No such endpoint."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
