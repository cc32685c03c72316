//! The whole Chart Connect journey on one machine.
//!
//! ```text
//! cargo run -p chart-auth --example demo                 # open http://localhost:3000
//! cargo run -p chart-auth --example demo -- --headless   # drive the Redirect flow over HTTP, exit 0
//! ```
//!
//! It starts the mock Chart server in-process and a demo backend on `127.0.0.1:3000`
//! that mounts the SDK's `CallbackService`. Each browser session is one demo user: it
//! lists and disconnects only its own accounts. Tokens are sealed in a `FileStore` under
//! `.chart-demo/` with a vault key made on first run (and reused after). Set
//! `CHART_CLIENT_ID`, `CHART_CLIENT_SECRET` and `CHART_API_BASE` (and optionally
//! `CHART_CONNECT_BASE`) to use the real Chart API instead of the mock.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use chart_auth::vault::{FileStore, Keyring, TokenStore, Vault};
use chart_auth::{
    CallbackService, ChartClient, ChartConnect, ClientSecret, Config, ConnectStateSigner, Flow,
    Owner, Session,
};
use chart_mock_server::{ClientConfig, MockConfig, MockServer};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use sha2::Digest;
use tokio::net::TcpListener;

type Body = Full<Bytes>;

struct Args {
    headless: bool,
    port: u16,
    data_dir: PathBuf,
    database_url: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        headless: false,
        port: 3000,
        data_dir: PathBuf::from(".chart-demo"),
        database_url: None,
    };
    let mut it = std::env::args().skip(1);
    let mut port_set = false;
    let mut data_dir_set = false;
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--headless" => args.headless = true,
            "--port" => {
                args.port = it
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or("--port needs a number")?;
                port_set = true;
            }
            "--data-dir" => {
                args.data_dir = it.next().ok_or("--data-dir needs a path")?.into();
                data_dir_set = true;
            }
            "--database-url" => {
                args.database_url = Some(it.next().ok_or("--database-url needs a URL")?);
            }
            "-h" | "--help" => {
                println!(
                    "usage: demo [--headless] [--port N (default 3000; headless: a free port)] [--data-dir DIR] [--database-url postgres://... (build with --features postgres)]"
                );
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?} (try --help)")),
        }
    }
    if args.headless && !port_set {
        args.port = 0;
    }
    if args.headless && !data_dir_set {
        // A run that checks the demo leaves the interactive demo's accounts alone.
        args.data_dir = PathBuf::from(".chart-demo/headless");
    }
    Ok(args)
}

/// Everything the demo backend needs.
struct Demo<S> {
    chart: ChartConnect<S>,
    callback: CallbackService<S>,
    /// Where the sealed records live, for messages.
    store_desc: String,
    /// The Connect page (the mock's, or Chart's).
    connect_page: String,
    port: u16,
    _mock: Option<MockServer>,
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("demo: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], args.port)))
        .await
        .map_err(|e| {
            format!(
                "cannot listen on 127.0.0.1:{}: {e} (is another demo running? try --port)",
                args.port
            )
        })?;
    let port = listener.local_addr()?.port();

    // The vault: a FileStore under the data directory, and a key made on first run.
    let key_path = args.data_dir.join("keyring");
    std::fs::create_dir_all(&args.data_dir)?;
    // The directory holds a vault key: keep it out of git wherever it is created.
    let ignore = args.data_dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(
            &ignore,
            "# chart-auth demo data: a vault key and sealed tokens\n*\n",
        )?;
    }
    let keyring = if key_path.exists() {
        println!("· vault key loaded from {}", key_path.display());
        Keyring::load(&key_path)?
    } else {
        let ring = Keyring::generate();
        ring.save(&key_path)?;
        println!(
            "· vault key generated at {} (mode 0600)",
            key_path.display()
        );
        ring
    };

