//! The mock's conformance report (`/__chart/report`): our SDK passes every check, and
//! each deliberately bad client, written as raw HTTP, fails exactly the check it breaks.

mod support;
use support::owner;

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::TcpStream;

use chart_mock_server::{
    Check, ClientConfig, ClientReport, FaultKind, MintRequest, MockConfig, MockServer, Report,
    SANDBOX_CLIENT_ID, Scenario, Verdict,
};
use support::{env, fault, redirect_uri};

#[tokio::test]
async fn our_sdk_passes_every_check() {
    let env = env().await;
    let mut kept = HashSet::new();
    // Both flows, a 429 with Retry-After, a 500, a cut connection, introspect and
    // disconnect: every check has something to grade.
    for connection in [
        env.redirect_code(Scenario::Success),
        env.embedded_code(Scenario::Success),
        env.embedded_code(Scenario::RateLimited),
    ] {
        let stored = env.chart.complete(connection).await.unwrap();
        kept.insert(stored.account_id().to_owned());
    }
    let err = env
        .chart
        .complete(env.embedded_code(Scenario::ServerError))
        .await
        .unwrap_err();
    assert!(
        matches!(err, chart_auth::Error::Server { status, .. } if status == 500),
        "{err:?}"
    );
    env.mock.chart().add_fault(fault(FaultKind::Reset));
    let err = env
        .chart
        .complete(env.embedded_code(Scenario::Success))
        .await
        .unwrap_err();
    assert!(
        matches!(err, chart_auth::Error::OutcomeUnknown { .. }),
        "{err:?}"
    );
    let dropped = kept.iter().next().unwrap().clone();
    env.chart.introspect(&owner(), &dropped).await.unwrap();
    env.chart.disconnect(&owner(), &dropped).await.unwrap();
    kept.remove(&dropped);

    let report = env.mock.report(Some(&kept));
    let ours = report.client(SANDBOX_CLIENT_ID).expect("the SDK was seen");
    for check in Check::ALL {
        let result = ours.check(check);
        assert_eq!(
            result.verdict,
            Verdict::Pass,
            "{}: {result:?}",
            check.name()
        );
    }
}

/// A mock on plain HTTP with one client per bad behaviour.
async fn mock_for(clients: &[&str]) -> MockServer {
    let mut config = MockConfig::default();
    for id in clients {
        config.clients.push(ClientConfig {
            client_id: (*id).into(),
            client_secret: format!("{id}-secret"),
            redirect_uris: vec![redirect_uri()],
            allowed_origins: Vec::new(),
        });
    }
    MockServer::start(config).await.unwrap()
}

fn mint(mock: &MockServer, client: &str, redirect: bool, scenario: Scenario) -> String {
    mock.mint_code(&MintRequest {
        client_id: client.into(),
        provider_id: None,
        redirect_uri: redirect.then(redirect_uri),
        scenario: Some(scenario),
        ..Default::default()
    })
    .unwrap()
    .code
}

