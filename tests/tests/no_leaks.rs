//! The secret-leak proof: complete flows, every error and every fault, under a TRACE
//! subscriber (bridged from the `log` crate too) and a panic hook. Everything captured
//! (logs of the SDK and the mock, panic messages, the mock's journal and its raw error
//! answers, the callback's answers and `Location` headers with success and error pages
//! configured, Debug and Display of every value the caller sees) is searched for every
//! secret value in every form: raw, hex, base64, a Rust byte list, and a prefix
//! (`support::leaks`). None may appear.

mod support;
use support::owner;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use chart_auth::vault::{FileStore, Keyring, Vault};
use chart_auth::{ChartClient, ChartConnect, ClientSecret, Config, ConnectStateSigner, Flow};
use chart_mock_server::{
    ClientConfig, Fault, FaultKind, MintRequest, MockConfig, MockServer, Scenario,
};
use support::capture::Capture;
use support::{SESSION, fault, receive_via, redirect_uri, session};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_logs_panics_errors_or_the_journal() {
    let capture = Capture::default();
    let writer = capture.clone();
    // `init` also installs the `log` bridge (the `tracing-log` feature).
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();
    log::warn!("log-crate bridge marker");
    let panics = capture.clone();
    std::panic::set_hook(Box::new(move |info| {
        let _ = writeln!(panics.clone(), "PANIC: {info}");
    }));

    let client_secret = format!("client-secret-{}", uuid_like());
    let mut config = MockConfig {
        tls: true,
        slow_ms: 50,
        ..MockConfig::default()
    };
    config.clients = vec![ClientConfig {
        client_id: "leak-test-client".into(),
        client_secret: client_secret.clone(),
        redirect_uris: vec![redirect_uri()],
        allowed_origins: Vec::new(),
    }];
    let mock = MockServer::start(config).await.unwrap();
    let build = |secret: &str| {
        ChartClient::new(
            Config::builder("leak-test-client", ClientSecret::new(secret))
                .api_base(mock.url())
                .webpki_roots(false)
                .add_root_certificates_pem(mock.ca_pem().unwrap().as_bytes())
                .connect_timeout(Duration::from_millis(300))
                .request_timeout(Duration::from_millis(300))
                .deadline(Duration::from_secs(5))
                .build()
                .unwrap(),
        )
        .unwrap()
    };
    let client = build(&client_secret);
    let wrong_secret = format!("wrong-secret-{}", uuid_like());
    let wrong = build(&wrong_secret);

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_owned();
    let keyring = Keyring::generate();
    let keyring_text = keyring.to_text().unwrap();
    let vault = Arc::new(Vault::new(
        "leak-test-client",
        keyring,
        FileStore::open(&dir).unwrap(),
    ));
    let chart = ChartConnect::new(
        client.clone(),
        ConnectStateSigner::generate(),
        vault.clone(),
    );

    let mut secrets: Vec<String> = vec![client_secret.clone(), wrong_secret];
    for line in keyring_text.lines().filter(|l| !l.starts_with('#')) {
        secrets.push(line.split_whitespace().last().unwrap().to_owned());
    }
    let mut seen = String::new();

    let mint = |redirect: bool, scenario: Scenario| {
        mock.mint_code(&MintRequest {
            client_id: "leak-test-client".into(),
            provider_id: None,
            redirect_uri: redirect.then(redirect_uri),
            scenario: Some(scenario),
            ..Default::default()
        })
        .unwrap()
        .code
    };

    // Successes in both flows, stored, introspected, one disconnected.
    for redirect in [true, false] {
        let code = mint(redirect, Scenario::Success);
        secrets.push(code.clone());
        let flow = if redirect {
            Flow::Redirect {
                redirect_uri: redirect_uri(),
            }
        } else {
            Flow::Embedded
        };
        let conn = receive_via(&client, &code, flow);
        seen += &format!("{conn:?}\n");
        let exchanged = conn.exchange(&client).await.unwrap();
        secrets.push(exchanged.access_token().expose_secret().to_owned());
        seen += &format!("{exchanged:?}\n");
        let stored = exchanged.store(&vault).await.unwrap();
        seen += &format!(
            "{stored:?}\n{:?}\n",
            chart
                .introspect(&owner(), stored.account_id())
                .await
                .unwrap()
        );
        if redirect {
            chart
                .disconnect(&owner(), stored.account_id())
                .await
                .unwrap();
        }
        // Reuse: invalid_grant, and the token is revoked.
        let err = receive_via(&client, &code, Flow::Embedded)
            .exchange(&client)
            .await
            .unwrap_err();
        seen += &format!("{err}\n{err:?}\n");
    }

    // The callback endpoint: every answer the frontend could see, success and failure.
    let shared_vault = Arc::new(Vault::new(
        "leak-test-client",
        Keyring::generate(),
        chart_auth::vault::MemoryStore::default(),
    ));
    let shared = ChartConnect::new(
        client.clone(),
        ConnectStateSigner::generate(),
        shared_vault.clone(),
    );
    let plain = chart_auth::CallbackService::builder(shared.clone())
        .session(|_| Some(session()))
        .build();
    let with_pages = chart_auth::CallbackService::builder(shared.clone())
        .session(|_| Some(session()))
        .success_page("https://app.example/connected")
        .error_page("https://app.example/connect-failed")
        .build();
    for (callback, redirect, scenario) in [
        (&plain, true, Scenario::Success),
        (&plain, false, Scenario::Success),
        (&plain, true, Scenario::ServerError),
        (&with_pages, true, Scenario::Success),
        (&with_pages, false, Scenario::Denied),
        (&with_pages, true, Scenario::ServerError),
    ] {
        let code = mint(redirect, scenario);
        secrets.push(code.clone());
        let flow = if redirect {
            Flow::Redirect {
                redirect_uri: redirect_uri(),
            }
        } else {
            Flow::Embedded
        };
        let state = shared.begin_connect(flow, SESSION, &owner()).unwrap().state;
        let req = if redirect {
            let q = format!("code={code}&state={state}");
            http::Request::get(format!("/api/chart/callback?{q}"))
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap()
        } else {
            let body = serde_json::json!({"code": code, "state": state}).to_string();
            http::Request::post("/api/chart/callback")
                .header("content-type", "application/json")
                .body(http_body_util::Full::new(bytes::Bytes::from(body)))
                .unwrap()
        };
        let resp = callback.handle(req).await;
        seen += &format!("{:?}\n", resp.headers());
        let body = http_body_util::BodyExt::collect(resp.into_body())
            .await
            .unwrap()
            .to_bytes();
        seen += &String::from_utf8_lossy(&body);
    }
    for conn in shared_vault.list(&owner()).await.unwrap() {
        secrets.push(
            shared_vault
                .unseal(&owner(), conn.account_id())
                .await
                .unwrap()
                .expose_secret()
                .to_owned(),
        );
    }

    // Every error row and scenario.
    let mut errors = Vec::new();
    for scenario in [
        Scenario::ServerError,
        Scenario::Denied,
        Scenario::Slow,
        Scenario::RateLimited,
    ] {
        let code = mint(false, scenario);
        secrets.push(code.clone());
        let result = receive_via(&client, &code, Flow::Embedded)
            .exchange(&client)
            .await;
        // `slow` and `rate_limited` end in a token, which joins the secrets.
        if let Ok(exchanged) = &result {
            secrets.push(exchanged.access_token().expose_secret().to_owned());
            seen += &format!("{exchanged:?}\n");
        }
        errors.push(result.map(|_| ()));
    }
    assert!(
        errors.iter().filter(|e| e.is_ok()).count() >= 2,
        "slow and rate_limited gave tokens"
    );
    let code = mint(false, Scenario::Success);
    secrets.push(code.clone());
    errors.push(
        receive_via(&wrong, &code, Flow::Embedded)
            .exchange(&wrong)
            .await
            .map(|_| ()),
    );
    mock.advance_clock(Duration::from_secs(601));
    errors.push(
        receive_via(&client, &code, Flow::Embedded)
            .exchange(&client)
            .await
            .map(|_| ()),
    );
    for status in [400u16, 401, 405, 413, 415, 429, 500, 503] {
        mock.add_fault(Fault {
            status: Some(status),
            retry_after: Some(0),
            times: 3,
            ..fault(FaultKind::Status)
        });
        let code = mint(false, Scenario::Success);
        secrets.push(code.clone());
        errors.push(
            receive_via(&client, &code, Flow::Embedded)
                .exchange(&client)
                .await
                .map(|_| ()),
        );
        mock.clear_faults();
    }
    // Every fault kind.
    for f in [
        fault(FaultKind::Reset),
        fault(FaultKind::Empty),
        fault(FaultKind::Truncated),
        fault(FaultKind::MalformedJson),
        Fault {
            delay_ms: Some(1_000),
            ..fault(FaultKind::Latency)
        },
    ] {
        mock.add_fault(f);
        let code = mint(true, Scenario::Success);
        secrets.push(code.clone());
        errors.push(
            receive_via(
                &client,
                &code,
                Flow::Redirect {
                    redirect_uri: redirect_uri(),
                },
            )
            .exchange(&client)
            .await
            .map(|_| ()),
        );
    }
    for e in errors {
        match e {
            Ok(()) => seen += "ok\n",
            Err(e) => seen += &format!("{e}\n{e:?}\n{}\n", e.user_message()),
        }
    }

    // A panic while a secret is in scope shows only the redacted Debug.
    let token = vault
        .list(&owner())
        .await
        .unwrap()
        .pop()
        .map(|s| s.account_id().to_owned())
        .unwrap();
    let token = vault.unseal(&owner(), &token).await.unwrap();
    let _ = std::panic::catch_unwind(|| panic!("boom with {token:?}"));

    seen += &serde_json::to_string(&mock.journal()).unwrap();
    seen += &raw_error_answers(&mock, &client_secret, token.expose_secret(), &secrets).await;
    seen += &format!("{client:?}\n{vault:?}\n");
    for entry in std::fs::read_dir(&dir).unwrap() {
        seen += &String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap());
    }
    let _ = std::panic::take_hook();
    let logs = String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned();
    assert!(logs.contains("chart.exchange"), "the TRACE capture works");
    assert!(
        logs.contains("log-crate bridge marker"),
        "the log bridge works"
    );
    assert!(logs.contains("PANIC: "), "the panic hook works");
    assert!(
        seen.contains("app.example/connected"),
        "the success page was used"
    );
    assert!(
        seen.contains("app.example/connect-failed"),
        "the error page was used"
    );
    let everything = format!("{logs}\n{seen}");
    assert!(secrets.len() >= 30, "{} secrets", secrets.len());
    let secrets: Vec<Vec<u8>> = secrets.into_iter().map(String::into_bytes).collect();
    support::leaks::assert_no_leak(everything.as_bytes(), &secrets, "captured output");
}