    // Chart: the real API when configured, else the mock, in-process.
    let (config, mock, connect_page) = if std::env::var_os("CHART_CLIENT_ID").is_some() {
        let builder = Config::builder_from_env()?;
        let connect = std::env::var("CHART_CONNECT_BASE")
            .unwrap_or_else(|_| chart_auth::DEFAULT_CONNECT_BASE.into());
        println!(
            "· using the Chart API at {}",
            std::env::var("CHART_API_BASE").unwrap_or_else(|_| chart_auth::DEFAULT_API_BASE.into())
        );
        (builder.build()?, None, connect)
    } else {
        let client = ClientConfig {
            client_id: "chart-demo-client".into(),
            client_secret: format!("demo-secret-{}", uuid_like()),
            redirect_uris: vec![
                format!("http://localhost:{port}/api/chart/callback"),
                format!("http://127.0.0.1:{port}/api/chart/callback"),
            ],
            allowed_origins: Vec::new(),
        };
        let mock = MockServer::start(MockConfig {
            clients: vec![client.clone()],
            ..MockConfig::default()
        })
        .await?;
        println!("· mock Chart server at {}", mock.url());
        let connect = format!("{}/connect", mock.url());
        let config = Config::builder(client.client_id, ClientSecret::new(client.client_secret))
            .api_base(mock.url())
            .connect_base(connect.clone())
            .build()?;
        (config, Some(mock), connect)
    };
    match args.database_url.clone() {
        None => {
            let dir = args.data_dir.join("tokens");
            let store = FileStore::open(&dir)?;
            let desc = dir.display().to_string();
            start(
                args,
                listener,
                config,
                keyring,
                store,
                desc,
                mock,
                connect_page,
            )
            .await
        }
        #[cfg(feature = "postgres")]
        Some(url) => {
            let pool = chart_auth::vault::PostgresPool::connect(&url)?;
            let store = chart_auth::vault::PostgresStore::new(&pool);
            store.migrate().await?;
            println!("· tokens sealed in PostgreSQL (table chart_auth_tokens)");
            let desc = "PostgreSQL".to_owned();
            start(
                args,
                listener,
                config,
                keyring,
                store,
                desc,
                mock,
                connect_page,
            )
            .await
        }
        #[cfg(not(feature = "postgres"))]
        Some(_) => Err("--database-url needs the postgres feature: \
             cargo run -p chart-auth --features postgres --example demo -- --database-url URL"
            .into()),
    }
}

/// Serves the demo over a store of the caller's choice.
#[allow(clippy::too_many_arguments)]
async fn start<S: TokenStore + 'static>(
    args: Args,
    listener: TcpListener,
    config: Config,
    keyring: Keyring,
    store: S,
    store_desc: String,
    mock: Option<MockServer>,
    connect_page: String,
) -> Result<(), Box<dyn std::error::Error>> {
    let port = listener.local_addr()?.port();
    let vault = Arc::new(Vault::new(config.client_id(), keyring, store));
    let chart = ChartConnect::new(
        ChartClient::new(config)?,
        ConnectStateSigner::generate(),
        vault,
    );
    let callback = CallbackService::builder(chart.clone())
        .session(|parts| {
            let sid = session_of(&parts.headers)?;
            Some(Session {
                owner: owner_of(&sid),
                binding: sid.into_bytes(),
            })
        })
        .on_connected(|stored| {
            say(format_args!(
                "· account {} is now {}'s: only their browser session lists or disconnects it",
                stored.account_id(),
                String::from_utf8_lossy(stored.owner().as_bytes())
            ));
        })
        .success_page("/?connected=1")
        .error_page("/")
        .build();
    if mock.is_some() {
        prune_forgotten(&chart).await?;
    }
    let demo = Arc::new(Demo {
        chart,
        callback,
        store_desc,
        connect_page,
        port,
        _mock: mock,
    });

    let server = tokio::spawn(serve(listener, demo.clone()));
    if args.headless {
        let result = headless(&demo).await;
        server.abort();
        return result;
    }
    println!("\nOpen http://localhost:{port} to connect a sandbox account. Ctrl-C stops.");
    tokio::signal::ctrl_c().await?;
    println!("stopped");
    Ok(())
}

async fn serve<S: TokenStore + 'static>(listener: TcpListener, demo: Arc<Demo<S>>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            continue;
        };
        let demo = demo.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let demo = demo.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&demo, req).await) }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}

const SESSION_COOKIE: &str = "demo_sid";
/// The double-submit CSRF cookie: the page's script sends it back as `x-csrf-token` on
/// every POST, which a page of another origin can neither read nor set.
const CSRF_COOKIE: &str = "demo_csrf";

fn cookie(headers: &http::HeaderMap, name: &str) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies.split(';').find_map(|c| {
        let (k, v) = c.trim().split_once('=')?;
        (k == name && !v.is_empty()).then(|| v.to_owned())
    })
}

fn session_of(headers: &http::HeaderMap) -> Option<String> {
    cookie(headers, SESSION_COOKIE)
}

/// The demo's user model: each browser session is one user. A real app takes the owner
/// from its signed-in user; the demo names the user after a hash of the session id, so
/// that the id (a credential) never shows in the console.
fn owner_of(session: &str) -> Owner {
    let digest = sha2::Sha256::digest(session.as_bytes());
    let name: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    Owner::new(format!("demo-user-{name}")).expect("a short owner id")
}

