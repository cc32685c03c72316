//! The callback endpoint against the TLS mock: both flows, every refusal, every
//! exchange error mapped to its status and message, and never a token in an answer.

mod support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use chart_auth::vault::{MemoryStore, Vault};
use chart_auth::{CallbackService, ConnectStateSigner, Flow};
use chart_mock_server::{Fault, FaultKind, MockServer, Scenario};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};
use support::*;

struct Callback {
    env: Env,
    vault: Arc<Vault<MemoryStore>>,
    service: CallbackService<MemoryStore>,
    pages: Option<CallbackService<MemoryStore>>,
}

async fn setup() -> Callback {
    let env = env().await;
    let vault = env.vault.clone();
    let session = |parts: &http::request::Parts| {
        let cookie = parts.headers.get("cookie")?.to_str().ok()?;
        cookie.strip_prefix("sid=").map(|s| chart_auth::Session {
            binding: s.as_bytes().to_vec(),
            owner: owner(),
        })
    };
    let service = CallbackService::builder(env.chart.clone())
        .session(session)
        .build();
    let pages = CallbackService::builder(env.chart.clone())
        .session(session)
        .success_page("/accounts")
        .error_page("/oops?from=chart")
        .build();
    Callback {
        env,
        vault,
        service,
        pages: Some(pages),
    }
}

fn sid() -> &'static str {
    std::str::from_utf8(SESSION).unwrap()
}

async fn call<S: chart_auth::vault::TokenStore + 'static>(
    service: &CallbackService<S>,
    req: Request<Full<Bytes>>,
) -> (Response<()>, Value, String) {
    let resp = service.handle(req).await;
    let (parts, body) = resp.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let text = format!("{:?}\n{}", parts.headers, String::from_utf8_lossy(&bytes));
    let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (Response::from_parts(parts, ()), value, text)
}