/// One raw HTTP/1.1 request; `head` is the method and target, then any extra header
/// lines. Gives the status and the body.
fn raw(mock: &MockServer, head: &str, content_type: &str, body: &str) -> (u16, String) {
    let (target, extra) = head.split_once("\r\n").unwrap_or((head, ""));
    let extra = if extra.is_empty() {
        String::new()
    } else {
        format!("{extra}\r\n")
    };
    let addr = mock
        .url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = TcpStream::connect(&addr).unwrap();
    write!(
        stream,
        "{target} HTTP/1.1\r\nHost: {addr}\r\n{extra}Content-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer[9..12].parse().unwrap();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("").to_owned();
    (status, body)
}

const JSON: &str = "application/json";
const VERSION: &str = "\r\nChart-API-Version: 2024-01-01";

fn token_body(client: &str, code: &str, redirect: Option<&str>) -> String {
    let mut body = serde_json::json!({
        "client_id": client,
        "client_secret": format!("{client}-secret"),
        "code": code,
    });
    if let Some(uri) = redirect {
        body["redirect_uri"] = uri.into();
    }
    body.to_string()
}

/// A well-behaved exchange by this client, so that each check has a request to grade.
fn exchange(mock: &MockServer, client: &str, redirect: bool) -> String {
    let code = mint(mock, client, redirect, Scenario::Success);
    let uri = redirect_uri();
    let (status, body) = raw(
        mock,
        &format!("POST /auth/token{VERSION}"),
        JSON,
        &token_body(client, &code, redirect.then_some(uri.as_str())),
    );
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    answer["account_id"].as_str().unwrap().to_owned()
}

/// Notes the account of a token answer as one the client keeps.
fn keep(kept: &mut HashSet<String>, answer: &str) {
    let answer: serde_json::Value = serde_json::from_str(answer).unwrap();
    kept.insert(answer["account_id"].as_str().unwrap().to_owned());
}

/// The client failed `broken`, and no other check.
fn fails_exactly(report: &Report, client: &str, broken: Check) {
    let ours: &ClientReport = report.client(client).expect("the client was seen");
    for check in Check::ALL {
        let result = ours.check(check);
        if check == broken {
            assert_eq!(result.verdict, Verdict::Fail, "{client}: {result:?}");
            assert!(!result.request_ids.is_empty());
        } else {
            assert_ne!(result.verdict, Verdict::Fail, "{client}: {result:?}");
        }
    }
}

// The raw clients block: the mock needs a worker of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bad_client_fails_exactly_the_check_it_breaks() {
    let clients = [
        "redirect-always",
        "redirect-never",
        "form-body",
        "no-version",
        "reuser",
        "impatient",
        "resender",
        "url-leaker",
        "dropper",
    ];
    let mock = mock_for(&clients).await;
    let mut kept = HashSet::new();
    let token = |client: &str, code: &str, redirect: Option<&str>| {
        raw(
            &mock,
            &format!("POST /auth/token{VERSION}"),
            JSON,
            &token_body(client, code, redirect),
        )
    };

    // Sends redirect_uri with an embedded-flow code.
    let code = mint(&mock, "redirect-always", false, Scenario::Success);
    assert_eq!(
        token("redirect-always", &code, Some(&redirect_uri())).0,
        400
    );

    // Leaves redirect_uri out for a Redirect-flow code: the other half of the rule.
    let code = mint(&mock, "redirect-never", true, Scenario::Success);
    assert_eq!(token("redirect-never", &code, None).0, 400);

    // Sends a form body.
    let code = mint(&mock, "form-body", false, Scenario::Success);
    let form = format!("client_id=form-body&client_secret=form-body-secret&code={code}");
    let head = format!("POST /auth/token{VERSION}");
    assert_eq!(
        raw(&mock, &head, "application/x-www-form-urlencoded", &form).0,
        415
    );

    // Leaves out Chart-API-Version.
    let code = mint(&mock, "no-version", true, Scenario::Success);
    let (status, body) = raw(
        &mock,
        "POST /auth/token",
        JSON,
        &token_body("no-version", &code, Some(&redirect_uri())),
    );
    assert_eq!(status, 200);
    keep(&mut kept, &body);

    // Sends a code again after it was exchanged.
    let code = mint(&mock, "reuser", false, Scenario::Success);
    let (status, body) = token("reuser", &code, None);
    assert_eq!(status, 200);
    keep(&mut kept, &body);
    assert_eq!(token("reuser", &code, None).0, 400);

    // Retries at once after a 429 with Retry-After: 1.
    let code = mint(&mock, "impatient", false, Scenario::RateLimited);
    assert_eq!(token("impatient", &code, None).0, 429);
    let (status, body) = token("impatient", &code, None);
    assert_eq!(status, 200);
    keep(&mut kept, &body);

    // Resends a code after a 500.
    let code = mint(&mock, "resender", false, Scenario::ServerError);
    assert_eq!(token("resender", &code, None).0, 500);
    assert_eq!(token("resender", &code, None).0, 500);

    // Puts its client secret in the URL.
    let code = mint(&mock, "url-leaker", false, Scenario::Success);
    let (status, body) = raw(
        &mock,
        &format!("POST /auth/token?client_secret=url-leaker-secret{VERSION}"),
        JSON,
        &token_body("url-leaker", &code, None),
    );
    assert_eq!(status, 200);
    keep(&mut kept, &body);

    // Exchanges, then drops the token without disconnecting it.
    exchange(&mock, "dropper", false);

    // Every client also does one thing right, and keeps what it got.
    for client in clients {
        if client != "dropper" {
            kept.insert(exchange(&mock, client, true));
        }
    }

    let report = mock.report(Some(&kept));
    fails_exactly(&report, "redirect-always", Check::RedirectUri);
    fails_exactly(&report, "redirect-never", Check::RedirectUri);
    fails_exactly(&report, "form-body", Check::JsonBody);
    fails_exactly(&report, "no-version", Check::ApiVersion);
    fails_exactly(&report, "reuser", Check::NoCodeReuse);
    fails_exactly(&report, "impatient", Check::RetryAfterHonoured);
    fails_exactly(&report, "resender", Check::NoResendAfterUnknownOutcome);
    fails_exactly(&report, "url-leaker", Check::NoSecretInUrl);
    fails_exactly(&report, "dropper", Check::DisconnectDroppedTokens);

    // The same report over HTTP, as JSON and as a page; without `kept` the disconnect
    // check cannot be graded.
    let (status, body) = raw(&mock, "GET /__chart/report", JSON, "");
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    let reuser = json["clients"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client_id"] == "reuser")
        .unwrap();
    let verdict = |name: &str| {
        reuser["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap()["verdict"]
            .clone()
    };
    assert_eq!(verdict("no_code_reuse"), "fail");
    assert_eq!(verdict("disconnect_dropped_tokens"), "not_seen");
    let (status, page) = raw(&mock, "GET /__chart/report.html", JSON, "");
    assert_eq!(status, 200);
    assert!(page.contains("reuser") && page.contains("FAIL"));
    // No secret of any client reaches the report.
    for client in clients {
        assert!(!body.contains(&format!("{client}-secret")));
        assert!(!page.contains(&format!("{client}-secret")));
    }

    let (status, _) = raw(&mock, "DELETE /__chart/report", JSON, "");
    assert_eq!(status, 200);
    assert!(mock.report(None).clients.is_empty());
}

/// Retry-After is graded per code: another code right after a 429 is no early retry,
/// and the wait is the header's seconds (a retry 30 s after `Retry-After: 60` is early).
/// Each check states its own rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_after_is_graded_per_code_and_in_seconds() {
    let mut config = MockConfig {
        rate_limit_per_minute: Some(2),
        ..MockConfig::default()
    };
    for id in ["other-code", "early"] {
        config.clients.push(ClientConfig {
            client_id: id.into(),
            client_secret: format!("{id}-secret"),
            redirect_uris: vec![redirect_uri()],
            allowed_origins: Vec::new(),
        });
    }
    let mock = MockServer::start(config).await.unwrap();
    let token = |client: &str, code: &str| {
        raw(
            &mock,
            &format!("POST /auth/token{VERSION}"),
            JSON,
            &token_body(client, code, None),
        )
        .0
    };
    // A 429 for one code (its scenario), then at once a different code: no retry.
    let a = mint(&mock, "other-code", false, Scenario::RateLimited);
    let b = mint(&mock, "other-code", false, Scenario::Success);
    assert_eq!(token("other-code", &a), 429);
    assert_eq!(token("other-code", &b), 200);
    // The configured limit: a 429 with Retry-After: 60, then the same code 30 s later on
    // the mock's clock.
    let code = mint(&mock, "early", false, Scenario::Success);
    assert_eq!(token("early", &code), 429);
    mock.advance_clock(std::time::Duration::from_secs(30));
    token("early", &code);

    let report = mock.report(None);
    let graded = |client: &str| {
        report
            .client(client)
            .unwrap()
            .check(Check::RetryAfterHonoured)
            .verdict
    };
    assert_eq!(
        graded("other-code"),
        Verdict::Pass,
        "another code is no retry"
    );
    assert_eq!(
        graded("early"),
        Verdict::Fail,
        "30 s is less than Retry-After: 60"
    );

    let rules: HashSet<&str> = Check::ALL.iter().map(|c| c.rule()).collect();
    assert_eq!(rules.len(), Check::ALL.len(), "each check has its own rule");
    assert!(rules.iter().all(|r| r.len() > 20), "{rules:?}");
    assert!(Check::RedirectUri.rule().contains("redirect_uri"));
    assert!(Check::RetryAfterHonoured.rule().contains("Retry-After"));
}