/// Whether a POST carries the CSRF cookie's value in `x-csrf-token`.
fn csrf_ok(headers: &http::HeaderMap) -> bool {
    use subtle::ConstantTimeEq;
    let (Some(cookie), Some(sent)) = (cookie(headers, CSRF_COOKIE), headers.get("x-csrf-token"))
    else {
        return false;
    };
    bool::from(cookie.as_bytes().ct_eq(sent.as_bytes()))
}

/// Prints a step of a flow. Unlike `println!`, it never panics: a closed stdout (a
/// parent that stopped reading) must not take a request down with it.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

fn uuid_like() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("random");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    respond(status, "application/json", value.to_string())
}

async fn route<S: TokenStore + 'static>(
    demo: &Demo<S>,
    req: Request<hyper::body::Incoming>,
) -> Response<Body> {
    let session = session_of(req.headers());
    let Some(host) = loopback_host(req.headers(), demo.port) else {
        // DNS rebinding: a page on another name that resolves to 127.0.0.1 must not
        // reach the accounts or disconnect them.
        return json(
            StatusCode::MISDIRECTED_REQUEST,
            serde_json::json!({"error": "unknown_host", "message": "Open the demo at http://localhost:PORT."}),
        );
    };
    let origin = format!("http://{host}:{}", demo.port);
    if req.method() == Method::POST && !csrf_ok(req.headers()) {
        return json(
            StatusCode::FORBIDDEN,
            serde_json::json!({"error": "csrf", "message": "Reload the demo page and try again."}),
        );
    }
    match (req.method().clone(), req.uri().path()) {
        (Method::GET, "/") => {
            let mut resp = respond(StatusCode::OK, "text/html; charset=utf-8", PAGE.to_owned());
            let mut set = Vec::new();
            if session.is_none() {
                set.push(format!(
                    "{SESSION_COOKIE}={}; Path=/; HttpOnly; SameSite=Lax",
                    uuid_like()
                ));
            }
            if cookie(req.headers(), CSRF_COOKIE).is_none() {
                set.push(format!(
                    "{CSRF_COOKIE}={}; Path=/; SameSite=Strict",
                    uuid_like()
                ));
            }
            for c in set {
                resp.headers_mut().append(
                    header::SET_COOKIE,
                    HeaderValue::from_str(&c).expect("ascii"),
                );
            }
            resp
        }
        (Method::GET, "/favicon.svg" | "/favicon.ico") => {
            let mut resp = respond(StatusCode::OK, "image/svg+xml", FAVICON.to_owned());
            resp.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("max-age=86400"),
            );
            resp
        }
        (_, "/api/chart/callback") => {
            let flow = if req.method() == Method::POST {
                "embedded"
            } else {
                "redirect"
            };
            say(format_args!(
                "→ callback ({flow} flow): verify the state, exchange the code once, seal the token"
            ));
            let resp = demo.callback.handle(req).await;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            // What the callback answered, without the code, the state or a token.
            let outcome = match parts
                .headers
                .get(header::LOCATION)
                .and_then(|l| l.to_str().ok())
            {
                Some(l) if l.contains("error=") => format!(
                    "✗ refused: {}",
                    l.split("error=")
                        .nth(1)
                        .and_then(|e| e.split('&').next())
                        .unwrap_or("?")
                ),
                Some(_) => "✓ account connected; its token is sealed in the vault".to_owned(),
                None => {
                    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                    match v["status"].as_str() {
                        Some("connected") => format!(
                            "✓ account {} connected ({}); its token is sealed in the vault",
                            v["account_id"].as_str().unwrap_or("?"),
                            v["provider_id"].as_str().unwrap_or("?")
                        ),
                        _ => format!("✗ refused: {}", v["error"].as_str().unwrap_or("?")),
                    }
                }
            };
            say(format_args!("  {outcome}"));
            Response::from_parts(parts, Full::new(body))
        }
        (Method::GET, "/connect/redirect") => {
            let Some(session) = session else {
                return see_other("/");
            };
            let flow = Flow::Redirect {
                redirect_uri: format!("{origin}/api/chart/callback"),
            };
            match demo
                .chart
                .begin_connect(flow, session.as_bytes(), &owner_of(&session))
            {
                Ok(start) => {
                    say(format_args!(
                        "→ Connect (redirect flow): state signed for this session; browser sent to Chart Connect"
                    ));
                    see_other(&start.connect_url.unwrap_or_default())
                }
                Err(e) => json(
                    e.http_status(),
                    serde_json::json!({"error": e.label(), "message": e.user_message()}),
                ),
            }
        }
        (Method::GET, "/api/chart/embedded") => {
            let Some(session) = session else {
                return json(
                    StatusCode::FORBIDDEN,
                    serde_json::json!({"error": "no_session"}),
                );
            };
            match demo
                .chart
                .begin_connect(Flow::Embedded, session.as_bytes(), &owner_of(&session))
            {
                Ok(start) => {
                    say(format_args!(
                        "→ Connect (embedded flow): state signed for this session; Chart Connect opens in an iframe"
                    ));
                    let query = form_urlencoded::Serializer::new(String::new())
                        .append_pair("client_id", demo.chart.client().config().client_id())
                        .append_pair("state", &start.state)
                        .append_pair("app_type", "spa")
                        .append_pair("sdk_host_url", &origin)
                        .finish();
                    let url = format!("{}?{query}", demo.connect_page);
                    let connect_origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
                    json(
                        StatusCode::OK,
                        serde_json::json!({"url": url, "origin": connect_origin}),
                    )
                }
                Err(e) => json(
                    e.http_status(),
                    serde_json::json!({"error": e.label(), "message": e.user_message()}),
                ),
            }
        }
        (Method::GET, "/api/accounts") => match session {
            Some(session) => accounts(demo, &owner_of(&session)).await,
            None => json(StatusCode::OK, serde_json::json!([])),
        },
        (Method::POST, "/api/disconnect") => {
            let Some(session) = session else {
                return json(
                    StatusCode::FORBIDDEN,
                    serde_json::json!({"error": "no_session"}),
                );
            };
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let account = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["account_id"].as_str().map(str::to_owned));
            let Some(account) = account else {
                return json(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "account_id is required"}),
                );
            };
            // Only this user's account: another user's is not found, and nothing is sent.
            match demo.chart.disconnect(&owner_of(&session), &account).await {
                Ok(()) => json(
                    StatusCode::OK,
                    serde_json::json!({"status": "disconnected"}),
                ),
                Err(e) => json(
                    e.http_status(),
                    serde_json::json!({"error": e.label(), "message": e.user_message()}),
                ),
            }
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"error": "not_found"}),
        ),
    }
}