/// The mock's raw answers to requests that carry secrets and fail: a wrong secret, a
/// spent code, a mismatched redirect_uri, a form body, a live access token in a URL.
async fn raw_error_answers(
    mock: &MockServer,
    secret: &str,
    token: &str,
    secrets: &[String],
) -> String {
    assert!(
        secrets.iter().any(|s| s == token),
        "the token in the URL is one the leak search looks for"
    );
    let code = secrets
        .iter()
        .find(|s| mock.chart().code_id(s).is_some())
        .expect("a code the mock knows")
        .clone();
    let tls = support::tls::trusting(mock.ca_pem().unwrap());
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let url = |path: &str| format!("{}{path}", mock.url().trim_end_matches('/'));
    let body = |secret: &str, redirect: Option<&str>| {
        let mut b = serde_json::json!({
            "client_id": "leak-test-client", "client_secret": secret, "code": code,
        });
        if let Some(r) = redirect {
            b["redirect_uri"] = r.into();
        }
        b.to_string()
    };
    let mut out = String::new();
    let requests = [
        http.post(url("/auth/token"))
            .header("content-type", "application/json")
            .body(body("wrong-secret-for-the-leak-test", None)),
        http.post(url("/auth/token"))
            .header("content-type", "application/json")
            .body(body(secret, Some("https://evil.example/cb"))),
        http.post(url("/auth/token"))
            .header("content-type", "application/json")
            .body(body(secret, None)),
        http.post(url("/auth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("client_secret={secret}&code={code}")),
        http.get(url(&format!("/introspect?access_token={token}")))
            .bearer_auth(token),
    ];
    for request in requests {
        let answer = request.send().await.unwrap();
        out += &format!("{:?}\n", answer.headers());
        out += &answer.text().await.unwrap();
    }
    out
}

fn uuid_like() -> String {
    let mut b = [0u8; 12];
    getrandom_fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn getrandom_fill(b: &mut [u8]) {
    use std::hash::{BuildHasher, RandomState};
    for (i, x) in b.iter_mut().enumerate() {
        *x = RandomState::new().hash_one(i) as u8;
    }
}
