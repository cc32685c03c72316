//! What the callback writes to the log. A test binary of its own: tracing caches each
//! call site's interest, and call sites first hit on other test threads (with no
//! subscriber) would race with this test's scoped subscriber.

mod support;

use std::sync::Arc;

use bytes::Bytes;
use chart_auth::CallbackService;
use chart_auth::vault::MemoryStore;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use support::*;

fn sid() -> &'static str {
    "sid=test-session"
}

fn service(env: &Env) -> CallbackService<MemoryStore> {
    CallbackService::builder(env.chart.clone())
        .session(|parts| {
            let cookie = parts.headers.get("cookie")?.to_str().ok()?;
            cookie.strip_prefix("sid=").map(|s| chart_auth::Session {
                binding: s.as_bytes().to_vec(),
                owner: owner(),
            })
        })
        .build()
}

async fn call(
    service: &CallbackService<MemoryStore>,
    query: &str,
) -> (Response<Full<Bytes>>, Value) {
    let req = Request::get(format!("/api/chart/callback?{query}"))
        .header("cookie", sid())
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = service.handle(req).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let value = serde_json::from_slice(&bytes).unwrap_or_default();
    (Response::from_parts(parts, Full::new(bytes)), value)
}

/// Collects what the fmt subscriber writes.
#[derive(Clone, Default)]
struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn answers_are_nosniff_and_a_denied_error_cannot_forge_log_lines() {
    let env = env().await;
    let service = service(&env);
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);
    let state = env
        .chart
        .begin_connect(
            chart_auth::Flow::Redirect {
                redirect_uri: redirect_uri(),
            },
            b"test-session",
            &owner(),
        )
        .unwrap()
        .state;
    let forged_line = "%0A2031-01-01T00:00:00Z%20INFO%20account%20connected%20provider=irs";
    let (resp, body) = call(
        &service,
        &format!("error=access_denied{forged_line}&state={state}"),
    )
    .await;
    assert_eq!(body["status"], "cancelled");
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    // A long error value is cut to 64 characters before it reaches the log. (A cancel
    // claims nothing, so the same state serves again.)
    let long = "e".repeat(1_000);
    let (_, body) = call(&service, &format!("error={long}&state={state}")).await;
    assert_eq!(body["error"], "access_denied");
    // An empty `code=` counts as no code at all.
    let (resp, body) = call(&service, &format!("code=&state={state}")).await;
    assert_eq!(
        (resp.status(), body["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("bad_callback"))
    );
    let (resp, _) = call(&service, "").await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        resp.headers()["x-content-type-options"],
        "nosniff",
        "errors too"
    );

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("callback refused"), "{text}");
    assert!(
        text.contains(&"e".repeat(64)) && !text.contains(&"e".repeat(65)),
        "{text}"
    );
    // An empty `code=` is a missing code.
    assert!(text.contains("the code is missing"), "{text}");
    // Each line names the flow the callback came by.
    assert!(
        text.lines()
            .filter(|l| l.contains("callback refused"))
            .all(|l| l.contains("flow=\"redirect\"") || l.contains("flow=redirect")),
        "{text}"
    );
    assert!(
        !text.lines().any(|l| l.starts_with("2031-01-01")),
        "a forged log line: {text}"
    );
}