/// The request's `Host` if it names this demo on loopback (`localhost`, `127.0.0.1` or
/// `[::1]`, at its port), as the origin's host part.
fn loopback_host(headers: &http::HeaderMap, port: u16) -> Option<&'static str> {
    let host = headers.get(header::HOST)?.to_str().ok()?;
    let (name, at) = host.rsplit_once(':')?;
    if at.parse::<u16>().ok()? != port {
        return None;
    }
    match name.to_ascii_lowercase().as_str() {
        "localhost" => Some("localhost"),
        "127.0.0.1" => Some("127.0.0.1"),
        "[::1]" => Some("[::1]"),
        _ => None,
    }
}

fn see_other(location: &str) -> Response<Body> {
    let mut resp = respond(StatusCode::SEE_OTHER, "text/plain", String::new());
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// The user's connected accounts, with a live `/introspect` of each. Never a token.
async fn accounts<S: TokenStore + 'static>(demo: &Demo<S>, owner: &Owner) -> Response<Body> {
    let stored = match demo.chart.accounts(owner).await {
        Ok(s) => s,
        Err(e) => {
            return json(
                e.http_status(),
                serde_json::json!({"error": e.label(), "message": e.user_message()}),
            );
        }
    };
    let mut stored = stored;
    // Newest connection first.
    stored.sort_by_key(|a| std::cmp::Reverse(a.stored_at()));
    let mut out = Vec::new();
    for conn in stored {
        let live = match demo.chart.introspect(owner, conn.account_id()).await {
            Ok(i) => {
                serde_json::json!({"ok": true, "name": i.name, "taxpayer_id": i.taxpayer_id, "provider_id": i.provider_id})
            }
            Err(e) => {
                serde_json::json!({"ok": false, "error": e.label(), "message": e.user_message()})
            }
        };
        let stored_at = conn
            .stored_at()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        out.push(serde_json::json!({
            "account_id": conn.account_id(),
            "provider_id": conn.provider_id().as_str(),
            "key_id": conn.key_id().0,
            "stored_at": stored_at,
            "introspect": live,
        }));
    }
    json(StatusCode::OK, serde_json::Value::Array(out))
}

/// The in-process mock forgets its tokens when the demo stops, while the vault keeps
/// their records: on start, drop the records whose tokens the new mock does not know,
/// and say so, instead of listing dead accounts.
async fn prune_forgotten<S: TokenStore + 'static>(
    chart: &ChartConnect<S>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut pruned = 0;
    for account in chart.vault().list_all().await? {
        let (owner, id) = (account.owner(), account.account_id());
        if let Err(chart_auth::Error::InvalidToken(_)) = chart.introspect(owner, id).await {
            chart.vault().delete(owner, id).await?;
            pruned += 1;
        }
    }
    if pruned > 0 {
        println!(
            "· pruned {pruned} account(s) from an earlier run: the in-process mock forgets its tokens when the demo stops"
        );
    }
    Ok(())
}

