//! Browser tests in headless Chromium (Debian's `chromium` and `chromium-driver`):
//! the mock's Connect page in both flows, and the demo end to end. `.ci/run` installs
//! the browser and runs them with `cargo test -p chart-e2e --test browser -- --ignored`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use chart_auth::vault::{FileStore, Keyring, MemoryStore, Vault};
use chart_auth::{
    AuthorizationCode, ChartClient, ChartConnect, ClientSecret, Config, ConnectStateSigner, Flow,
    FlowKind,
};
use chart_mock_server::{ClientConfig, MockConfig, MockServer};
use fantoccini::{Client, ClientBuilder, Locator};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(20);

/// chromedriver and a headless Chromium session; both end on drop.
///
/// chromedriver runs in a process group of its own, with the Chromium it starts, so
/// that dropping this kills all of them before the profile directory is removed
/// (`Drop` cannot await the WebDriver session's end).
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let group = format!("-{}", self.driver.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // Wait until no process of the group is left, so the profile can go.
        for _ in 0..100 {
            let alive = Command::new("kill")
                .args(["-0", "--", &group])
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !alive {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn browser() -> Browser {
    let port = free_port();
    let driver = Command::new("chromedriver")
        .process_group(0)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (apt-get install chromium-driver)");
    let profile = tempfile::tempdir().unwrap();
    let caps = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--disable-background-networking", "--disable-component-update", "--disable-sync",
                     "--no-first-run", "--window-size=1200,900",
                     "--disable-renderer-backgrounding", "--disable-background-timer-throttling",
                     "--disable-backgrounding-occluded-windows",
                     format!("--user-data-dir={}", profile.path().display())]
        }
    });
    let caps: serde_json::Map<String, serde_json::Value> = caps.as_object().unwrap().clone();
    let url = format!("http://127.0.0.1:{port}");
    // chromedriver takes a moment to listen: retry the session for a bounded time.
    let mut last = None;
    for _ in 0..100 {
        match ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&url)
            .await
        {
            Ok(client) => {
                return Browser {
                    client,
                    driver,
                    _profile: profile,
                };
            }
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no WebDriver session: {last:?}");
}

/// Serves one fixed HTML page at every path, for the callback receiver and the host page.
async fn serve_page(html: String) -> SocketAddr {
    serve_page_on(html, 0).await
}

async fn mock_with_redirect(redirect: &str) -> (MockServer, ChartConnect<MemoryStore>) {
    let client = ClientConfig {
        client_id: "browser-client".into(),
        client_secret: "browser-secret".into(),
        redirect_uris: vec![redirect.to_owned()],
        allowed_origins: Vec::new(),
    };
    let mock = MockServer::start(MockConfig {
        clients: vec![client],
        ..MockConfig::default()
    })
    .await
    .unwrap();
    let sdk = ChartConnect::new(
        ChartClient::new(
            Config::builder("browser-client", ClientSecret::new("browser-secret"))
                .api_base(mock.url())
                .build()
                .unwrap(),
        )
        .unwrap(),
        ConnectStateSigner::generate(),
        Arc::new(Vault::new(
            "browser-client",
            Keyring::generate(),
            MemoryStore::default(),
        )),
    );
    (mock, sdk)
}

