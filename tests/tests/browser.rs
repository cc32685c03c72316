//! Browser tests in headless Chromium (Debian's `chromium` and `chromium-driver`):
//! the mock's Connect page in both flows, and the demo end to end. `.ci/run` installs
//! the browser and runs them with `cargo test -p chart-e2e --test browser -- --ignored`.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
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
use http_body_util::Full;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

const WAIT: Duration = Duration::from_secs(20);

/// chromedriver and a headless Chromium session; both end on drop.
struct Browser {
    client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.driver.kill();
        let _ = self.driver.wait();
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
        .begin_connect(Flow::Embedded, b"browser-session")
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
    let listener = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let html = Arc::new(html);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            let html = html.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| {
                    let html = html.clone();
                    async move {
                        let mut resp =
                            http::Response::new(Full::new(Bytes::from(html.as_str().to_owned())));
                        resp.headers_mut()
                            .insert("content-type", http::HeaderValue::from_static("text/html"));
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
    b.client
        .wait()
        .at_most(WAIT)
        .for_element(Locator::XPath(
            "//tbody[count(tr[@class='account'][td[@class='ok']]) = 2]",
        ))
        .await
        .unwrap();
    if let Ok(path) = std::env::var("CHART_DEMO_SCREENSHOT") {
        std::fs::write(path, b.client.screenshot().await.unwrap()).unwrap();
    }
    demo.kill().unwrap();
    demo.wait().unwrap();

    // The data directory holds sealed records, and no plaintext token.
    let vault = Vault::new(
        "chart-demo-client",
        Keyring::load(&data.path().join("keyring")).unwrap(),
        FileStore::open(data.path().join("tokens")).unwrap(),
    );
    let stored = vault.list().await.unwrap();
    assert_eq!(stored.len(), 2);
    let mut files = String::new();
    for entry in std::fs::read_dir(data.path().join("tokens")).unwrap() {
        files += &String::from_utf8_lossy(&std::fs::read(entry.unwrap().path()).unwrap());
    }
    for conn in stored {
        let token = vault.unseal(conn.account_id()).await.unwrap();
        assert!(
            !files.contains(token.expose_secret()),
            "a plaintext token on disk"
        );
    }
}
