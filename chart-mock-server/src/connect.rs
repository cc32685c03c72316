//! The Connect page: plain server-rendered HTML where the user picks a provider and a
//! sandbox outcome. Submitting it untouched connects a `chart-sandbox` account.
//!
//! - Redirect flow: `303` to `redirect_uri?code=..&state=..` (or `?error=access_denied`).
//! - Embedded flow (`app_type=spa`): a `postMessage` of
//!   `{name: "chart-auth-message", kind, code, state}` to the parent, aimed at
//!   `sdk_host_url`.
//!
//! An unknown client or unregistered `redirect_uri` gets a 400 page, never a redirect.

use std::collections::HashMap;

use http::{Method, Request, StatusCode};

use crate::model::{MintRequest, PROVIDERS, Scenario};
use crate::request::{Ctx, read_body};
use crate::response::{Resp, html, see_other};

/// The Connect page's parameters, from the query (GET) or the form (POST).
#[derive(Debug, Default)]
struct Params {
    client_id: String,
    redirect_uri: Option<String>,
    state: String,
    spa: bool,
    sdk_host_url: Option<String>,
    provider_id: String,
    outcome: Scenario,
}

fn parse(pairs: &[u8]) -> Result<Params, String> {
    let map: HashMap<String, String> = form_urlencoded::parse(pairs).into_owned().collect();
    let get = |k: &str| map.get(k).filter(|v| !v.is_empty()).cloned();
    let client_id = get("client_id").ok_or("The client_id parameter is missing.")?;
    let state = get("state").unwrap_or_default();
    if state.len() > 4096 {
        return Err("The state parameter is too long.".into());
    }
    let spa = get("app_type").as_deref() == Some("spa");
    let sdk_host_url = get("sdk_host_url");
    if spa {
        let origin = sdk_host_url
            .as_deref()
            .ok_or("The embedded flow needs sdk_host_url.")?;
        if !(origin.starts_with("http://") || origin.starts_with("https://")) {
            return Err("sdk_host_url must be an http(s) origin.".into());
        }
    }
    let provider_id = get("provider_id").unwrap_or_else(|| "chart-sandbox".into());
    let outcome = match get("outcome") {
        None => Scenario::Success,
        Some(o) => Scenario::parse(&o).ok_or("Unknown outcome.")?,
    };
    Ok(Params {
        client_id,
        redirect_uri: get("redirect_uri"),
        state,
        spa,
        sdk_host_url,
        provider_id,
        outcome,
    })
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// JSON for a `<script>` block: `<` is escaped so no value can close the script.
fn script_json(value: &serde_json::Value) -> String {
    value
        .to_string()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

const STYLE: &str = "
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;background:#f4f6fb;color:#1d2433;margin:0;display:flex;min-height:100vh;align-items:center;justify-content:center}
main{background:#fff;border-radius:14px;box-shadow:0 8px 30px rgba(20,30,60,.12);padding:32px 36px;width:min(420px,92vw)}
h1{font-size:1.3rem;margin:0 0 4px}p.sub{color:#5b6478;margin:0 0 22px;font-size:.92rem}
label{display:block;font-weight:600;font-size:.85rem;margin:14px 0 6px}
select,button{width:100%;font-size:1rem;padding:10px 12px;border-radius:8px;border:1px solid #cfd5e3;background:#fff}
button{background:#2f5bea;color:#fff;border:0;font-weight:600;margin-top:24px;cursor:pointer}
button:hover{background:#2247c4}.badge{display:inline-block;background:#fff4d6;color:#7a5600;border-radius:6px;padding:2px 8px;font-size:.75rem;font-weight:600;margin-bottom:12px}
.err{color:#b42318}";

fn page_shell(title: &str, inner: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{inner}</main></body></html>",
        esc(title)
    )
}

fn error_page(message: &str) -> Resp {
    html(
        StatusCode::BAD_REQUEST,
        page_shell(
            "Chart Connect: error",
            &format!(
                "<h1>Chart Connect</h1><p class=err id=error>{}</p>",
                esc(message)
            ),
        ),
    )
}

/// Checks the client and, for the Redirect flow, that `redirect_uri` is registered.
fn check(ctx: &Ctx, p: &Params) -> Result<(), String> {
    let client = ctx.chart.client(&p.client_id).ok_or("Unknown client_id.")?;
    if !p.spa {
        let uri = p
            .redirect_uri
            .as_deref()
            .ok_or("The redirect_uri parameter is missing.")?;
        if !client.redirect_uris.iter().any(|r| r == uri) {
            return Err("This redirect_uri is not registered for the client.".into());
        }
    }
    Ok(())
}

/// Parses and checks a Connect form or query, as the page does before answering.
pub(crate) fn check_form(ctx: &Ctx, pairs: &[u8]) -> Result<(), String> {
    parse(pairs).and_then(|p| check(ctx, &p))
}

/// `GET /connect` shows the form; `POST /connect` submits it.
pub(crate) async fn page(ctx: &Ctx, req: Request<hyper::body::Incoming>) -> Resp {
    match *req.method() {
        Method::GET => {
            let query = req.uri().query().unwrap_or("").as_bytes().to_vec();
            match parse(&query).and_then(|p| check(ctx, &p).map(|()| p)) {
                Ok(p) => form(&p),
                Err(e) => error_page(&e),
            }
        }
        Method::POST => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            match parse(&body).and_then(|p| check(ctx, &p).map(|()| p)) {
                Ok(p) => submit(ctx, &p),
                Err(e) => error_page(&e),
            }
        }
        _ => {
            let mut resp = error_page("Use GET or POST.");
            *resp.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
            resp.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, POST"),
            );
            resp
        }
    }
}

fn form(p: &Params) -> Resp {
    let hidden = |name: &str, value: Option<&str>| {
        value.map_or(String::new(), |v| {
            format!("<input type=hidden name={name} value=\"{}\">", esc(v))
        })
    };
    let providers: String = PROVIDERS
        .iter()
        .map(|(id, label)| {
            let selected = if *id == "chart-sandbox" {
                " selected"
            } else {
                ""
            };
            format!("<option value=\"{id}\"{selected}>{}</option>", esc(label))
        })
        .collect();
    let outcomes: String = Scenario::ALL
        .iter()
        .map(|s| {
            let label = match s {
                Scenario::Success => "Success",
                Scenario::ServerError => "Exchange fails with a server error",
                Scenario::RateLimited => "Exchange is rate limited once",
                Scenario::Slow => "Exchange is slow",
                Scenario::Denied => "User denies access",
            };
            let selected = if *s == Scenario::Success {
                " selected"
            } else {
                ""
            };
            format!(
                "<option value=\"{}\"{selected}>{label}</option>",
                s.as_str()
            )
        })
        .collect();
    let inner = format!(
        "<span class=badge>SANDBOX · mock</span><h1>Connect your tax account</h1>\
         <p class=sub>Pick a provider and what the sandbox should do.</p>\
         <form method=post action=\"/connect\" id=connect-form>\
         {}{}{}{}{}\
         <label for=provider_id>Tax provider</label><select id=provider_id name=provider_id>{providers}</select>\
         <label for=outcome>Sandbox outcome</label><select id=outcome name=outcome>{outcomes}</select>\
         <button type=submit id=connect>Connect</button></form>",
        hidden("client_id", Some(&p.client_id)),
        hidden("redirect_uri", p.redirect_uri.as_deref()),
        hidden("state", Some(&p.state)),
        hidden("app_type", p.spa.then_some("spa")),
        hidden("sdk_host_url", p.sdk_host_url.as_deref()),
    );
    html(StatusCode::OK, page_shell("Chart Connect (mock)", &inner))
}

fn with_query(base: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    let sep = if base.contains('?') { '&' } else { '?' };
    format!("{base}{sep}{query}")
}

fn submit(ctx: &Ctx, p: &Params) -> Resp {
    let code = if p.outcome == Scenario::Denied {
        None
    } else {
        let mint = MintRequest {
            client_id: p.client_id.clone(),
            provider_id: Some(p.provider_id.clone()),
            redirect_uri: if p.spa { None } else { p.redirect_uri.clone() },
            scenario: Some(p.outcome),
        };
        match ctx.chart.mint(&mint) {
            Ok(m) => Some(m.code),
            Err(e) => return error_page(&e.to_string()),
        }
    };
    if !p.spa {
        let uri = p.redirect_uri.as_deref().unwrap_or_default();
        let location = match &code {
            Some(code) => with_query(uri, &[("code", code), ("state", &p.state)]),
            None => with_query(uri, &[("error", "access_denied"), ("state", &p.state)]),
        };
        return see_other(&location);
    }
    let message = match &code {
        Some(code) => {
            serde_json::json!({"name": "chart-auth-message", "kind": "success", "code": code, "state": p.state})
        }
        None => {
            serde_json::json!({"name": "chart-auth-message", "kind": "error", "error": "access_denied", "state": p.state})
        }
    };
    let target = serde_json::Value::from(p.sdk_host_url.clone().unwrap_or_default());
    let inner = format!(
        "<h1>Connected</h1><p class=sub id=done>You can close this window.</p>\
         <script>window.parent.postMessage({}, {});</script>",
        script_json(&message),
        script_json(&target),
    );
    html(StatusCode::OK, page_shell("Chart Connect (mock)", &inner))
}