#[tokio::test]
#[ignore = "needs Debian's chromium and chromedriver; .ci/run runs it"]
async fn connect_page_redirect_flow_reaches_the_callback_and_the_code_exchanges() {
    let receiver = serve_page("<h1 id=received>callback received</h1>".into()).await;
    let redirect = format!("http://127.0.0.1:{}/api/chart/callback", receiver.port());
    let (mock, sdk) = mock_with_redirect(&redirect).await;
    let start = sdk
        .begin_connect(
            Flow::Redirect {
                redirect_uri: redirect.clone(),
            },
            b"browser-session",
            &owner(),
        )
        .unwrap();
    let b = browser().await;
    let connect = format!(
        "{}/connect?{}",
        mock.url(),
        start.connect_url.unwrap().split_once('?').unwrap().1
    );
    b.client.goto(&connect).await.unwrap();
    b.client
        .find(Locator::Css("#connect"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#received"))
        .await
        .unwrap();
    let url = b.client.current_url().await.unwrap();
    assert!(url.as_str().starts_with(&redirect), "{url}");
    let pairs: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs["state"], start.state);
    let pending = sdk
        .receive_code(
            AuthorizationCode::new(pairs["code"].clone()),
            &pairs["state"],
            b"browser-session",
            &owner(),
            FlowKind::Redirect,
        )
        .unwrap();
    let exchanged = pending
        .exchange(sdk.client())
        .await
        .expect("the browser's code exchanges");
    assert_eq!(exchanged.provider_id().as_str(), "chart-sandbox");
}

#[tokio::test]
#[ignore = "needs Debian's chromium and chromedriver; .ci/run runs it"]
async fn connect_page_embedded_flow_posts_code_and_state_to_the_parent() {
    let (mock, sdk) = mock_with_redirect("http://127.0.0.1:1/unused").await;
    let start = sdk
        .begin_connect(Flow::Embedded, b"browser-session", &owner())
        .unwrap();
    // The host page: an iframe on the mock's Connect page, and a listener for its message.
    let host_port = free_port();
    let host_origin = format!("http://127.0.0.1:{host_port}");
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", "browser-client")
        .append_pair("state", &start.state)
        .append_pair("app_type", "spa")
        .append_pair("sdk_host_url", &host_origin)
        .finish();
    let html = format!(
        r#"<iframe id=chart src="{}/connect?{query}" width=480 height=600></iframe><pre id=msg></pre>
        <script>window.addEventListener("message", e => {{
          if (e.origin !== "{}") return;
          document.getElementById("msg").textContent = JSON.stringify(e.data);
          document.getElementById("msg").className = "got";
        }});</script>"#,
        mock.url(),
        mock.url()
    );
    let host = serve_page_on(html, host_port).await;
    let b = browser().await;
    b.client.goto(&format!("http://{host}/")).await.unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#chart"))
        .await
        .unwrap();
    b.client.enter_frame(0).await.unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#connect"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client.enter_parent_frame().await.unwrap();
    let msg = b
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#msg.got"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let msg: serde_json::Value = serde_json::from_str(&msg).unwrap();
    assert_eq!(
        (msg["name"].as_str(), msg["kind"].as_str()),
        (Some("chart-auth-message"), Some("success"))
    );
    assert_eq!(msg["state"], start.state.as_str());
    let pending = sdk
        .receive_code(
            AuthorizationCode::new(msg["code"].as_str().unwrap()),
            &start.state,
            b"browser-session",
            &owner(),
            FlowKind::Embedded,
        )
        .unwrap();
    pending
        .exchange(sdk.client())
        .await
        .expect("the embedded code exchanges without redirect_uri");
}

async fn serve_page_on(html: String, port: u16) -> SocketAddr {
    // A chosen port, when the page must know its own origin before it is served.
    let html = Arc::new(html);
    serve_on(port, move |_req| {
        let html = html.clone();
        async move { (html.as_str().to_owned(), "text/html") }
    })
    .await
}

/// Serves `answer` (a body and its content type) on 127.0.0.1:`port`, 0 for any.
async fn serve_on<F, Fut>(port: u16, answer: F) -> SocketAddr
where
    F: Fn(http::Request<hyper::body::Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = (String, &'static str)> + Send + 'static,
{
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let answer = answer.clone();
                    async move {
                        let (body, kind) = answer(req).await;
                        let mut resp = http::Response::new(Full::new(Bytes::from(body)));
                        resp.headers_mut()
                            .insert("content-type", http::HeaderValue::from_static(kind));
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// The demo's binary: built by `.ci/run`'s headless step, or built here.
fn demo_binary() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned();
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), Into::into);
    let bin = target.join("debug/examples/demo");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let built = Command::new(cargo)
        .args(["build", "-q", "-p", "chart-auth", "--example", "demo"])
        .current_dir(&root)
        .status()
        .unwrap();
    assert!(
        built.success() && bin.exists(),
        "the demo builds at {}",
        bin.display()
    );
    bin
}

#[tokio::test]
#[ignore = "needs Debian's chromium and chromedriver; .ci/run runs it"]
async fn the_demo_connects_accounts_in_both_flows_and_seals_them() {
    let data = tempfile::tempdir().unwrap();
    let mut demo = Command::new(demo_binary())
        .args(["--port", "0", "--data-dir"])
        .arg(data.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut url = None;
    for line in BufReader::new(demo.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if let Some(rest) = line.strip_prefix("Open ") {
            url = rest.split_whitespace().next().map(str::to_owned);
            break;
        }
    }
    let url = url.expect("the demo prints its URL");
    let b = browser().await;
    b.client.goto(&url).await.unwrap();

    // Redirect flow.
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#connect-redirect"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#connect"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#notice.good"))
        .await
        .unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("tr.account td.ok"))
        .await
        .unwrap();

    // Embedded flow, in the overlay iframe.
    demo_embedded_press(&b, "#connect").await;
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//tbody[count(tr[@class='account'][td[@class='ok']]) = 2]",
        ))
        .await
        .unwrap();
    // Closing the embedded window is a clean "you closed it", not "not valid". From a
    // fresh page: an overlay frame reused right after a connection was seen, on and off,
    // to keep an empty box in headless Chromium (see the session note of 2026-12-08).
    b.client.goto(&url).await.unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//tbody[count(tr[@class='account'][td[@class='ok']]) = 2]",
        ))
        .await
        .unwrap();
    demo_embedded_press(&b, "#close").await;
    let closed = b
        .client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#notice.info"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(closed, "You closed Chart Connect. Nothing was connected.");
    if let Ok(path) = std::env::var("CHART_DEMO_SCREENSHOT") {
        std::fs::write(path, b.client.screenshot().await.unwrap()).unwrap();
    }

    // A second user, in a browser session of their own: none of the first user's
    // accounts, then one of their own, and still none of the first user's.
    let first_users: Vec<String> = account_ids(&b).await;
    assert_eq!(first_users.len(), 2);
    let b2 = browser().await;
    b2.client.goto(&url).await.unwrap();
    b2.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//tbody[@id='accounts']/tr/td[text()='No account connected yet.']",
        ))
        .await
        .unwrap();
    demo_embedded_press(&b2, "#connect").await;
    b2.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("tr.account td.ok"))
        .await
        .unwrap();
    let second_users = account_ids(&b2).await;
    assert_eq!(second_users.len(), 1, "{second_users:?}");
    assert!(!first_users.contains(&second_users[0]));
    // Disconnecting the first user's account from the second user's page (its own
    // session and CSRF token) finds nothing, and the first user keeps it.
    let answer = b2
        .client
        .execute_async(
            r#"const [id, done] = arguments;
               const csrf = document.cookie.split("; ").find(c => c.startsWith("demo_csrf=")).split("=")[1];
               fetch("/api/disconnect", { method: "POST", headers: { "content-type": "application/json", "x-csrf-token": csrf },
                 body: JSON.stringify({ account_id: id }) }).then(r => r.json().then(j => done([r.status, j.error])));"#,
            vec![serde_json::json!(first_users[0])],
        )
        .await
        .unwrap();
    assert_eq!(answer, serde_json::json!([404, "not_found"]), "{answer}");
    b.client.refresh().await.unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//tbody[count(tr[@class='account'][td[@class='ok']]) = 2]",
        ))
        .await
        .unwrap();
    assert_eq!(account_ids(&b).await, first_users);
    demo.kill().unwrap();
    demo.wait().unwrap();

    // The data directory holds sealed records, and no plaintext token.
    let vault = Vault::new(
        "chart-demo-client",
        Keyring::load(&data.path().join("keyring")).unwrap(),
        FileStore::open(data.path().join("tokens")).unwrap(),
    );
    let stored = vault.list_all().await.unwrap();
    let ignore = std::fs::read_to_string(data.path().join(".gitignore")).unwrap();
    assert!(
        ignore.lines().any(|l| l == "*"),
        "git ignores the data directory"
    );
    assert_eq!(stored.len(), 3);
    let owners: std::collections::BTreeSet<_> = stored.iter().map(|a| a.owner().clone()).collect();
    assert_eq!(owners.len(), 2, "two users, one owner each: {owners:?}");
    let mut files = String::new();
    for entry in std::fs::read_dir(data.path().join("tokens")).unwrap() {
        files += &String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap());
    }
    for conn in stored {
        let token = vault.unseal(conn.owner(), conn.account_id()).await.unwrap();
        assert!(
            !files.contains(token.expose_secret()),
            "a plaintext token on disk"
        );
    }
}