fn get(query: &str, session: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::get(format!("/api/chart/callback?{query}"));
    if let Some(s) = session {
        b = b.header("cookie", format!("sid={s}"));
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

fn post(body: Value, session: Option<&str>) -> Request<Full<Bytes>> {
    let mut b = Request::post("/api/chart/callback").header("content-type", "application/json");
    if let Some(s) = session {
        b = b.header("cookie", format!("sid={s}"));
    }
    b.body(Full::new(Bytes::from(body.to_string()))).unwrap()
}

fn q(code: &str, state: &str) -> String {
    form_urlencoded::Serializer::new(String::new())
        .append_pair("code", code)
        .append_pair("state", state)
        .finish()
}

impl Callback {
    fn redirect_state(&self) -> String {
        self.env
            .chart
            .begin_connect(
                Flow::Redirect {
                    redirect_uri: redirect_uri(),
                },
                SESSION,
                &owner(),
            )
            .unwrap()
            .state
    }
    fn embedded_state(&self) -> String {
        self.env
            .chart
            .begin_connect(Flow::Embedded, SESSION, &owner())
            .unwrap()
            .state
    }
}

#[tokio::test]
async fn both_flows_connect_and_never_answer_with_the_token() {
    let cb = setup().await;
    let code = cb.env.mint(true, Scenario::Success);
    let (resp, body, text) = call(
        &cb.service,
        get(&q(&code, &cb.redirect_state()), Some(sid())),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    assert_eq!(body["status"], "connected");
    assert_eq!(body["provider_id"], "turbotax");
    let account = body["account_id"].as_str().unwrap().to_owned();
    let token = cb.vault.unseal(&owner(), &account).await.unwrap();
    assert!(!text.contains(token.expose_secret()) && !text.contains(&code));
    assert_eq!(resp.headers()["cache-control"], "no-store");
    assert_eq!(resp.headers()["referrer-policy"], "no-referrer");

    let code = cb.env.mint(false, Scenario::Success);
    let (resp, body, text) = call(
        &cb.service,
        post(
            json!({"code": code, "state": cb.embedded_state()}),
            Some(sid()),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    let token = cb
        .vault
        .unseal(&owner(), body["account_id"].as_str().unwrap())
        .await
        .unwrap();
    assert!(!text.contains(token.expose_secret()));
    assert_eq!(cb.vault.list(&owner()).await.unwrap().len(), 2);

    // With pages configured, the redirect flow redirects.
    let code = cb.env.mint(true, Scenario::Success);
    let (resp, _, _) = call(
        cb.pages.as_ref().unwrap(),
        get(&q(&code, &cb.redirect_state()), Some(sid())),
    )
    .await;
    assert_eq!(
        (resp.status(), resp.headers()["location"].to_str().unwrap()),
        (StatusCode::SEE_OTHER, "/accounts")
    );
}

#[tokio::test]
async fn refusals_have_the_right_status_and_message() {
    let cb = setup().await;
    let code = cb.env.mint(true, Scenario::Success);
    let state = cb.redirect_state();
    let check =
        |(resp, body, _): (Response<()>, Value, String), status: StatusCode, error: &str| {
            assert_eq!(resp.status(), status, "{body}");
            assert_eq!(body["error"], error, "{body}");
            assert!(
                body["message"].as_str().is_some_and(|m| m.ends_with('.')),
                "{body}"
            );
        };
    // A missing code, or a missing state.
    check(
        call(&cb.service, get(&format!("state={state}"), Some(sid()))).await,
        StatusCode::BAD_REQUEST,
        "bad_callback",
    );
    check(
        call(&cb.service, get(&format!("code={code}"), Some(sid()))).await,
        StatusCode::BAD_REQUEST,
        "bad_callback",
    );
    // A forged state.
    let forged = ConnectStateSigner::generate().issue(
        &Flow::Redirect {
            redirect_uri: redirect_uri(),
        },
        SESSION,
        &owner(),
    );
    check(
        call(&cb.service, get(&q(&code, &forged), Some(sid()))).await,
        StatusCode::FORBIDDEN,
        "invalid_state",
    );
    // An expired state, signed by the same key an hour ago.
    let old = ConnectStateSigner::from_key(&STATE_KEY).unwrap().issue_at(
        &Flow::Redirect {
            redirect_uri: redirect_uri(),
        },
        SESSION,
        &owner(),
        SystemTime::now() - Duration::from_secs(3600),
    );
    let (resp, body, _) = call(&cb.service, get(&q(&code, &old), Some(sid()))).await;
    check(
        (resp, body.clone(), String::new()),
        StatusCode::BAD_REQUEST,
        "invalid_state",
    );
    assert_eq!(
        body["message"],
        "This connection attempt took too long. Please start again."
    );
    // A state from another session, and no session at all.
    check(
        call(&cb.service, get(&q(&code, &state), Some("someone-else"))).await,
        StatusCode::FORBIDDEN,
        "invalid_state",
    );
    check(
        call(&cb.service, get(&q(&code, &state), None)).await,
        StatusCode::FORBIDDEN,
        "invalid_state",
    );
    // A redirect-flow state posted as an embedded callback.
    check(
        call(
            &cb.service,
            post(json!({"code": code, "state": state}), Some(sid())),
        )
        .await,
        StatusCode::FORBIDDEN,
        "invalid_state",
    );
    // Bad embedded bodies.
    let text_body = Request::post("/")
        .header("cookie", format!("sid={}", sid()))
        .body(Full::new(Bytes::from("code=x")))
        .unwrap();
    check(
        call(&cb.service, text_body).await,
        StatusCode::BAD_REQUEST,
        "bad_callback",
    );
    check(
        call(
            &cb.service,
            post(json!(["not", "an", "object"]), Some(sid())),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "bad_callback",
    );
    // None of these spent the code.
    let (resp, _, _) = call(&cb.service, get(&q(&code, &state), Some(sid()))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    // A body just under the 8 KiB limit is read in full.
    assert_eq!(chart_auth::MAX_CALLBACK_BODY, 8 * 1024);
    let code = cb.env.mint(false, Scenario::Success);
    let padding = "x".repeat(8_000);
    let (resp, body, _) = call(
        &cb.service,
        post(
            json!({"code": code, "state": cb.embedded_state(), "padding": padding}),
            Some(sid()),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    // Debug names the pages, and nothing secret of the flow behind it.
    let builder = CallbackService::builder(cb.env.chart.clone()).success_page("/welcome");
    let debug = format!(
        "{:?} {:?} {builder:?}",
        cb.service,
        cb.pages.as_ref().unwrap()
    );
    assert!(
        debug.contains("CallbackBuilder") && debug.contains("/welcome"),
        "{debug}"
    );
    assert!(
        debug.contains("CallbackService") && debug.contains("/oops"),
        "{debug}"
    );
    for secret in [
        chart_mock_server::SANDBOX_CLIENT_SECRET,
        "session-of-the-test-user",
    ] {
        assert!(!debug.contains(secret), "{debug}");
    }
    // Other methods.
    let put = Request::put("/").body(Full::new(Bytes::new())).unwrap();
    let (resp, body, _) = call(&cb.service, put).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(resp.headers()["allow"], "GET, POST");
    assert_eq!(body["error"], "method_not_allowed");
}

#[tokio::test]
async fn a_replayed_callback_is_refused_and_the_first_account_stays() {
    let cb = setup().await;
    let code = cb.env.mint(true, Scenario::Success);
    let query = q(&code, &cb.redirect_state());
    let (resp, body, _) = call(&cb.service, get(&query, Some(sid()))).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let account = body["account_id"].as_str().unwrap().to_owned();
    let (resp, body, _) = call(&cb.service, get(&query, Some(sid()))).await;
    assert_eq!(
        (resp.status(), body["error"].as_str()),
        (StatusCode::CONFLICT, Some("already_used"))
    );
    // A refresh after success reads as "already connected", not "not valid".
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("already completed")),
        "{body}"
    );
    assert_eq!(
        cb.env.token_requests_for(&code),
        1,
        "the replay never reached Chart"
    );
    // So the first connection still works: its token was not revoked.
    cb.env
        .chart
        .introspect(&owner(), &account)
        .await
        .expect("still connected");
}

#[tokio::test]
async fn access_denied_is_a_clean_cancel() {
    let cb = setup().await;
    let state = cb.redirect_state();
    let (resp, body, _) = call(
        &cb.service,
        get(&format!("error=access_denied&state={state}"), Some(sid())),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        (body["status"].as_str(), body["error"].as_str()),
        (Some("cancelled"), Some("access_denied"))
    );
    assert_eq!(
        body["message"],
        "You cancelled the connection. You can connect your account at any time."
    );
    let (resp, _, _) = call(
        cb.pages.as_ref().unwrap(),
        get(&format!("error=access_denied&state={state}"), Some(sid())),
    )
    .await;
    assert_eq!(
        resp.headers()["location"],
        "/oops?from=chart&error=access_denied\
         &message=You+cancelled+the+connection.+You+can+connect+your+account+at+any+time."
    );
    // A cancel with a state from another session is refused like any forged callback.
    let (resp, _, _) = call(
        &cb.service,
        get(&format!("error=access_denied&state={state}"), Some("x")),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn every_exchange_error_maps_to_its_status_and_message() {
    let cb = setup().await;
    let cases: Vec<(Arrange, Scenario, StatusCode, &str)> = vec![
        (
            Box::new(|_| {}),
            Scenario::Denied,
            StatusCode::BAD_REQUEST,
            "invalid_grant",
        ),
        (
            Box::new(|_| {}),
            Scenario::ServerError,
            StatusCode::BAD_GATEWAY,
            "chart_unavailable",
        ),
        (
            Box::new(|m| m.add_fault(fault(FaultKind::Status, Some(401)))),
            Scenario::Success,
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid_client",
        ),
        (
            Box::new(|m| m.add_fault(fault(FaultKind::Status, Some(400)))),
            Scenario::Success,
            StatusCode::INTERNAL_SERVER_ERROR,
            "invalid_request",
        ),
        (
            Box::new(|m| {
                m.add_fault(Fault {
                    retry_after: Some(600),
                    ..fault(FaultKind::Status, Some(429))
                })
            }),
            Scenario::Success,
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
        ),
        (
            Box::new(|m| m.add_fault(fault(FaultKind::Reset, None))),
            Scenario::Success,
            StatusCode::BAD_GATEWAY,
            "outcome_unknown",
        ),
        (
            Box::new(|m| m.add_fault(fault(FaultKind::Empty, None))),
            Scenario::Success,
            StatusCode::BAD_GATEWAY,
            "outcome_unknown",
        ),
        (
            Box::new(|m| m.add_fault(fault(FaultKind::Truncated, None))),
            Scenario::Success,
            StatusCode::BAD_GATEWAY,
            "outcome_unknown",
        ),
        (
            Box::new(|m| m.add_fault(fault(FaultKind::MalformedJson, None))),
            Scenario::Success,
            StatusCode::BAD_GATEWAY,
            "malformed_response",
        ),
    ];
    for (arrange, scenario, status, error) in cases {
        arrange(&cb.env.mock);
        let code = cb.env.mint(true, scenario);
        let query = q(&code, &cb.redirect_state());
        let (resp, body, text) = call(&cb.service, get(&query, Some(sid()))).await;
        assert_eq!(
            (resp.status(), body["error"].as_str()),
            (status, Some(error)),
            "{body}"
        );
        assert!(!body["message"].as_str().unwrap().is_empty());
        assert!(!text.contains(&code));
        cb.env.mock.clear_faults();
        // Each of these may have spent the code, so the claim stays: a replay (a
        // reload) is refused and never resends the code.
        let token_requests = || {
            let journal = cb.env.mock.journal();
            journal.iter().filter(|e| e.path == "/auth/token").count()
        };
        let sent = token_requests();
        let (resp, body, _) = call(&cb.service, get(&query, Some(sid()))).await;
        assert_eq!(
            (resp.status(), body["error"].as_str()),
            (StatusCode::CONFLICT, Some("already_used")),
            "{error}: a replay after a possibly spent code"
        );
        assert_eq!(
            token_requests(),
            sent,
            "{error}: the replay resent the code"
        );
    }
    let (resp, _, _) = call(
        cb.pages.as_ref().unwrap(),
        get(&q("never-issued", &cb.redirect_state()), Some(sid())),
    )
    .await;
    assert_eq!(
        resp.headers()["location"],
        "/oops?from=chart&error=invalid_grant\
         &message=This+connection+link+expired+or+was+already+used.+Please+connect+your+account+again."
    );
    assert!(
        cb.vault.list(&owner()).await.unwrap().is_empty(),
        "no failed callback stored anything"
    );
}

#[tokio::test]
async fn it_serves_as_a_hyper_service() {
    let cb = setup().await;
    let code = cb.env.mint(true, Scenario::Success);
    let req = get(&q(&code, &cb.redirect_state()), Some(sid()));
    let resp = hyper::service::Service::call(&cb.service, req)
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
}

type Arrange = Box<dyn Fn(&MockServer)>;

fn fault(kind: FaultKind, status: Option<u16>) -> Fault {
    Fault {
        status,
        ..support::fault(kind)
    }
}

/// A store whose writes fail, as a database that went away would.
#[derive(Clone, Debug, Default)]
struct BrokenStore(MemoryStore);

impl chart_auth::vault::TokenStore for BrokenStore {
    async fn get(
        &self,
        key: &chart_auth::vault::RecordKey,
    ) -> Result<Option<chart_auth::vault::StoredRecord>, chart_auth::StoreError> {
        self.0.get(key).await
    }
    async fn put(
        &self,
        _: &chart_auth::vault::StoredRecord,
        _: chart_auth::vault::Expect,
    ) -> Result<u64, chart_auth::StoreError> {
        Err(chart_auth::StoreError::Backend {
            op: "put",
            source: "the database went away".into(),
        })
    }
    async fn delete(
        &self,
        key: &chart_auth::vault::RecordKey,
        expect: chart_auth::vault::Expect,
    ) -> Result<bool, chart_auth::StoreError> {
        self.0.delete(key, expect).await
    }
    async fn list(&self) -> Result<Vec<chart_auth::vault::RecordKey>, chart_auth::StoreError> {
        self.0.list().await
    }
}

/// No live token is dropped: a good exchange whose token cannot be stored is revoked
/// at Chart, and the error says whether that worked.
#[tokio::test]
async fn a_token_that_cannot_be_stored_is_revoked_and_the_error_says_so() {
    let env = env().await;
    let chart = chart_auth::ChartConnect::new(
        env.client.clone(),
        ConnectStateSigner::from_key(&STATE_KEY).unwrap(),
        Arc::new(Vault::new(
            chart_mock_server::SANDBOX_CLIENT_ID,
            chart_auth::vault::Keyring::generate(),
            BrokenStore::default(),
        )),
    );

    // 1. Revoked: /disconnect answered.
    let err = chart
        .complete(env.redirect_code(Scenario::Success))
        .await
        .unwrap_err();
    let chart_auth::Error::NotStored { revoked, .. } = &err else {
        panic!("{err:?}");
    };
    assert!(*revoked, "{err}");
    assert_eq!(err.label(), "not_stored");
    let disconnects = env
        .mock
        .journal()
        .iter()
        .filter(|e| e.path == "/disconnect" && e.status == 200)
        .count();
    assert_eq!(disconnects, 1, "the new token was revoked at Chart");

    // 2. Not revoked: /disconnect fails too, and the error says so.
    env.mock.add_fault(Fault {
        path: "/disconnect".into(),
        ..fault(FaultKind::Status, Some(500))
    });
    let err = chart
        .complete(env.embedded_code(Scenario::Success))
        .await
        .unwrap_err();
    assert!(
        matches!(err, chart_auth::Error::NotStored { revoked: false, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("revoked at Chart: false"), "{err}");
}

/// One session cannot fill the replay guard: other sessions still connect.
#[tokio::test]
async fn one_session_cannot_fill_the_memory_replay_guard() {
    use chart_auth::{Claim, MemoryReplayGuard, ReplayGuard, SESSION_QUOTA};
    let guard = Arc::new(MemoryReplayGuard::new());
    let signer = ConnectStateSigner::from_key(&STATE_KEY).unwrap();
    let in_an_hour = SystemTime::now() + Duration::from_secs(3600);
    // The attacker's own valid states, as many as they like.
    for _ in 0..5_000 {
        let state = signer.issue(&Flow::Embedded, b"attacker", &owner());
        let verified = signer
            .verify(
                &state,
                b"attacker",
                &owner(),
                chart_auth::FlowKind::Embedded,
            )
            .unwrap();
        let claim = Claim {
            id: verified.id(),
            expires_at: in_an_hour,
            session: b"attacker",
        };
        assert!(guard.claim(claim).await.unwrap());
    }
    assert!(guard.len() <= SESSION_QUOTA, "held {}", guard.len());

    // Everyone else still connects, through a callback on the same guard.
    let cb = setup().await;
    let service = CallbackService::builder(cb.env.chart.clone().with_replay_guard(guard.clone()))
        .session(|parts| {
            let cookie = parts.headers.get("cookie")?.to_str().ok()?;
            cookie.strip_prefix("sid=").map(|s| chart_auth::Session {
                binding: s.as_bytes().to_vec(),
                owner: owner(),
            })
        })
        .build();
    // A state that fails verification takes no slot.
    let held = guard.len();
    let forged = ConnectStateSigner::generate().issue(
        &Flow::Redirect {
            redirect_uri: redirect_uri(),
        },
        sid().strip_prefix("sid=").unwrap_or(sid()).as_bytes(),
        &owner(),
    );
    let (resp, _, _) = call(&service, get(&q("some-code", &forged), Some(sid()))).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(guard.len(), held, "a forged state took a slot");

    let code = cb.env.mint(true, Scenario::Success);
    let query = q(&code, &cb.redirect_state());
    let (resp, body, _) = call(&service, get(&query, Some(sid()))).await;
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    // And a replay of it is still refused, before the code is resent.
    let (resp, _, _) = call(&service, get(&query, Some(sid()))).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(cb.env.token_requests_for(&code), 1);
}

/// The callback's answer when the token could not be stored: a 500 that names the case,
/// a sentence for the user, no token, and nothing stored; the claim stays (the code was
/// spent), so a reload is refused rather than resent.
#[tokio::test]
async fn the_callback_answers_not_stored_with_a_user_message_and_no_token() {
    let cb = setup().await;
    let chart = chart_auth::ChartConnect::new(
        cb.env.client.clone(),
        ConnectStateSigner::from_key(&STATE_KEY).unwrap(),
        Arc::new(Vault::new(
            chart_mock_server::SANDBOX_CLIENT_ID,
            chart_auth::vault::Keyring::generate(),
            BrokenStore::default(),
        )),
    );
    let service = CallbackService::builder(chart)
        .session(|parts| {
            let cookie = parts.headers.get("cookie")?.to_str().ok()?;
            cookie.strip_prefix("sid=").map(|s| chart_auth::Session {
                binding: s.as_bytes().to_vec(),
                owner: owner(),
            })
        })
        .build();
    let code = cb.env.mint(true, Scenario::Success);
    let query = q(&code, &cb.redirect_state());
    let (resp, body, text) = call(&service, get(&query, Some(sid()))).await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["error"].as_str()),
        (Some("error"), Some("not_stored"))
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        !message.is_empty() && !message.contains("store"),
        "{message}"
    );
    let issued = cb.env.mock.journal();
    let token_answer = issued
        .iter()
        .find(|e| e.path == "/auth/token" && e.status == 200)
        .expect("the exchange succeeded");
    assert!(!text.contains(&token_answer.request_id));
    assert!(!text.contains("access_token"));
    let (resp, _, _) = call(&service, get(&query, Some(sid()))).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
    assert_eq!(cb.env.token_requests_for(&code), 1);
}

/// A session at its quota evicts its own oldest claims, never another session's, even
/// when the other session's claim expires sooner.
#[tokio::test]
async fn a_session_at_its_quota_never_evicts_another_sessions_claim() {
    use chart_auth::{Claim, MemoryReplayGuard, ReplayGuard, SESSION_QUOTA};
    let guard = MemoryReplayGuard::new();
    let signer = ConnectStateSigner::from_key(&STATE_KEY).unwrap();
    let claim_for = |session: &'static [u8], expires_in: u64| {
        let state = signer.issue(&Flow::Embedded, session, &owner());
        let id = signer
            .verify(&state, session, &owner(), chart_auth::FlowKind::Embedded)
            .unwrap()
            .id();
        Claim {
            id,
            expires_at: SystemTime::now() + Duration::from_secs(expires_in),
            session,
        }
    };
    // The victim claimed first, so their state expires first.
    let victim = claim_for(b"victim", 600);
    assert!(guard.claim(victim).await.unwrap());
    let mut attacker = Vec::new();
    for n in 0..3 * SESSION_QUOTA as u64 {
        let claim = claim_for(b"attacker", 601 + n);
        assert!(guard.claim(claim).await.unwrap());
        attacker.push(claim.id);
    }
    assert!(
        !guard.claim(victim).await.unwrap(),
        "the victim's claim was evicted by another session: a replay would resend the code"
    );
    assert_eq!(guard.len(), 1 + SESSION_QUOTA);
    // The attacker's own oldest claims went; the newest are still held.
    let newest = Claim {
        id: *attacker.last().unwrap(),
        ..victim
    };
    assert!(!guard.claim(newest).await.unwrap());
}

#[tokio::test]
async fn limits_posted_errors_retry_after_and_a_released_replay_claim() {
    let cb = setup().await;

    // A state over the limit is refused before any work; so is a body over 8 KiB.
    let huge_state = "A".repeat(chart_auth::MAX_CONNECT_STATE_LEN + 1);
    let (resp, body, _) = call(&cb.service, get(&q("code", &huge_state), Some(sid()))).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "invalid_state");
    let padding = "x".repeat(chart_auth::MAX_CALLBACK_BODY);
    let (resp, body, _) = call(
        &cb.service,
        post(
            json!({"code": "c", "state": cb.embedded_state(), "padding": padding}),
            Some(sid()),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "bad_callback");

    // A code longer than any Chart issues is the caller's bad input (400), and is never
    // sent to Chart, which would refuse it as a malformed request of ours.
    let long_code = "c".repeat(chart_auth::MAX_CODE_LEN + 1);
    let (resp, body, _) = call(
        &cb.service,
        get(&q(&long_code, &cb.redirect_state()), Some(sid())),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "bad_callback");
    assert!(
        cb.env
            .mock
            .journal()
            .iter()
            .all(|e| e.path != "/auth/token"),
        "never sent"
    );

    // The embedded flow's cancel arrives as a POSTed {error, state}.
    let (resp, body, _) = call(
        &cb.service,
        post(
            json!({"error": "access_denied", "state": cb.embedded_state()}),
            Some(sid()),
        ),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK, "{body}");
    assert_eq!(
        (body["status"].as_str(), body["error"].as_str()),
        (Some("cancelled"), Some("access_denied"))
    );

    // Chart's Retry-After reaches the frontend on a 429.
    cb.env.mock.add_fault(Fault {
        retry_after: Some(600),
        ..fault(FaultKind::Status, Some(429))
    });
    let code = cb.env.mint(true, Scenario::Success);
    let (resp, body, _) = call(
        &cb.service,
        get(&q(&code, &cb.redirect_state()), Some(sid())),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert_eq!(resp.headers()["retry-after"], "600");

    // A code that never reached Chart releases its replay claim: the same callback,
    // retried through an instance that can reach Chart, connects.
    let guard: Arc<dyn chart_auth::ReplayGuard> =
        Arc::new(chart_auth::MemoryReplayGuard::default());
    let unreachable = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = chart_auth::ChartClient::new(
            sdk_config(&cb.env.mock)
                .api_base(format!("https://127.0.0.1:{port}"))
                .retry(chart_auth::RetryPolicy {
                    max_attempts: 1,
                    ..chart_auth::RetryPolicy::default()
                })
                .build()
                .unwrap(),
        )
        .unwrap();
        let chart = chart_auth::ChartConnect::new(
            client,
            ConnectStateSigner::from_key(&STATE_KEY).unwrap(),
            cb.vault.clone(),
        );
        CallbackService::builder(chart.with_replay_guard(guard.clone()))
            .session(|_| Some(session()))
            .build()
    };
    let reachable = CallbackService::builder(cb.env.chart.clone().with_replay_guard(guard))
        .session(|_| Some(session()))
        .build();
    let code = cb.env.mint(true, Scenario::Success);
    let state = cb.redirect_state();
    let (resp, body, _) = call(&unreachable, get(&q(&code, &state), None)).await;
    assert!(resp.status().is_server_error(), "{body}");
    assert_eq!(
        cb.env.token_requests_for(&code),
        0,
        "the code never reached Chart"
    );
    let (resp, body, _) = call(&reachable, get(&q(&code, &state), None)).await;
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "the claim was released: {body}"
    );
    // And now it is claimed for good.
    let (resp, _, _) = call(&reachable, get(&q(&code, &state), None)).await;
    assert_eq!(resp.status(), StatusCode::CONFLICT);
}

/// A session's Debug names the owner and never the binding: a session id is a credential.
#[test]
fn a_session_shows_its_owner_and_never_its_binding() {
    assert_eq!(
        format!("{:?}", session()),
        r#"Session { binding: "<redacted>", owner: Owner("owner-test-user") }"#
    );
}
