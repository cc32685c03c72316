//! The Connect page: plain server-rendered HTML where the user picks a provider and a
//! sandbox outcome. Submitting it untouched connects a `chart-sandbox` account.
//!
//! - Redirect flow: `303` to `redirect_uri?code=..&state=..` (or `?error=access_denied`).
//! - Embedded flow (`app_type=spa`): a `postMessage` to the parent, aimed at
//!   `sdk_host_url` and only if that origin is allowed for the client, of every kind
//!   Chart's React SDK handles: `{name: "chart-auth-message", kind: "success", code,
//!   state}`, `{kind: "error", error}` (a denied outcome, or bad parameters) and
//!   `{kind: "closed"}` (the Close control, or Escape).
//!
//! The page is served at `/` too: the React SDK's dev mode (`chartDevMode: true`) loads
//! `http://localhost:3000/?client_id=..&app_type=spa&...`. Its options mean something
//! here: `providers` limits and orders the provider list, `flow` is shown, `metadata`
//! (JSON) is kept with the code and shown in the journal, `overlay` sets the backdrop
//! colour (validated as a CSS colour), `session_settings_id` is accepted. Unknown
//! parameters are ignored, as Chart's page does.
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
    /// The embedding page's origin (`scheme://host[:port]`), when well formed.
    sdk_host_url: Option<String>,
    provider_id: String,
    outcome: Scenario,
    /// The providers offered, in order (`providers=a,b`); all when absent.
    providers: Option<Vec<String>>,
    flow: Option<String>,
    metadata: Option<String>,
    session_settings_id: Option<String>,
    overlay: Option<String>,
}

/// The longest `state` or other free-form value accepted.
const MAX_PARAM_LEN: usize = 4096;

// `metadata` is kept with a code: at most `MAX_METADATA_LEN` bytes, so that codes minted
// by anyone who can load the page cost little memory each.
use crate::model::MAX_METADATA_LEN;

/// An `http(s)://host[:port]` origin, normalized; `None` for anything else.
fn origin_of(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let scheme = uri.scheme_str().filter(|s| *s == "http" || *s == "https")?;
    let authority = uri.authority()?;
    // `http::Uri` keeps user info and a port such as `5173$x` in the authority: only a
    // bare host and a numeric port make an origin a browser would accept.
    let canonical = match authority.port_u16() {
        Some(port) => format!("{}:{port}", authority.host()),
        None => authority.host().to_owned(),
    };
    if authority.host().is_empty() || !authority.as_str().eq_ignore_ascii_case(&canonical) {
        return None;
    }
    Some(format!("{scheme}://{}", canonical.to_ascii_lowercase()))
}

/// A CSS colour the page may use as its backdrop: `#rgb`, `#rrggbb`, `#rrggbbaa`,
/// `rgb(..)`/`rgba(..)` of numbers, or a colour keyword. Nothing else reaches the CSS.
fn css_colour(value: &str) -> Option<String> {
    let v = value.trim();
    let hex =
        |h: &str| matches!(h.len(), 3 | 4 | 6 | 8) && h.chars().all(|c| c.is_ascii_hexdigit());
    let ok = if let Some(h) = v.strip_prefix('#') {
        hex(h)
    } else if let Some(args) = v
        .strip_prefix("rgba(")
        .or_else(|| v.strip_prefix("rgb("))
        .and_then(|a| a.strip_suffix(')'))
    {
        let parts: Vec<&str> = args.split(',').map(str::trim).collect();
        matches!(parts.len(), 3 | 4)
            && parts.iter().all(|p| {
                !p.is_empty()
                    && p.chars()
                        .all(|c| c.is_ascii_digit() || c == '.' || c == '%')
            })
    } else {
        !v.is_empty() && v.len() <= 32 && v.chars().all(|c| c.is_ascii_alphabetic())
    };
    ok.then(|| v.to_owned())
}