/// The account ids in the demo page's table, in its order.
async fn account_ids(b: &Browser) -> Vec<String> {
    let mut ids = Vec::new();
    for row in b
        .client
        .find_all(Locator::Css("tr.account td:first-child"))
        .await
        .unwrap()
    {
        ids.push(row.text().await.unwrap());
    }
    ids
}

/// Opens the demo's embedded Connect overlay, clicks `control` inside its frame (once it
/// is there), and returns to the demo page.
async fn demo_embedded_press(b: &Browser, control: &str) {
    b.client
        .find(Locator::Css("#connect-embedded"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#connect-frame"))
        .await
        .unwrap();
    b.client.enter_frame(0).await.unwrap();
    // The overlay's frame navigates to the new Connect page after it is shown, and a
    // control found early can belong to a document on its way out (on a loaded machine,
    // chromedriver reported such a control displayed with an empty box). So find the
    // control afresh until it has a box and a click lands.
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Ok(button) = b.client.find(Locator::Css(control)).await {
            let (_, _, width, height) = button.rectangle().await.unwrap_or_default();
            if width > 0.0 && height > 0.0 {
                match button.click().await {
                    Ok(()) => break,
                    Err(e) if e.to_string().contains("not interactable") => {}
                    Err(e) if e.to_string().contains("stale element") => {}
                    Err(e) => panic!("pressing {control}: {e}"),
                }
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{control} never became clickable"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    b.client.enter_parent_frame().await.unwrap();
}

/// Builds `tests/react` (Chart's published React SDK, bundled unmodified) and gives the
/// bundle. `.ci/run` installs its npm packages.
fn react_bundle() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("react");
    assert!(
        dir.join("node_modules/@chartapi/react-connect").exists(),
        "run `npm ci --prefix tests/react` first (.ci/run does)"
    );
    let status = Command::new("npm")
        .args(["run", "-s", "build"])
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(status.success(), "esbuild bundled the page");
    std::fs::read_to_string(dir.join("dist/app.js")).unwrap()
}

/// Serves the React page at `/` and its bundle at `/app.js`, and gives each event the
/// page reports to `POST /event`.
async fn serve_react_page(
    bundle: String,
) -> (
    SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) {
    let bundle = Arc::new(bundle);
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let addr = serve_on(0, move |req: http::Request<hyper::body::Incoming>| {
        let (bundle, tx) = (bundle.clone(), tx.clone());
        async move {
            match req.uri().path() {
                "/event" => {
                    let bytes = req.into_body().collect().await.unwrap().to_bytes();
                    let _ = tx.send(serde_json::from_slice(&bytes).unwrap_or_default());
                    (String::new(), "text/plain")
                }
                "/app.js" => (bundle.as_str().to_owned(), "text/javascript"),
                _ => (
                    "<!doctype html><meta charset=utf-8><div id=root></div><script src=/app.js></script>"
                        .to_owned(),
                    "text/html",
                ),
            }
        }
    })
    .await;
    (addr, rx)
}

/// Opens Chart Connect through the SDK and waits for the mock's page in its iframe.
async fn open_connect(b: &Browser, page: &str) {
    b.client.goto(page).await.unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#open"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#chart-connect-iframe"))
        .await
        .unwrap();
    b.client.enter_frame(0).await.unwrap();
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css("#connect"))
        .await
        .unwrap();
}

/// Clicks a control of the Connect page from a script in its frame, then returns to
/// the top frame, which the SDK's callbacks run in (chromedriver lets the frame's
/// navigation finish once a command leaves the frame).
async fn press(b: &Browser, selector: &str) {
    b.client
        .execute(
            "document.querySelector(arguments[0]).click(); return true;",
            vec![serde_json::Value::from(selector)],
        )
        .await
        .unwrap();
    b.client.enter_parent_frame().await.unwrap();
}

/// The next event the page's callbacks reported.
async fn next_event(
    events: &mut tokio::sync::mpsc::UnboundedReceiver<serde_json::Value>,
) -> serde_json::Value {
    tokio::time::timeout(WAIT, events.recv())
        .await
        .expect("a callback fired")
        .unwrap()
}

#[tokio::test]
#[ignore = "needs chromium, chromedriver and npm; .ci/run runs it"]
async fn chart_react_sdk_in_dev_mode_works_with_the_mock_unmodified() {
    let bundle = react_bundle();
    // Dev mode hard-codes http://localhost:3000 as Chart Connect.
    let mock = MockServer::start(MockConfig {
        addr: SocketAddr::from(([127, 0, 0, 1], 3000)),
        ..MockConfig::default()
    })
    .await
    .expect("port 3000 is free (the React SDK's dev mode needs it)");
    let sdk = ChartConnect::new(
        ChartClient::new(
            Config::builder(
                chart_mock_server::SANDBOX_CLIENT_ID,
                ClientSecret::new(chart_mock_server::SANDBOX_CLIENT_SECRET),
            )
            .api_base(mock.url())
            .build()
            .unwrap(),
        )
        .unwrap(),
        ConnectStateSigner::generate(),
        Arc::new(Vault::new(
            chart_mock_server::SANDBOX_CLIENT_ID,
            Keyring::generate(),
            MemoryStore::default(),
        )),
    );
    let start = sdk
        .begin_connect(Flow::Embedded, b"react-user", &owner())
        .unwrap();
    // The page must be on `localhost` for the SDK to use dev mode.
    let (host, mut events) = serve_react_page(bundle).await;
    let page = |extra: &str| {
        format!(
            "http://localhost:{}/?client_id={}&state={}{extra}",
            host.port(),
            chart_mock_server::SANDBOX_CLIENT_ID,
            start.state
        )
    };
    let b = browser().await;

    // 1. Success with the defaults: onSuccess gets the code and the same state, and the
    // code exchanges with no redirect_uri.
    open_connect(&b, &page("")).await;
    press(&b, "#connect").await;
    let got = next_event(&mut events).await;
    assert_eq!(got["kind"], "success", "{got:?}");
    assert_eq!(got["state"], start.state.as_str());
    let received = sdk
        .receive_code(
            AuthorizationCode::new(got["code"].as_str().unwrap()),
            &start.state,
            b"react-user",
            &owner(),
            FlowKind::Embedded,
        )
        .unwrap();
    let stored = sdk.complete(received).await.expect("the code exchanges");
    assert_eq!(stored.provider_id().as_str(), "chart-sandbox");
    let exchange = mock
        .journal()
        .into_iter()
        .find(|e| e.path == "/auth/token")
        .unwrap();
    assert_eq!(exchange.outcome, "success");
    assert_eq!(exchange.metadata.as_deref(), Some(r#"{"plan":"pro"}"#));

    // 2. The denied outcome fires onError.
    open_connect(&b, &page("")).await;
    b.client
        .find(Locator::Css("#outcome"))
        .await
        .unwrap()
        .select_by_value("denied")
        .await
        .unwrap();
    press(&b, "#connect").await;
    let got = next_event(&mut events).await;
    assert_eq!(got["kind"], "error", "{got:?}");
    assert_eq!(got["errorMessage"], "access_denied");

    // 3. Close fires onClose, from the control and from Escape.
    open_connect(&b, &page("")).await;
    press(&b, "#close").await;
    assert_eq!(next_event(&mut events).await["kind"], "closed");
    open_connect(&b, &page("")).await;
    b.client
        .find(Locator::Css("#connect"))
        .await
        .unwrap()
        .send_keys("\u{e00c}")
        .await
        .unwrap();
    b.client.enter_parent_frame().await.unwrap();
    assert_eq!(next_event(&mut events).await["kind"], "closed");

    // 4. providers filters the list, in the order given.
    open_connect(&b, &page("&providers=irs,turbotax")).await;
    let mut offered = Vec::new();
    for option in b
        .client
        .find_all(Locator::Css("#provider_id option"))
        .await
        .unwrap()
    {
        offered.push(option.attr("value").await.unwrap().unwrap());
    }
    assert_eq!(offered, ["irs", "turbotax"]);
    b.client.enter_parent_frame().await.unwrap();
}

/// The in-process mock forgets its tokens when the demo stops; the next start prunes
/// the records it can no longer use, instead of listing dead accounts.
#[test]
#[ignore = "builds and runs the demo binary; .ci/run runs it with the browser tests"]
fn a_demo_restart_prunes_the_accounts_the_old_mock_took_along() {
    let data = tempfile::tempdir().unwrap();
    let run = || {
        let out = Command::new(demo_binary())
            .args(["--headless", "--data-dir"])
            .arg(data.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = run();
    assert!(!first.contains("pruned"), "{first}");
    assert!(first.contains("1 live account(s)"), "{first}");
    let second = run();
    assert!(second.contains("pruned 1 account(s)"), "{second}");
    assert!(
        second.contains("1 live account(s)"),
        "only live rows: {second}"
    );
}

/// The user whose accounts these connections are.
fn owner() -> chart_auth::Owner {
    chart_auth::Owner::new("owner-test-user").unwrap()
}
