//! Every row of the contract (DESIGN §5), every control-plane route, every fault kind
//! and every scenario, each run in-process and against the binary as a user starts it.

mod common;

use common::*;
use http::{Method, StatusCode};
use serde_json::json;

/// Defines each case twice: once in-process, once against the binary.
macro_rules! contract {
    ($($name:ident($extra:expr) => $body:expr;)*) => {
        mod in_process { use super::*; $(#[tokio::test] async fn $name() { let t = Target::in_process($extra).await; ($body)(t).await; })* }
        mod binary { use super::*; $(#[tokio::test] async fn $name() { let t = Target::binary($extra).await; ($body)(t).await; })* }
    };
}

async fn success_shape(t: Target) {
    let code = t.code(Some(REDIRECT), "success").await;
    let a = t.exchange(&code, Some(REDIRECT)).await;
    assert_eq!(a.status, StatusCode::OK);
    let body = a.json();
    assert_eq!(body["account_id"], body["taxpayer_id"]);
    assert_eq!(body["provider_id"], "chart-sandbox");
    for k in ["account_id", "access_token"] {
        let v = body[k].as_str().unwrap();
        assert_eq!(v.len(), 36, "{k} is a UUID");
        assert_eq!(v.matches('-').count(), 4);
    }
    // Embedded flow: no redirect_uri.
    let code = t.code(None, "success").await;
    assert_eq!(t.exchange(&code, None).await.status, StatusCode::OK);
}

async fn invalid_request_rows(t: Target) {
    let code = t.code(None, "success").await;
    let msg = t
        .send(
            Method::POST,
            "/auth/token",
            &[("content-type", "application/json")],
            "{not json",
        )
        .await;
    msg.error(400, "invalid_request_error");
    let base = json!({"client_id": CLIENT, "client_secret": SECRET, "code": code});
    for field in ["client_id", "client_secret", "code"] {
        for bad in [None, Some(json!("")), Some(json!(42))] {
            let mut body = base.clone();
            match bad {
                None => body.as_object_mut().unwrap().remove(field),
                Some(v) => body.as_object_mut().unwrap().insert(field.into(), v),
            };
            let m = t
                .post_json("/auth/token", &body)
                .await
                .error(400, "invalid_request_error");
            assert!(m.contains(field), "the message names {field}: {m}");
        }
    }
    let mut body = base.clone();
    body["redirect_uri"] = json!(17);
    assert!(
        t.post_json("/auth/token", &body)
            .await
            .error(400, "invalid_request_error")
            .contains("redirect_uri")
    );
    let a = t
        .send(
            Method::POST,
            "/auth/token",
            &[
                ("content-type", "application/json"),
                ("chart-api-version", "1999-01-01"),
            ],
            base.to_string(),
        )
        .await;
    assert!(
        a.error(400, "invalid_request_error")
            .contains("Chart-API-Version")
    );
    let a = t
        .send(
            Method::POST,
            "/auth/token",
            &[
                ("content-type", "application/json"),
                ("chart-api-version", "2024-01-01"),
            ],
            base.to_string(),
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::OK,
        "none of the rejected requests spent the code"
    );
}

async fn invalid_client_rows(t: Target) {
    let code = t.code(None, "success").await;
    let wrong_secret = t
        .post_json(
            "/auth/token",
            &json!({"client_id": CLIENT, "client_secret": "nope", "code": code}),
        )
        .await;
    let unknown = t
        .post_json(
            "/auth/token",
            &json!({"client_id": "ghost", "client_secret": SECRET, "code": code}),
        )
        .await;
    assert_eq!(
        wrong_secret.error(401, "invalid_client_error"),
        unknown.error(401, "invalid_client_error")
    );
    assert_eq!(
        t.exchange(&code, None).await.status,
        StatusCode::OK,
        "a bad client does not spend the code"
    );
}

async fn invalid_grant_rows(t: Target) {
    t.exchange("never-issued", None)
        .await
        .error(400, "invalid_grant_error");
    let used = t.code(None, "success").await;
    assert_eq!(t.exchange(&used, None).await.status, StatusCode::OK);
    t.exchange(&used, None)
        .await
        .error(400, "invalid_grant_error");
    let expired = t.code(None, "success").await;
    assert_eq!(
        t.post_json("/__chart/clock", &json!({"advance_secs": 601}))
            .await
            .status,
        StatusCode::OK
    );
    t.exchange(&expired, None)
        .await
        .error(400, "invalid_grant_error");
    let other = t.mint(json!({"client_id": OTHER})).await.json()["code"]
        .as_str()
        .unwrap()
        .to_owned();
    t.exchange(&other, None)
        .await
        .error(400, "invalid_grant_error");
    let mismatched = t.code(Some(REDIRECT), "success").await;
    t.exchange(&mismatched, Some(REDIRECT_2))
        .await
        .error(400, "invalid_grant_error");
    // The redirect_uri must equal the code's exactly: no prefix, extension, case change,
    // trailing slash or query passes.
    for near in near_misses(REDIRECT) {
        let code = t.code(Some(REDIRECT), "success").await;
        let refused = t.exchange(&code, Some(&near)).await;
        assert_eq!(
            refused.status,
            StatusCode::BAD_REQUEST,
            "{near} got a token"
        );
        refused.error(400, "invalid_grant_error");
        // A refused redirect_uri spends the code, as Chart does.
        t.exchange(&code, Some(REDIRECT))
            .await
            .error(400, "invalid_grant_error");
    }
    let missing = t.code(Some(REDIRECT), "success").await;
    t.exchange(&missing, None)
        .await
        .error(400, "invalid_grant_error");
    let embedded = t.code(None, "success").await;
    t.exchange(&embedded, Some(REDIRECT))
        .await
        .error(400, "invalid_grant_error");
    let denied = t.code(None, "denied").await;
    t.exchange(&denied, None)
        .await
        .error(400, "invalid_grant_error");
}

async fn protocol_rows(t: Target) {
    let code = t.code(None, "success").await;
    let get = t.send(Method::GET, "/auth/token", &[], "").await;
    get.error(405, "method_not_allowed");
    assert_eq!(get.headers["allow"], "POST");
    let big = format!("{{\"client_id\":\"{}\"}}", "x".repeat(70 * 1024));
    t.send(
        Method::POST,
        "/auth/token",
        &[("content-type", "application/json")],
        big,
    )
    .await
    .error(413, "payload_too_large");
    let body = json!({"client_id": CLIENT, "client_secret": SECRET, "code": code}).to_string();
    t.send(
        Method::POST,
        "/auth/token",
        &[("content-type", "text/plain")],
        body.clone(),
    )
    .await
    .error(415, "unsupported_media_type");
    t.send(Method::POST, "/auth/token", &[], body)
        .await
        .error(415, "unsupported_media_type");
    assert_eq!(
        t.exchange(&code, None).await.status,
        StatusCode::OK,
        "the code was not spent"
    );
    t.send(Method::GET, "/nope", &[], "")
        .await
        .error(404, "not_found");
}

async fn scenarios(t: Target) {
    let limited = t.code(None, "rate_limited").await;
    let a = t.exchange(&limited, None).await;
    a.error(429, "rate_limit_exceeded_error");
    assert_eq!(a.headers["retry-after"], "1");
    assert_eq!(t.exchange(&limited, None).await.status, StatusCode::OK);
    let failing = t.code(None, "server_error").await;
    t.exchange(&failing, None).await.error(500, "server_error");
    t.exchange(&failing, None).await.error(500, "server_error");
    let slow = t.code(None, "slow").await;
    assert_eq!(t.exchange(&slow, None).await.status, StatusCode::OK);
    let bad = t
        .mint(json!({"client_id": CLIENT, "scenario": "explode"}))
        .await;
    bad.error(400, "invalid_request_error");
}

async fn configured_rate_limit(t: Target) {
    for _ in 0..2 {
        let code = t.code(None, "success").await;
        assert_eq!(t.exchange(&code, None).await.status, StatusCode::OK);
    }
    let code = t.code(None, "success").await;
    let a = t.exchange(&code, None).await;
    a.error(429, "rate_limit_exceeded_error");
    assert!(a.headers.contains_key("retry-after"));
}

async fn tokens_introspect_disconnect_and_reuse(t: Target) {
    let code = t.code(None, "success").await;
    let body = t.exchange(&code, None).await.json();
    let token = body["access_token"].as_str().unwrap();
    let info = t.bearer(Method::GET, "/introspect", token).await;
    assert_eq!(info.status, StatusCode::OK);
    let info = info.json();
    assert_eq!(info["taxpayer_id"], body["taxpayer_id"]);
    assert_eq!(info["client_id"], CLIENT);
    assert_eq!(info["provider_id"], "chart-sandbox");
    assert!(info["name"].is_string());
    t.bearer(Method::GET, "/introspect", "bogus")
        .await
        .error(401, "invalid_token_error");
    t.send(Method::GET, "/introspect", &[], "")
        .await
        .error(401, "invalid_token_error");
    t.bearer(Method::POST, "/introspect", token)
        .await
        .error(405, "method_not_allowed");
    // Reuse of the code revokes its token.
    t.exchange(&code, None)
        .await
        .error(400, "invalid_grant_error");
    t.bearer(Method::GET, "/introspect", token)
        .await
        .error(401, "invalid_token_error");
    // Disconnect kills a token.
    let code = t.code(None, "success").await;
    let token = t.exchange(&code, None).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let d = t.bearer(Method::POST, "/disconnect", &token).await;
    assert_eq!(
        (d.status, d.json()),
        (StatusCode::OK, json!({"status": "success"}))
    );
    t.bearer(Method::GET, "/introspect", &token)
        .await
        .error(401, "invalid_token_error");
    t.bearer(Method::POST, "/disconnect", &token)
        .await
        .error(401, "invalid_token_error");
}

async fn control_plane_routes(t: Target) {
    assert_eq!(
        t.send(Method::GET, "/__chart/health", &[], "").await.status,
        StatusCode::OK
    );
    let minted = t.mint(json!({"client_id": CLIENT, "provider_id": "irs", "redirect_uri": REDIRECT, "scenario": "success"})).await;
    assert_eq!(minted.status, StatusCode::CREATED);
    assert_eq!(minted.json()["expires_in"], 600);
    t.mint(json!({"client_id": "ghost"}))
        .await
        .error(400, "invalid_request_error");
    t.mint(json!({"client_id": CLIENT, "redirect_uri": "https://evil.example/cb"}))
        .await
        .error(400, "invalid_request_error");
    for near in near_misses(REDIRECT) {
        t.mint(json!({"client_id": CLIENT, "redirect_uri": near}))
            .await
            .error(400, "invalid_request_error");
    }
    t.post_json("/__chart/clock", &json!({"advance_secs": "soon"}))
        .await
        .error(400, "invalid_request_error");
    t.post_json("/__chart/faults", &json!({"kind": "meteor"}))
        .await
        .error(400, "invalid_request_error");
    t.post_json("/__chart/faults", &json!({"kind": "status"}))
        .await
        .error(400, "invalid_request_error");
    // A code keeps at most 256 bytes of metadata.
    let metadata = |len: usize| format!(r#"{{"k":"{}"}}"#, "v".repeat(len - 8));
    assert_eq!(
        t.mint(json!({"client_id": CLIENT, "metadata": metadata(256)}))
            .await
            .status,
        StatusCode::CREATED
    );
    let refused = t
        .mint(json!({"client_id": CLIENT, "metadata": metadata(257)}))
        .await
        .error(400, "invalid_request_error");
    assert!(refused.contains("256 bytes"), "{refused}");
    let page = |len: usize| {
        let query: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("client_id", CLIENT)
            .append_pair("state", "s")
            .append_pair("redirect_uri", REDIRECT)
            .append_pair("metadata", &metadata(len))
            .finish();
        format!("/connect?{query}")
    };
    assert_eq!(
        t.send(Method::GET, &page(256), &[], "").await.status,
        StatusCode::OK
    );
    let refused = t.send(Method::GET, &page(257), &[], "").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&refused.body).contains("at most 256 bytes"));
    // A fault for no request at all is a mistake, not a no-op.
    t.post_json("/__chart/faults", &json!({"kind": "reset", "times": 0}))
        .await
        .error(400, "invalid_request_error");
    t.send(Method::GET, "/__chart/codes", &[], "")
        .await
        .error(405, "method_not_allowed");
    // The journal records requests without secrets, and can be cleared.
    let code = minted.json()["code"].as_str().unwrap().to_owned();
    let token = t.exchange(&code, Some(REDIRECT)).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let journal = t.journal().await;
    let text = serde_json::to_string(&journal).unwrap();
    for secret in [code.as_str(), token.as_str(), SECRET] {
        assert!(!text.contains(secret), "the journal leaks a secret");
    }
    let last = journal
        .iter()
        .rev()
        .find(|e| e["path"] == "/auth/token")
        .unwrap();
    assert_eq!(
        (last["status"].as_u64(), last["outcome"].as_str()),
        (Some(200), Some("success"))
    );
    assert_eq!(last["code_id"], minted.json()["code_id"]);
    assert_eq!(
        t.send(Method::DELETE, "/__chart/journal", &[], "")
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(t.journal().await.len(), 1, "only the GET that reads it");
}

/// A code minted for a returning taxpayer answers with that taxpayer's id, whatever the
/// provider; an id that is not a lowercase hyphenated UUID is refused at minting.
async fn returning_taxpayer(t: Target) {
    const TAXPAYER: &str = "0b7e4c1a-3f2d-4e5b-9a6c-8d7e6f5a4b3c";
    let mut tokens = Vec::new();
    for provider in ["irs", "turbotax"] {
        let minted = t
            .mint(json!({"client_id": CLIENT, "provider_id": provider, "taxpayer_id": TAXPAYER}))
            .await;
        assert_eq!(minted.status, StatusCode::CREATED);
        let code = minted.json()["code"].as_str().unwrap().to_owned();
        let answer = t.exchange(&code, None).await.json();
        assert_eq!(
            (
                &answer["account_id"],
                &answer["taxpayer_id"],
                &answer["provider_id"]
            ),
            (&json!(TAXPAYER), &json!(TAXPAYER), &json!(provider))
        );
        tokens.push(answer["access_token"].as_str().unwrap().to_owned());
    }
    assert_ne!(tokens[0], tokens[1], "each exchange issues its own token");
    // Without one, every exchange is a new taxpayer.
    let fresh = t.code(None, "success").await;
    assert_ne!(
        t.exchange(&fresh, None).await.json()["account_id"],
        TAXPAYER
    );
    for bad in ["0B7E4C1A-3F2D-4E5B-9A6C-8D7E6F5A4B3C", "taxpayer-1", ""] {
        let refused = t
            .mint(json!({"client_id": CLIENT, "taxpayer_id": bad}))
            .await
            .error(400, "invalid_request_error");
        assert!(refused.contains("taxpayer_id"), "{refused}");
    }
}

/// Codes minted through the Connect page, which any page can submit, have a budget of
/// their own: they evict the oldest page codes, never a control-plane code.
async fn page_codes_apart(t: Target) {
    let kept = t.code(None, "success").await;
    let mut page_codes = Vec::new();
    // Five: more than both caps together (max_codes 4, max_page_codes 2).
    for _ in 0..5 {
        let form = format!("client_id={CLIENT}&redirect_uri={REDIRECT}&state=s");
        let a = t.send(Method::POST, "/connect", &[], form).await;
        assert_eq!(a.status, StatusCode::SEE_OTHER);
        let location = a.headers["location"].to_str().unwrap();
        let code = location.split("code=").nth(1).unwrap().split('&').next();
        page_codes.push(code.unwrap().to_owned());
    }
    assert_eq!(t.exchange(&kept, None).await.status, StatusCode::OK);
    for evicted in &page_codes[..3] {
        t.exchange(evicted, Some(REDIRECT))
            .await
            .error(400, "invalid_grant_error");
    }
    for code in &page_codes[3..] {
        assert_eq!(
            t.exchange(code, Some(REDIRECT)).await.status,
            StatusCode::OK
        );
    }
}

/// Bounded time: at most ten years a clock step, a day of Retry-After.
async fn time_bounds(t: Target) {
    let refused = t
        .post_json("/__chart/clock", &json!({"advance_secs": 315_360_001u64}))
        .await
        .error(400, "invalid_request_error");
    assert!(refused.contains("advance_secs"), "{refused}");
    let refused = t
        .post_json(
            "/__chart/faults",
            &json!({"kind": "status", "status": 429, "retry_after": 86_401}),
        )
        .await
        .error(400, "invalid_request_error");
    assert!(refused.contains("retry_after"), "{refused}");
    let most = t
        .post_json(
            "/__chart/faults",
            &json!({"kind": "status", "status": 429, "retry_after": 86_400}),
        )
        .await;
    assert_eq!(most.status, StatusCode::CREATED);
    assert_eq!(
        t.send(Method::DELETE, "/__chart/faults", &[], "")
            .await
            .status,
        StatusCode::OK
    );
    let most = t
        .post_json("/__chart/clock", &json!({"advance_secs": 315_360_000u64}))
        .await;
    assert_eq!(most.status, StatusCode::OK);
}

async fn faults(t: Target) {
    let t = &t;
    let fault = |v: serde_json::Value| async move {
        assert_eq!(
            t.post_json("/__chart/faults", &v).await.status,
            StatusCode::CREATED
        )
    };
    // status: answered before the grant is checked, so the code stays good.
    let code = t.code(None, "success").await;
    fault(json!({"kind": "status", "status": 503, "times": 2})).await;
    for _ in 0..2 {
        let a = t.exchange(&code, None).await;
        // DESIGN's table has no 503 row; the name is the one openapi.json documents.
        a.error(503, "service_unavailable");
        assert_eq!(a.headers["retry-after"], "1");
    }
    assert_eq!(t.exchange(&code, None).await.status, StatusCode::OK);
    // latency: then the normal answer.
    fault(json!({"kind": "latency", "delay_ms": 50})).await;
    let code = t.code(None, "success").await;
    assert_eq!(t.exchange(&code, None).await.status, StatusCode::OK);
    // reset and empty: no usable answer; the code is spent. On the wire they differ:
    // `reset` closes before any byte of an answer, `empty` after the status line.
    for kind in ["reset", "empty"] {
        fault(json!({"kind": kind})).await;
        let code = t.code(None, "success").await;
        let body = json!({"client_id": CLIENT, "client_secret": SECRET, "code": code}).to_string();
        let got = t
            .try_send(
                Method::POST,
                "/auth/token",
                &[("content-type", "application/json")],
                body.clone(),
            )
            .await;
        assert!(got.is_err(), "{kind}: the connection breaks");
        t.exchange(&code, None)
            .await
            .error(400, "invalid_grant_error");

        fault(json!({"kind": kind})).await;
        let raw = raw_answer(&t.base, &body).await;
        let text = String::from_utf8_lossy(&raw);
        match kind {
            "reset" => assert!(raw.is_empty(), "reset sent {text:?}"),
            _ => {
                assert!(text.starts_with("HTTP/1.1 200"), "empty sent {text:?}");
                assert!(
                    !text.contains("access_token"),
                    "empty sent a body: {text:?}"
                );
            }
        }
    }
    // malformed_json: a 200 whose body is not JSON.
    fault(json!({"kind": "malformed_json"})).await;
    let code = t.code(None, "success").await;
    let a = t.exchange(&code, None).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(serde_json::from_slice::<serde_json::Value>(&a.body).is_err());
    // truncated: a 200 whose body stops midway.
    fault(json!({"kind": "truncated"})).await;
    let code = t.code(None, "success").await;
    let body = json!({"client_id": CLIENT, "client_secret": SECRET, "code": code}).to_string();
    let got = t
        .try_send(
            Method::POST,
            "/auth/token",
            &[("content-type", "application/json")],
            body,
        )
        .await;
    assert!(
        got.as_ref().is_err_and(|e| e.starts_with("body")),
        "the body breaks off: {:?}",
        got.err()
    );
    // path: a fault aimed at another endpoint leaves /auth/token alone.
    fault(json!({"kind": "status", "status": 500, "path": "/introspect"})).await;
    let code = t.code(None, "success").await;
    let token = t.exchange(&code, None).await.json()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    t.bearer(Method::GET, "/introspect", &token)
        .await
        .error(500, "server_error");
    assert_eq!(
        t.bearer(Method::GET, "/introspect", &token).await.status,
        StatusCode::OK
    );
    // DELETE clears pending faults.
    fault(json!({"kind": "status", "status": 500, "times": 5})).await;
    assert_eq!(
        t.send(Method::DELETE, "/__chart/faults", &[], "")
            .await
            .status,
        StatusCode::OK
    );
    let code = t.code(None, "success").await;
    assert_eq!(t.exchange(&code, None).await.status, StatusCode::OK);
    let faulted: Vec<_> = t
        .journal()
        .await
        .into_iter()
        .filter(|e| e["fault"].is_string())
        .collect();
    // 8 through the client, and the raw reset and empty requests.
    assert_eq!(faulted.len(), 10);
}

/// `/` without a query is a landing page whose links work: the Connect page in both
/// flows for every client, the report and the OpenAPI document. A configured client's
/// secret is never shown. With a query, `/` stays the Connect page (the React SDK's).
async fn landing_page(t: Target) {
    let page = t.send(Method::GET, "/", &[], "").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .ends_with("frame-ancestors 'none'")
    );
    let html = String::from_utf8_lossy(&page.body).into_owned();
    assert!(html.contains("chart-mock-server"));
    for id in [CLIENT, OTHER] {
        assert!(html.contains(&format!("<code>{id}</code>")), "{id} listed");
    }
    assert!(
        !html.contains(SECRET) && !html.contains("other-secret"),
        "{html}"
    );
    let links: Vec<String> = html
        .split("href=\"")
        .skip(1)
        .map(|l| l.split('"').next().unwrap().replace("&amp;", "&"))
        .collect();
    assert_eq!(links.len(), 2 * 2 + 2, "{links:?}");
    for link in &links {
        let answer = t.send(Method::GET, link, &[], "").await;
        assert_eq!(answer.status, StatusCode::OK, "{link}");
    }
    assert!(links.iter().any(|l| l.contains("app_type=spa")));
    let connect = t
        .send(
            Method::GET,
            &format!("/?client_id={CLIENT}&redirect_uri={REDIRECT}&state=s"),
            &[],
            "",
        )
        .await;
    assert!(String::from_utf8_lossy(&connect.body).contains("<form"));
}

/// No page may be framed (clickjacking) but the embedded Connect page, which only its
/// embedding origin may frame, and an embedded refusal, which must load in the frame
/// to post its `error` (it carries no code).
async fn frame_ancestors(t: Target) {
    let csp = |a: &Answer| {
        a.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned()
    };
    let redirect_page = format!("/connect?client_id={CLIENT}&state=s&redirect_uri={REDIRECT}");
    let unknown_client = "/connect?client_id=ghost&state=s&redirect_uri=https://x.example/cb";
    for path in [
        redirect_page.as_str(),
        unknown_client,
        "/__chart/report.html",
    ] {
        let page = t.send(Method::GET, path, &[], "").await;
        assert!(
            csp(&page).ends_with("frame-ancestors 'none'"),
            "{path}: {}",
            csp(&page)
        );
    }
    let spa = "&app_type=spa&sdk_host_url=http://localhost:5173";
    let embedded = t
        .send(
            Method::GET,
            &format!("/connect?client_id={CLIENT}&state=s{spa}"),
            &[],
            "",
        )
        .await;
    assert!(csp(&embedded).ends_with("frame-ancestors http://localhost:5173"));
    let refused = t
        .send(
            Method::GET,
            &format!("/connect?client_id=ghost&state=s{spa}"),
            &[],
            "",
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(String::from_utf8_lossy(&refused.body).contains("postMessage"));
    assert!(
        !csp(&refused).contains("frame-ancestors"),
        "{}",
        csp(&refused)
    );
}

async fn connect_page(t: Target) {
    let q = |extra: &str| format!("/connect?client_id={CLIENT}&state=st%3C%2Fscript%3E{extra}");
    let page = t
        .send(
            Method::GET,
            &q(&format!("&redirect_uri={REDIRECT}")),
            &[],
            "",
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&page.body);
    assert!(
        html.contains("value=\"chart-sandbox\" selected")
            && html.contains("value=\"success\" selected")
    );
    assert!(!html.contains("</script>\""), "values are escaped");
    // Submitting the defaults connects an account through a 303 to the redirect_uri.
    let form = format!(
        "client_id={CLIENT}&redirect_uri={REDIRECT}&state=abc&provider_id=chart-sandbox&outcome=success"
    );
    let a = t
        .send(
            Method::POST,
            "/connect",
            &[("content-type", "application/x-www-form-urlencoded")],
            form,
        )
        .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    let location = a.headers["location"].to_str().unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{REDIRECT}?code=")) && location.ends_with("&state=abc"),
        "{location}"
    );
    let code = location
        .split("code=")
        .nth(1)
        .unwrap()
        .split('&')
        .next()
        .unwrap();
    assert_eq!(
        t.exchange(code, Some(REDIRECT)).await.status,
        StatusCode::OK
    );
    // Denied.
    let form = format!("client_id={CLIENT}&redirect_uri={REDIRECT}&state=abc&outcome=denied");
    let a = t.send(Method::POST, "/connect", &[], form).await;
    assert_eq!(
        a.headers["location"],
        format!("{REDIRECT}?error=access_denied&state=abc").as_str()
    );
    // Never an open redirect: an unregistered redirect_uri, however close to a
    // registered one, gets the 400 page.
    let mut bad_forms = vec![
        format!("client_id={CLIENT}&redirect_uri=https://evil.example/cb&state=s"),
        format!("client_id=ghost&redirect_uri={REDIRECT}&state=s"),
    ];
    for near in near_misses(REDIRECT) {
        let near: String = form_urlencoded::byte_serialize(near.as_bytes()).collect();
        bad_forms.push(format!("client_id={CLIENT}&redirect_uri={near}&state=s"));
    }
    for bad in bad_forms {
        let a = t.send(Method::POST, "/connect", &[], bad.clone()).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
        assert!(!a.headers.contains_key("location"));
        let a = t
            .send(Method::GET, &format!("/connect?{bad}"), &[], "")
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST);
    }
    // Embedded flow: a postMessage aimed at sdk_host_url, with an embedded-flow code.
    let form = format!(
        "client_id={CLIENT}&state=xyz&app_type=spa&sdk_host_url=http%3A%2F%2Flocalhost%3A5173"
    );
    let a = t.send(Method::POST, "/connect", &[], form).await;
    let html = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        html.contains("\"name\":\"chart-auth-message\"") && html.contains("\"kind\":\"success\""),
        "{html}"
    );
    assert!(html.contains(", \"http://localhost:5173\");"), "{html}");
    let code = html
        .split("\"code\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(t.exchange(code, None).await.status, StatusCode::OK);
    let a = t
        .send(
            Method::GET,
            &format!("/connect?client_id={CLIENT}&state=s&app_type=spa"),
            &[],
            "",
        )
        .await;
    assert_eq!(
        a.status,
        StatusCode::BAD_REQUEST,
        "the embedded flow needs sdk_host_url"
    );
}

/// Chart's React SDK in dev mode loads `http://localhost:3000/?...` in an iframe.
/// First-hour help: a missing token says so; a bad client on a sandbox-only mock names
/// the sandbox client (one message for an unknown client and a wrong secret).
async fn helpful_refusals(t: Target) {
    let a = t.send(Method::GET, "/introspect", &[], "").await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    assert_eq!(a.json()["name"], "invalid_token_error");
    assert!(
        a.json()["message"].as_str().unwrap().contains("missing"),
        "{:?}",
        a.json()
    );
    let a = t
        .send(
            Method::GET,
            "/introspect",
            &[("authorization", "Bearer nope")],
            "",
        )
        .await;
    assert!(
        a.json()["message"]
            .as_str()
            .unwrap()
            .contains("invalid or revoked")
    );
    let a = t
        .post_json(
            "/auth/token",
            &json!({"client_id": "<your_client_id>", "client_secret": "x", "code": "c"}),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED);
    let message = a.json()["message"].as_str().unwrap().to_owned();
    // These targets run with configured clients: no sandbox hint.
    assert!(!message.contains("chart-sandbox-client"), "{message}");
}

async fn react_sdk_dev_mode(t: Target) {
    let host = "http%3A%2F%2Flocalhost%3A5173";
    let query = |extra: &str| {
        format!(
            "/?client_id={CLIENT}&app_type=spa&redirect_uri=http%3A%2F%2Flocalhost%3A4001\
             &sdk_host_url={host}&state=s1&sdk_version=react-4.10.0{extra}"
        )
    };
    let page = t
        .send(
            Method::GET,
            &query("&flow=irs-8821&providers=irs,nope,turbotax&metadata=%7B%22plan%22%3A%22pro%22%7D&session_settings_id=ss1&overlay=%23112233&unknown=1"),
            &[],
            "",
        )
        .await;
    assert_eq!(page.status, StatusCode::OK);
    let html = String::from_utf8_lossy(&page.body).into_owned();
    // Only the embedding site may frame it.
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains("frame-ancestors http://localhost:5173"),
        "{csp}"
    );
    // providers: known ones only, in the order given.
    let options: Vec<&str> = html
        .split("<option value=\"")
        .skip(1)
        .map(|o| o.split('"').next().unwrap())
        .filter(|v| !["success", "server_error", "rate_limited", "slow", "denied"].contains(v))
        .collect();
    assert_eq!(options, ["irs", "turbotax"]);
    assert!(html.contains("irs-8821"), "the flow is shown");
    assert!(
        html.contains("body{background:#112233}"),
        "the overlay colour"
    );
    assert!(html.contains("id=close"), "a Close control");
    assert!(
        html.contains("\"kind\":\"closed\""),
        "Close and Escape post `closed`"
    );

    // The overlay is a colour or nothing: no CSS or markup gets through.
    for bad in [
        "red;}body{display:none",
        "url(https://evil.example/x)",
        "%3C%2Fstyle%3E",
    ] {
        let a = t
            .send(Method::GET, &query(&format!("&overlay={bad}")), &[], "")
            .await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{bad}");
        let html = String::from_utf8_lossy(&a.body);
        assert!(!html.contains("display:none") && !html.contains("evil.example/x"));
        // The SDK still hears about it: an `error` message, so onError fires.
        assert!(html.contains("\"kind\":\"error\""), "{html}");
    }

    // An origin the client does not allow never receives a code: another host, a host
    // that only starts like a local one, user info, or a port that is not a number
    // (found by the mock_connect_form fuzz target: `localhost:5173$x` was allowed).
    for origin in [
        "https://evil.example",
        "http://localhost.evil.example",
        "http://127.0.0.1.evil.example:3000",
        "http://localhost@evil.example",
        "http://localhost:5173$outcome=denied",
        "http://localhost:",
        "http://localhost:99999",
    ] {
        let origin: String = form_urlencoded::byte_serialize(origin.as_bytes()).collect();
        let form = format!(
            "client_id={CLIENT}&state=s2&app_type=spa&sdk_host_url={origin}&outcome=success"
        );
        let a = t.send(Method::POST, "/connect", &[], form).await;
        assert_eq!(a.status, StatusCode::BAD_REQUEST, "{origin}");
        assert!(!String::from_utf8_lossy(&a.body).contains("\"code\""));
    }

    // metadata is kept with the code and shown in the journal entry of its exchange.
    let form = format!(
        "client_id={CLIENT}&state=s3&app_type=spa&sdk_host_url={host}&metadata=%7B%22plan%22%3A%22pro%22%7D"
    );
    let a = t.send(Method::POST, "/", &[], form).await;
    let html = String::from_utf8_lossy(&a.body).into_owned();
    assert!(
        html.contains(", \"http://localhost:5173\");"),
        "aimed at the host only"
    );
    let code = html
        .split("\"code\":\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    assert_eq!(t.exchange(code, None).await.status, StatusCode::OK);
    let journal = t.journal().await;
    let exchange = journal
        .iter()
        .rev()
        .find(|e| e["path"] == "/auth/token")
        .unwrap();
    assert_eq!(exchange["metadata"], "{\"plan\":\"pro\"}");

    // Denied: an `error` message with access_denied.
    let form =
        format!("client_id={CLIENT}&state=s4&app_type=spa&sdk_host_url={host}&outcome=denied");
    let a = t.send(Method::POST, "/connect", &[], form).await;
    let html = String::from_utf8_lossy(&a.body);
    assert!(html.contains("\"kind\":\"error\"") && html.contains("access_denied"));
}

/// The routes of DESIGN §5, written out here so that neither the document nor the mock
/// can drift from the contract.
const CONTRACT_ROUTES: [(&str, &str); 18] = [
    ("POST", "/auth/token"),
    ("GET", "/introspect"),
    ("POST", "/disconnect"),
    ("GET", "/connect"),
    ("POST", "/connect"),
    ("GET", "/"),
    ("POST", "/"),
    ("POST", "/__chart/codes"),
    ("POST", "/__chart/clock"),
    ("POST", "/__chart/faults"),
    ("DELETE", "/__chart/faults"),
    ("GET", "/__chart/journal"),
    ("DELETE", "/__chart/journal"),
    ("GET", "/__chart/health"),
    ("GET", "/__chart/openapi.json"),
    ("GET", "/__chart/report"),
    ("DELETE", "/__chart/report"),
    ("GET", "/__chart/report.html"),
];

async fn openapi_matches_the_routes(t: Target) {
    let a = t.send(Method::GET, "/__chart/openapi.json", &[], "").await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.json();
    assert_eq!(doc["openapi"], "3.1.0");
    let mut documented = std::collections::BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let contract: std::collections::BTreeSet<(String, String)> = CONTRACT_ROUTES
        .iter()
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        documented, contract,
        "the document lists exactly the contract's routes"
    );

    // The mock serves each documented route, and answers 405 with the documented
    // methods in `Allow` for every other method on it.
    for (path, ops) in doc["paths"].as_object().unwrap() {
        let mut allowed: Vec<String> = ops
            .as_object()
            .unwrap()
            .keys()
            .map(|m| m.to_uppercase())
            .collect();
        allowed.sort();
        for method in ["GET", "POST", "PUT", "PATCH", "DELETE"] {
            let a = t
                .send(
                    Method::from_bytes(method.as_bytes()).unwrap(),
                    path,
                    &[],
                    "",
                )
                .await;
            if allowed.iter().any(|m| m == method) {
                assert!(
                    a.status != StatusCode::NOT_FOUND && a.status != StatusCode::METHOD_NOT_ALLOWED,
                    "{method} {path} is documented but answered {}",
                    a.status
                );
            } else {
                assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED, "{method} {path}");
                let allow = a.headers["allow"].to_str().unwrap();
                let mut listed: Vec<String> = allow.split(", ").map(str::to_owned).collect();
                listed.sort();
                assert_eq!(listed, allowed, "Allow of {path}");
            }
        }
    }
    for path in ["/nope", "/__chart/nope", "/auth"] {
        assert_eq!(
            t.send(Method::GET, path, &[], "").await.status,
            StatusCode::NOT_FOUND
        );
    }

    // Every error row of the contract is in the document, under its status.
    let names: Vec<&str> = doc["components"]["schemas"]["Error"]["properties"]["name"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let token = &doc["paths"]["/auth/token"]["post"]["responses"];
    for (status, name) in [
        ("400", "invalid_request_error"),
        ("401", "invalid_client_error"),
        ("400", "invalid_grant_error"),
        ("413", "payload_too_large"),
        ("415", "unsupported_media_type"),
        ("429", "rate_limit_exceeded_error"),
        ("500", "server_error"),
    ] {
        assert!(names.contains(&name), "{name} is a documented error name");
        let documented = token[status].to_string();
        assert!(
            documented.contains(name),
            "/auth/token documents {status} {name}"
        );
    }
    assert!(names.contains(&"method_not_allowed") && names.contains(&"invalid_token_error"));
    assert!(token["429"]["headers"]["Retry-After"]["required"] == true);
}

contract! {
    the_openapi_document_matches_the_routes("") => openapi_matches_the_routes;
    success_has_the_contract_shape("") => success_shape;
    react_sdk_dev_mode_page("") => react_sdk_dev_mode;
    helpful_first_hour_refusals("") => helpful_refusals;
    invalid_request_rows_do_not_spend_codes("") => invalid_request_rows;
    invalid_client_is_one_message("") => invalid_client_rows;
    invalid_grant_rows_cover_every_case("") => invalid_grant_rows;
    method_size_and_media_type_rows("") => protocol_rows;
    every_scenario("") => scenarios;
    configured_rate_limit_gives_429("rate_limit_per_minute = 2") => configured_rate_limit;
    introspect_disconnect_and_reuse_revocation("") => tokens_introspect_disconnect_and_reuse;
    every_control_plane_route("") => control_plane_routes;
    a_returning_taxpayer_keeps_their_id("") => returning_taxpayer;
    clock_steps_and_retry_after_are_bounded("") => time_bounds;
    page_codes_never_evict_control_plane_codes("max_codes = 4\nmax_page_codes = 2") => page_codes_apart;
    every_fault_kind("") => faults;
    connect_page_for_both_flows("") => connect_page;
    only_the_embedded_pages_may_be_framed("") => frame_ancestors;
    a_landing_page_at_the_root("") => landing_page;
}

/// URIs that differ from `registered` by a little: each must be refused where
/// `registered` is accepted.
fn near_misses(registered: &str) -> Vec<String> {
    let host_end = registered.find("/api").unwrap();
    vec![
        format!("{registered}.evil.example/x"),
        format!("{registered}/"),
        format!("{registered}x"),
        format!("{registered}?next=https://evil.example"),
        registered[..registered.len() - 1].to_owned(),
        registered.to_uppercase(),
        format!(
            "{}.evil.example{}",
            &registered[..host_end],
            &registered[host_end..]
        ),
    ]
}

/// The bytes a `POST /auth/token` gets back on a raw connection, until the mock closes it
/// (a reset reads as the bytes before it).
async fn raw_answer(base: &str, body: &str) -> Vec<u8> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "POST /auth/token HTTP/1.1\r\nHost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tcp.read(&mut buf).await {
            Ok(0) | Err(_) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}
