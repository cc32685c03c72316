//! The control plane under `/__chart/`: minting codes, moving the clock, injecting
//! faults, reading the journal. Open on loopback, guarded by the admin token elsewhere.

// Handlers return the error answer itself as `Err`; it is built once per request and
// boxing it would only add noise.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;
use std::time::Duration;

use http::{Method, Request, StatusCode};
use subtle::ConstantTimeEq;

use crate::model::{
    Fault, FaultKind, MAX_ADVANCE_SECS, MAX_RETRY_AFTER_SECS, MintError, MintRequest,
};
use crate::request::{Ctx, bearer, json_body};
use crate::response::{
    Resp, error, error_std, html, json_bytes, json_response, method_not_allowed,
};

/// The OpenAPI 3.1 document of the mocked API and of this control plane.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Lets a control-plane request through, or answers why not.
pub(crate) fn authorize_control<B>(
    ctx: &Ctx,
    peer: SocketAddr,
    req: &Request<B>,
) -> Result<(), Resp> {
    check_host_and_origin(ctx, req)?;
    // `::ffff:127.0.0.1` is loopback too: a mock bound to `[::]` sees IPv4 peers so.
    if peer.ip().to_canonical().is_loopback() {
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

/// Refuses what a web page could send: a `Host` that is not an address the mock serves
/// (DNS rebinding), or a browser `Origin` other than the mock's own.
fn check_host_and_origin<B>(ctx: &Ctx, req: &Request<B>) -> Result<(), Resp> {
    let refuse = |message: &str| Err(error_std(StatusCode::FORBIDDEN, message));
    let host = match req.headers().get(http::header::HOST) {
        Some(value) => Some(value.to_str().unwrap_or("")),
        None => req.uri().authority().map(|a| a.as_str()),
    };
    let Some(host) = host else {
        // No Host at all (HTTP/1.0 tools): no browser sends that.
        return Ok(());
    };
    if !served_host(ctx, host) {
        return refuse(
            "The Host header does not name this mock: the control plane answers only \
             to its own address (this stops DNS rebinding).",
        );
    }
    if let Some(origin) = req.headers().get(http::header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let own = ["http://", "https://"].iter().any(|scheme| {
            origin
                .strip_prefix(scheme)
                .is_some_and(|o| o.eq_ignore_ascii_case(host))
        });
        if !own {
            return refuse("The control plane does not answer other web origins.");
        }
    }
    Ok(())
}

/// Whether a `Host` value names the mock: an IP literal, `localhost` or the name it was
/// started as, with the port it serves.
fn served_host(ctx: &Ctx, host: &str) -> bool {
    let Ok(authority) = host.parse::<http::uri::Authority>() else {
        return false;
    };
    let port_ok = match authority.port_u16() {
        Some(port) => port == ctx.served.port,
        None => matches!(ctx.served.port, 80 | 443),
    };
    let name = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    port_ok
        && (name.parse::<std::net::IpAddr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || ctx
                .served
                .host_name
                .as_deref()
                .is_some_and(|n| n.eq_ignore_ascii_case(name)))
}

/// Answers a control-plane request (`route` is the path after `/__chart/`).
pub(crate) async fn control_plane(
    ctx: &Ctx,
    route: &str,
    req: Request<hyper::body::Incoming>,
) -> Resp {
    let chart = &ctx.chart;
    match (req.method().clone(), route) {
        (Method::POST, "codes") => match json_body::<MintRequest>(req).await {
            Ok(mint) => match chart.mint(&mint) {
                Ok(code) => json_response(StatusCode::CREATED, &code),
                Err(
                    e @ (MintError::UnknownClient
                    | MintError::UnregisteredRedirect
                    | MintError::BadProvider
                    | MintError::BadTaxpayer
                    | MintError::BadMetadata),
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
                Ok(a) if a.advance_secs > MAX_ADVANCE_SECS => error_std(
                    StatusCode::BAD_REQUEST,
                    "`advance_secs` must be at most 315360000 (ten years).",
                ),
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
            Ok(f) if f.retry_after.is_some_and(|s| s > MAX_RETRY_AFTER_SECS) => error_std(
                StatusCode::BAD_REQUEST,
                "`retry_after` must be at most 86400 (a day).",
            ),
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
        (Method::GET, "report") => {
            json_response(StatusCode::OK, &chart.report(kept(&req).as_ref()))
        }
        (Method::GET, "report.html") => {
            html(StatusCode::OK, chart.report(kept(&req).as_ref()).to_html())
        }
        (Method::DELETE, "report") => {
            chart.clear_report();
            json_response(StatusCode::OK, &serde_json::json!({"status": "cleared"}))
        }
        (Method::GET, "openapi.json") => json_bytes(
            StatusCode::OK,
            bytes::Bytes::from_static(OPENAPI.as_bytes()),
        ),
        (Method::GET, "health") => {
            json_response(StatusCode::OK, &serde_json::json!({"status": "ok"}))
        }
        (_, "codes" | "clock") => method_not_allowed("POST"),
        (_, "faults") => method_not_allowed("POST, DELETE"),
        (_, "journal") => method_not_allowed("GET, DELETE"),
        (_, "health" | "report.html" | "openapi.json") => method_not_allowed("GET"),
        (_, "report") => method_not_allowed("GET, DELETE"),
        _ => error_std(StatusCode::NOT_FOUND, "No such control-plane route."),
    }
}

/// The `kept` query parameter: account ids, comma-separated, whose tokens the clients
/// still hold.
fn kept<B>(req: &Request<B>) -> Option<std::collections::HashSet<String>> {
    form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .find(|(name, _)| name == "kept")
        .map(|(_, list)| {
            list.split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect()
        })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::MockConfig;
    use crate::model::Chart;

    fn ctx(admin: Option<&str>) -> Ctx {
        Ctx {
            chart: Arc::new(Chart::new(&MockConfig::default())),
            admin_token: admin.map(Arc::from),
            served: crate::request::Served::default(),
            log: Default::default(),
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
    fn kept_lists_the_accounts_of_its_query_parameter() {
        let at = |uri: &str| kept(&Request::builder().uri(uri).body(()).unwrap());
        assert_eq!(at("/__chart/report"), None);
        assert_eq!(at("/__chart/report?other=a"), None);
        let listed = at("/__chart/report?x=1&kept=a,%20b,,c").unwrap();
        assert_eq!(
            listed,
            ["a", "b", "c"].map(String::from).into_iter().collect()
        );
        assert_eq!(at("/__chart/report?kept="), Some(Default::default()));
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
}