/// Drives the Redirect flow over HTTP, as a browser would, and prints the result.
async fn headless<S: TokenStore + 'static>(
    demo: &Demo<S>,
) -> Result<(), Box<dyn std::error::Error>> {
    let http = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
        .build(hyper_util::client::legacy::connect::HttpConnector::new());
    let base = format!("http://localhost:{}", demo.port);
    let send = |method: Method, url: String, cookie: Option<String>, form: Option<String>| {
        let http = http.clone();
        async move {
            let mut req = Request::builder().method(method).uri(&url);
            if let Some(c) = cookie {
                req = req.header(header::COOKIE, c);
            }
            if form.is_some() {
                req = req.header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
            }
            let resp = http
                .request(req.body(Full::new(Bytes::from(form.unwrap_or_default())))?)
                .await?;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, Box<dyn std::error::Error>>((parts, body))
        }
    };
    let location = |parts: &http::response::Parts| -> Result<String, Box<dyn std::error::Error>> {
        Ok(parts
            .headers
            .get(header::LOCATION)
            .ok_or("expected a redirect")?
            .to_str()?
            .to_owned())
    };

    println!("1. open the demo page");
    let (parts, _) = send(Method::GET, format!("{base}/"), None, None).await?;
    let cookie = parts
        .headers
        .get(header::SET_COOKIE)
        .ok_or("no session cookie")?
        .to_str()?;
    let cookie = cookie.split(';').next().unwrap_or_default().to_owned();

    println!(
        "2. click \"Connect (redirect)\": the backend signs a state and sends us to Chart Connect"
    );
    let (parts, _) = send(
        Method::GET,
        format!("{base}/connect/redirect"),
        Some(cookie.clone()),
        None,
    )
    .await?;
    let connect_url = location(&parts)?;
    let (parts, page) = send(Method::GET, connect_url.clone(), None, None).await?;
    if parts.status != StatusCode::OK || !String::from_utf8_lossy(&page).contains("connect-form") {
        return Err(format!("the Connect page answered {}", parts.status).into());
    }

    println!("3. submit the Connect form with its defaults (chart-sandbox, success)");
    let query = connect_url
        .split_once('?')
        .map(|(_, q)| q)
        .unwrap_or_default();
    let form = format!("{query}&provider_id=chart-sandbox&outcome=success");
    let (parts, _) = send(Method::POST, demo.connect_page.clone(), None, Some(form)).await?;
    let callback_url = location(&parts)?;

    println!(
        "4. Chart Connect redirects to the callback, which exchanges the code and seals the token"
    );
    let (parts, body) = send(Method::GET, callback_url, Some(cookie.clone()), None).await?;
    let landed = location(&parts).map_err(|_| {
        format!(
            "the callback answered {}: {}",
            parts.status,
            String::from_utf8_lossy(&body)
        )
    })?;
    if landed.contains("error=") {
        return Err(format!("the callback failed: {landed}").into());
    }

    println!("5. list the connected accounts");
    let (_, body) = send(
        Method::GET,
        format!("{base}/api/accounts"),
        Some(cookie),
        None,
    )
    .await?;
    let accounts: serde_json::Value = serde_json::from_slice(&body)?;
    let live: Vec<&serde_json::Value> = accounts
        .as_array()
        .ok_or("no account list")?
        .iter()
        .filter(|a| a["introspect"]["ok"] == true)
        .collect();
    for a in &live {
        println!(
            "   connected: account {} · provider {} · key {} · introspect: {}",
            a["account_id"].as_str().unwrap_or("?"),
            a["provider_id"].as_str().unwrap_or("?"),
            a["key_id"],
            a["introspect"]["name"].as_str().unwrap_or("?"),
        );
    }
    if live.is_empty() {
        return Err("no live account after the flow".into());
    }
    println!(
        "headless demo passed: {} live account(s) sealed in {}",
        live.len(),
        demo.store_desc
    );
    Ok(())
}

const PAGE: &str = include_str!("demo.html");
const FAVICON: &str = "<svg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 32 32'><rect width='32' height='32' rx='7' fill='#2f5bea'/><path d='M9 21l5-6 4 4 5-8' stroke='#fff' stroke-width='3' fill='none' stroke-linecap='round' stroke-linejoin='round'/></svg>";