fn parse(pairs: &[u8]) -> Result<Params, String> {
    let map: HashMap<String, String> = form_urlencoded::parse(pairs).into_owned().collect();
    let get = |k: &str| map.get(k).filter(|v| !v.is_empty()).cloned();
    let spa = get("app_type").as_deref() == Some("spa");
    // The origin first, so that an embedded page can report every later error.
    let sdk_host_url = get("sdk_host_url").as_deref().and_then(origin_of);
    let mut p = Params {
        spa,
        sdk_host_url,
        ..Params::default()
    };
    p.client_id = get("client_id").ok_or("The client_id parameter is missing.")?;
    p.state = get("state").unwrap_or_default();
    for (name, value) in [("state", &p.state)] {
        if value.len() > MAX_PARAM_LEN {
            return Err(format!("The {name} parameter is too long."));
        }
    }
    if spa && p.sdk_host_url.is_none() {
        return Err("The embedded flow needs sdk_host_url, an http(s) origin.".into());
    }
    p.provider_id = get("provider_id").unwrap_or_else(|| "chart-sandbox".into());
    p.outcome = match get("outcome") {
        None => Scenario::Success,
        Some(o) => Scenario::parse(&o).ok_or("Unknown outcome.")?,
    };
    p.redirect_uri = get("redirect_uri");
    p.providers = get("providers").map(|list| {
        let mut seen = Vec::new();
        for id in list.split(',').map(str::trim) {
            if PROVIDERS.iter().any(|(known, _)| *known == id) && !seen.iter().any(|s| s == id) {
                seen.push(id.to_owned());
            }
        }
        seen
    });
    if p.providers.as_ref().is_some_and(Vec::is_empty) {
        return Err("None of the requested providers is known.".into());
    }
    p.flow = get("flow");
    if let Some(flow) = &p.flow
        && (flow.len() > 64
            || !flow
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'))
    {
        return Err("The flow parameter is not a flow name.".into());
    }
    p.metadata = get("metadata");
    if let Some(m) = &p.metadata
        && (m.len() > MAX_METADATA_LEN
            || !serde_json::from_str::<serde_json::Value>(m).is_ok_and(|v| v.is_object()))
    {
        return Err("The metadata parameter must be a JSON object of at most 256 bytes.".into());
    }
    p.session_settings_id = get("session_settings_id").filter(|s| s.len() <= 256);
    p.overlay = match get("overlay") {
        None => None,
        Some(o) => Some(css_colour(&o).ok_or("The overlay parameter must be a CSS colour.")?),
    };
    Ok(p)
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
button:hover{background:#2247c4}button.secondary{background:#fff;color:#1d2433;border:1px solid #cfd5e3;margin-top:10px}.badge{display:inline-block;background:#fff4d6;color:#7a5600;border-radius:6px;padding:2px 8px;font-size:.75rem;font-weight:600;margin-bottom:12px}
.err{color:#b42318}";

fn page_shell(title: &str, inner: &str) -> String {
    format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width,initial-scale=1\">\
         <title>{}</title><style>{STYLE}</style></head><body><main>{inner}</main></body></html>",
        esc(title)
    )
}

/// A refused page. In the embedded flow it also posts an `error` message, so the
/// SDK's `onError` fires; the message carries no code, so any origin may see it, and any
/// page may frame it (it must load in the frame to post). Other refusals may not be
/// framed.
fn refusal(pairs: &[u8], message: &str) -> Resp {
    let map: HashMap<String, String> = form_urlencoded::parse(pairs).into_owned().collect();
    let spa = map.get("app_type").is_some_and(|v| v == "spa");
    let script = match map.get("sdk_host_url").and_then(|u| origin_of(u)) {
        Some(origin) if spa => {
            let post = serde_json::json!({"name": "chart-auth-message", "kind": "error", "error": message});
            format!(
                "<script>window.parent.postMessage({}, {});</script>",
                script_json(&post),
                script_json(&serde_json::Value::from(origin)),
            )
        }
        _ => String::new(),
    };
    let mut resp = html(
        StatusCode::BAD_REQUEST,
        page_shell(
            "Chart Connect: error",
            &format!(
                "<h1>Chart Connect</h1><p class=err id=error>{}</p>{script}",
                esc(message)
            ),
        ),
    );
    if !script.is_empty() {
        resp.headers_mut().insert(
            http::header::CONTENT_SECURITY_POLICY,
            http::HeaderValue::from_static(
                "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'",
            ),
        );
    }
    resp
}

/// A refused page, with no message to post.
fn error_page(message: &str) -> Resp {
    refusal(b"", message)
}

/// Checks the client and, for the Redirect flow, that `redirect_uri` is registered; for
/// the embedded flow, that the embedding origin is allowed for the client.
fn check(ctx: &Ctx, p: &Params) -> Result<(), String> {
    let client = ctx.chart.client(&p.client_id).ok_or("Unknown client_id.")?;
    if p.spa {
        let origin = p.sdk_host_url.as_deref().unwrap_or_default();
        if !client.allows_origin(origin) {
            return Err("This sdk_host_url is not an allowed origin for the client.".into());
        }
    } else {
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

/// `GET /` without a query: what the mock is, its clients, and links to the Connect
/// page in both flows, the conformance report and the OpenAPI document.
pub(crate) fn landing(ctx: &Ctx) -> Resp {
    let mut clients = String::new();
    for client in ctx.chart.clients() {
        let id = &client.client_id;
        let secret = if ctx.chart.sandbox_only() {
            // The sandbox client's secret is public and documented; a configured one
            // is never shown.
            format!(
                "<br>client_secret: <code>{}</code>",
                esc(&client.client_secret)
            )
        } else {
            String::new()
        };
        let mut links = Vec::new();
        if let Some(uri) = client.redirect_uris.first() {
            let query = with_query(
                "/connect",
                &[("client_id", id), ("redirect_uri", uri), ("state", "demo")],
            );
            links.push(format!("<a href=\"{}\">Redirect flow</a>", esc(&query)));
        }
        let embedded = with_query(
            "/connect",
            &[
                ("client_id", id),
                ("app_type", "spa"),
                ("sdk_host_url", "http://localhost:3000"),
                ("state", "demo"),
            ],
        );
        links.push(format!(
            "<a href=\"{}\">Embedded flow (as framed by http://localhost:3000)</a>",
            esc(&embedded)
        ));
        clients.push_str(&format!(
            "<li>client_id: <code>{}</code>{secret}<br>{}</li>",
            esc(id),
            links.join(" · ")
        ));
    }
    let inner = format!(
        "<span class=badge>MOCK</span><h1>chart-mock-server</h1>\
         <p class=sub>A mock of Chart's API for building and testing without Chart's sandbox: \
         <code>POST /auth/token</code>, <code>GET /introspect</code>, <code>POST /disconnect</code> \
         and the Connect page.</p><h2>Clients</h2><ul>{clients}</ul><h2>Tools</h2><ul>\
         <li><a href=\"/__chart/report.html\">Conformance report</a> of the clients under test</li>\
         <li><a href=\"/__chart/openapi.json\">OpenAPI document</a> of the API and the control plane</li>\
         </ul><p class=sub>The control plane (<code>/__chart/</code>) is open from this machine \
         only; other peers need the admin token.</p>"
    );
    html(StatusCode::OK, page_shell("chart-mock-server", &inner))
}

/// `GET /connect` shows the form; `POST /connect` submits it.
pub(crate) async fn page(ctx: &Ctx, req: Request<hyper::body::Incoming>) -> Resp {
    match *req.method() {
        Method::GET => {
            let query = req.uri().query().unwrap_or("").as_bytes().to_vec();
            match parse(&query).and_then(|p| check(ctx, &p).map(|()| p)) {
                Ok(p) => form(&p),
                Err(e) => refusal(&query, &e),
            }
        }
        Method::POST => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            match parse(&body).and_then(|p| check(ctx, &p).map(|()| p)) {
                Ok(p) => submit(ctx, &p),
                Err(e) => refusal(&body, &e),
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
    let offered: Vec<(&str, &str)> = match &p.providers {
        Some(ids) => ids
            .iter()
            .filter_map(|id| PROVIDERS.iter().find(|(known, _)| known == id).copied())
            .collect(),
        None => PROVIDERS.to_vec(),
    };
    let default = if offered.iter().any(|(id, _)| *id == "chart-sandbox") {
        "chart-sandbox"
    } else {
        offered.first().map_or("chart-sandbox", |(id, _)| id)
    };
    let providers: String = offered
        .iter()
        .map(|(id, label)| {
            let selected = if *id == default { " selected" } else { "" };
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
    let flow = p.flow.as_deref().map_or(String::new(), |f| {
        format!("<p class=sub id=flow>Flow: <b>{}</b></p>", esc(f))
    });
    // The embedded flow can be closed: a Close control and Escape post `closed`.
    let (close, close_script) = match (&p.spa, &p.sdk_host_url) {
        (true, Some(origin)) => {
            let post = serde_json::json!({"name": "chart-auth-message", "kind": "closed"});
            (
                "<button type=button id=close class=secondary aria-label=\"Close Chart Connect\">Close</button>"
                    .to_owned(),
                format!(
                    "<script>(function(){{var m={},o={};function c(){{window.parent.postMessage(m,o);}}\
                     document.getElementById('close').addEventListener('click',c);\
                     document.addEventListener('keydown',function(e){{if(e.key==='Escape')c();}});}})();</script>",
                    script_json(&post),
                    script_json(&serde_json::Value::from(origin.as_str())),
                ),
            )
        }
        _ => (String::new(), String::new()),
    };
    let inner = format!(
        "<span class=badge>SANDBOX · mock</span><h1>Connect your tax account</h1>\
         <p class=sub>Pick a provider and what the sandbox should do.</p>{flow}\
         <form method=post action=\"/connect\" id=connect-form>\
         {}{}{}{}{}{}{}{}{}\
         <label for=provider_id>Tax provider</label><select id=provider_id name=provider_id>{providers}</select>\
         <label for=outcome>Sandbox outcome</label><select id=outcome name=outcome>{outcomes}</select>\
         <button type=submit id=connect>Connect</button>{close}</form>{close_script}",
        hidden("client_id", Some(&p.client_id)),
        hidden("redirect_uri", p.redirect_uri.as_deref()),
        hidden("state", Some(&p.state)),
        hidden("app_type", p.spa.then_some("spa")),
        hidden("sdk_host_url", p.sdk_host_url.as_deref()),
        hidden("metadata", p.metadata.as_deref()),
        hidden("flow", p.flow.as_deref()),
        hidden("session_settings_id", p.session_settings_id.as_deref()),
        hidden("overlay", p.overlay.as_deref()),
    );
    let mut page = page_shell("Chart Connect (mock)", &inner);
    if let Some(colour) = &p.overlay {
        // Validated by `css_colour`: only a colour can reach this rule.
        page = page.replace("</style>", &format!("body{{background:{colour}}}</style>"));
    }
    framed_by(html(StatusCode::OK, page), p)
}

/// In the embedded flow, only the embedding origin may frame the page.
fn framed_by(mut resp: Resp, p: &Params) -> Resp {
    if let (true, Some(origin)) = (p.spa, &p.sdk_host_url)
        && let Ok(csp) = http::HeaderValue::from_str(&format!(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
             form-action 'self'; frame-ancestors {origin}"
        ))
    {
        resp.headers_mut()
            .insert(http::header::CONTENT_SECURITY_POLICY, csp);
    }
    resp
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
            metadata: p.metadata.clone(),
            taxpayer_id: None,
        };
        match ctx.chart.mint_for_page(&mint) {
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
    framed_by(
        html(StatusCode::OK, page_shell("Chart Connect (mock)", &inner)),
        p,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_css_colours_reach_the_page() {
        for good in [
            "#abc",
            "#abcd",
            "#a1b2c3",
            "#a1b2c3d4",
            " #fff ",
            "rgb(1,2,3)",
            "rgba(1, 2, 3, 0.5)",
            "rgb(10%,20%,30%)",
            "black",
            "rebeccapurple",
        ] {
            assert_eq!(css_colour(good).as_deref(), Some(good.trim()), "{good:?}");
        }
        let keyword_at_cap = "a".repeat(32);
        assert!(css_colour(&keyword_at_cap).is_some());
        for bad in [
            "#ab",
            "#abcde",
            "#abcdefg",
            "#ggg",
            "rgb(1,2)",
            "rgb(1,2,3,4,5)",
            "rgb(1,,3)",
            "rgb(1,2,3",
            "rgb(1;2;3)",
            "rgba(1,2,3,red)",
            "",
            "   ",
            "red;x",
            "url(x)",
            "expression(1)",
            &"a".repeat(33),
            "bl4ck",
        ] {
            assert_eq!(css_colour(bad), None, "{bad:?}");
        }
    }

    fn body(resp: Resp) -> String {
        match resp.into_body() {
            crate::response::MockBody::Full(Some(bytes)) => {
                String::from_utf8(bytes.to_vec()).unwrap()
            }
            _ => panic!("a full body"),
        }
    }

    #[test]
    fn a_refusal_posts_an_error_to_the_parent_in_the_embedded_flow_only() {
        let embedded = body(refusal(
            b"app_type=spa&sdk_host_url=http://localhost:5173",
            "No.",
        ));
        assert!(embedded.contains("postMessage") && embedded.contains(r#""kind":"error""#));
        let redirect = body(refusal(b"sdk_host_url=http://localhost:5173", "No."));
        assert!(!redirect.contains("postMessage"), "{redirect}");
    }

    #[test]
    fn the_form_defaults_to_the_sandbox_provider_when_offered_else_the_first() {
        let all = body(form(&params("").unwrap()));
        assert!(
            all.contains(r#"<option value="chart-sandbox" selected>"#),
            "{all}"
        );
        let two = body(form(&params("providers=irs,turbotax").unwrap()));
        assert!(two.contains(r#"<option value="irs" selected>"#), "{two}");
        assert!(
            !two.contains(r#"<option value="turbotax" selected>"#),
            "{two}"
        );
    }

    fn params(query: &str) -> Result<Params, String> {
        parse(format!("client_id=c&{query}").as_bytes())
    }

    #[test]
    fn free_form_values_are_bounded() {
        let at = "s".repeat(MAX_PARAM_LEN);
        assert!(params(&format!("state={at}")).is_ok());
        assert!(params(&format!("state={at}s")).is_err());
        let object = format!(r#"{{"k":"{}"}}"#, "v".repeat(256 - 8));
        assert_eq!(object.len(), 256);
        assert!(params(&format!("metadata={object}")).is_ok());
        let over = format!(r#"{{"k":"{}"}}"#, "v".repeat(256 - 7));
        assert!(params(&format!("metadata={over}")).is_err());
        assert!(params("metadata=[1]").is_err(), "an array is not an object");
        assert!(params("metadata=nope").is_err());
        let flow = "f".repeat(64);
        assert_eq!(
            params(&format!("flow={flow}")).unwrap().flow,
            Some(flow.clone())
        );
        assert!(params(&format!("flow={flow}f")).is_err());
        assert!(params("flow=a-b_c9").is_ok());
        assert!(params("flow=a%20b").is_err());
        let id = "i".repeat(256);
        assert_eq!(
            params(&format!("session_settings_id={id}"))
                .unwrap()
                .session_settings_id,
            Some(id.clone())
        );
        assert_eq!(
            params(&format!("session_settings_id={id}i"))
                .unwrap()
                .session_settings_id,
            None
        );
    }

    #[test]
    fn providers_keep_known_ids_once_in_order() {
        let p = params("providers=irs,%20turbotax,irs,nope").unwrap();
        assert_eq!(
            p.providers,
            Some(vec!["irs".to_owned(), "turbotax".to_owned()])
        );
        assert!(params("providers=nope,other").is_err());
        assert_eq!(params("").unwrap().providers, None);
    }

    #[test]
    fn the_embedded_flow_needs_an_origin_and_the_rest_has_defaults() {
        assert!(params("app_type=spa").is_err());
        let p = params("app_type=spa&sdk_host_url=http://localhost:5173/x").unwrap();
        assert!(p.spa);
        assert_eq!(p.sdk_host_url.as_deref(), Some("http://localhost:5173"));
        let p = params("app_type=other").unwrap();
        assert!(!p.spa);
        assert_eq!(p.provider_id, "chart-sandbox");
        assert_eq!(p.outcome, Scenario::Success);
        assert!(params("outcome=nope").is_err());
        assert!(parse(b"state=x").is_err(), "the client_id is required");
    }
}
