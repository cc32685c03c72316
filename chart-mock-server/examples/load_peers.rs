//! The other side of the wrk load harness (`chart-mock-server/benches/wrk/run`): the
//! servers the mock is measured against, and a code minter.
//!
//! ```text
//! load_peers bare                 # bare hyper answering the token JSON: the ceiling
//! load_peers wiremock             # wiremock-rs answering the same JSON
//! load_peers mint URL N FILE      # mints N codes on the mock at URL into FILE, one per line
//! ```
//!
//! The servers listen on a free port of 127.0.0.1 and print their URL on one line.
//! Each is started as its own process, as the mock is, so that wrk measures servers
//! that share nothing with it or with each other.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

/// What both peers answer: the shape of the mock's 200, with fixed ids.
const ANSWER: &str = r#"{"account_id":"5f0c6f2e-8a2b-4d8e-9a55-0e7b2d1c3f4a","taxpayer_id":"5f0c6f2e-8a2b-4d8e-9a55-0e7b2d1c3f4a","provider_id":"chart-sandbox","access_token":"0b8f3c2a-1d4e-4f6a-9b7c-8d9e0f1a2b3c"}"#;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // Two workers, as the mock's binary has on this machine's two cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let result = runtime.block_on(async {
        match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
            ["bare"] => bare().await,
            ["wiremock"] => wiremock().await,
            ["mint", url, n, file] => mint(url, n.parse()?, file).await,
            _ => Err("usage: load_peers bare | wiremock | mint URL N FILE".into()),
        }
    });
    if let Err(e) = result {
        eprintln!("load_peers: {e}");
        std::process::exit(2);
    }
}

type Result<T = ()> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// Serves until killed.
async fn bare() -> Result {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("http://{}", listener.local_addr()?);
    loop {
        let (tcp, _) = listener.accept().await?;
        let _ = tcp.set_nodelay(true);
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let _ = req.into_body().collect().await;
                    let mut resp =
                        http::Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
                    let h = resp.headers_mut();
                    h.insert(
                        "content-type",
                        http::HeaderValue::from_static("application/json"),
                    );
                    h.insert("chart-request-id", http::HeaderValue::from_static("bare"));
                    Ok::<_, std::convert::Infallible>(resp)
                },
            );
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

/// Serves until killed. Request recording is off: by default wiremock-rs keeps every
/// request, and slows and grows under load; off is its best case.
async fn wiremock() -> Result {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let server = wiremock::MockServer::builder()
        .listener(listener)
        .disable_request_recording()
        .start()
        .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path("/auth/token"))
        .respond_with(
            wiremock::ResponseTemplate::new(200)
                .insert_header("chart-request-id", "wiremock")
                .set_body_raw(ANSWER, "application/json"),
        )
        .mount(&server)
        .await;
    println!("http://{addr}");
    std::future::pending::<()>().await;
    Ok(())
}

/// Mints `n` sandbox codes through the control plane, over 8 keep-alive connections.
async fn mint(url: &str, n: usize, file: &str) -> Result {
    let authority = url
        .strip_prefix("http://")
        .ok_or("the mock's URL must be http://")?
        .trim_end_matches('/')
        .to_owned();
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (authority, next) = (authority.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(&authority).await?;
            let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
            tokio::spawn(conn);
            let mut codes = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let req = http::Request::post("/__chart/codes")
                    .header("host", &authority)
                    .header("content-type", "application/json")
                    .body(Full::new(Bytes::from_static(
                        br#"{"client_id":"chart-sandbox-client"}"#,
                    )))?;
                send.ready().await?;
                let resp = send.send_request(req).await?;
                let status = resp.status();
                let body = resp.into_body().collect().await?.to_bytes();
                if status != http::StatusCode::CREATED {
                    return Err(format!(
                        "minting answered {status}: {}",
                        String::from_utf8_lossy(&body)
                    )
                    .into());
                }
                #[derive(serde::Deserialize)]
                struct Minted {
                    code: String,
                }
                codes.push(serde_json::from_slice::<Minted>(&body)?.code);
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(codes)
        }));
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(file)?);
    for task in tasks {
        for code in task.await?? {
            writeln!(out, "{code}")?;
        }
    }
    out.flush()?;
    Ok(())
}
