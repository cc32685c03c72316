//! SDK exchange cost: client CPU time per exchange and throughput over one pooled
//! keep-alive connection, plain HTTP and TLS, against two hand-written exchanges with
//! the same mock: a bare hyper-util client + serde_json (the floor) and reqwest +
//! serde_json. The mock runs on its own thread; the client runs on a current-thread
//! runtime on this thread, whose CPU time (from /proc/thread-self/schedstat) is what
//! is measured.
//!
//! `cargo bench -p chart-e2e --bench exchange` (EXCHANGES to change the count)
//! `cargo bench -p chart-e2e --bench exchange -- --test` (a fast smoke run)

#[path = "../tests/support/tls.rs"]
mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chart_auth::vault::{Keyring, MemoryStore, Vault};
use chart_auth::{
    AuthorizationCode, ChartClient, ChartConnect, ClientSecret, CodeReceived, Config,
    ConnectStateSigner, Connection, Flow, FlowKind,
};
use chart_mock_server::{
    MintRequest, MockConfig, MockServer, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET,
};
use http_body_util::{BodyExt, Full};
use serde::Deserialize;

fn thread_cpu() -> Duration {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    Duration::from_nanos(s.split_whitespace().next().unwrap().parse().unwrap())
}

#[derive(Deserialize)]
struct Token {
    account_id: Option<String>,
    taxpayer_id: Option<String>,
    provider_id: String,
    access_token: String,
}

struct Sample {
    cpu_per_exchange: Duration,
    per_sec: f64,
}

fn body(code: &str) -> String {
    serde_json::json!({"client_id": SANDBOX_CLIENT_ID, "client_secret": SANDBOX_CLIENT_SECRET, "code": code}).to_string()
}

async fn measure<F, Fut>(n: usize, mut one: F) -> Sample
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    one(0).await; // warm the connection
    let (cpu0, t0) = (thread_cpu(), Instant::now());
    for i in 1..=n {
        one(i).await;
    }
    Sample {
        cpu_per_exchange: (thread_cpu() - cpu0) / n as u32,
        per_sec: n as f64 / t0.elapsed().as_secs_f64(),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: run a fast smoke then.
    let test_mode =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("EXCHANGES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if test_mode { 20 } else { 3000 });
    // The mocks live on their own runtime thread.
    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (plain, tls) = server_rt.block_on(async {
        let plain = MockServer::start(MockConfig {
            max_codes: 4 * n + 16,
            ..MockConfig::default()
        })
        .await
        .unwrap();
        let tls = MockServer::start(MockConfig {
            tls: true,
            max_codes: 4 * n + 16,
            ..MockConfig::default()
        })
        .await
        .unwrap();
        (plain, tls)
    });
    let client_rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "\n{n} sequential exchanges per client over one keep-alive connection; client CPU on its own thread\n"
    );
    println!("| transport | client | CPU / exchange | exchanges/s |");
    println!("|---|---|---:|---:|");
    for (label, mock) in [("HTTP/1.1 plain", &plain), ("TLS (ALPN)", &tls)] {
        let mint = |count: usize| -> Vec<String> {
            (0..count)
                .map(|_| {
                    mock.mint_code(&MintRequest {
                        client_id: SANDBOX_CLIENT_ID.into(),
                        ..Default::default()
                    })
                    .unwrap()
                    .code
                })
                .collect()
        };
        let url = format!("{}/auth/token", mock.url());
        let results = client_rt.block_on(async {
            // 1. The SDK: codes arrive as verified callbacks (made before timing).
            let mut builder =
                Config::builder(SANDBOX_CLIENT_ID, ClientSecret::new(SANDBOX_CLIENT_SECRET))
                    .api_base(mock.url());
            if let Some(ca) = mock.ca_pem() {
                builder = builder
                    .webpki_roots(false)
                    .add_root_certificates_pem(ca.as_bytes());
            }
            let sdk = ChartClient::new(builder.build().unwrap()).unwrap();
            let chart = ChartConnect::new(
                sdk.clone(),
                ConnectStateSigner::generate(),
                Arc::new(Vault::new(
                    SANDBOX_CLIENT_ID,
                    Keyring::generate(),
                    MemoryStore::default(),
                )),
            );
            let mut pending: Vec<Option<Connection<CodeReceived>>> = mint(n + 1)
                .into_iter()
                .map(|code| {
                    let start = chart
                        .begin_connect(Flow::Embedded, b"bench", &owner())
                        .unwrap();
                    Some(
                        chart
                            .receive_code(
                                AuthorizationCode::new(code),
                                &start.state,
                                b"bench",
                                &owner(),
                                FlowKind::Embedded,
                            )
                            .unwrap(),
                    )
                })
                .collect();
            let sdk_sample = measure(n, |i| {
                let conn = pending[i].take().unwrap();
                let sdk = &sdk;
                async move {
                    let exchanged = conn.exchange(sdk).await.unwrap();
                    std::hint::black_box(exchanged.account_id());
                }
            })
            .await;

            // 2. A bare hyper-util client + serde_json: the floor.
            let codes = mint(n + 1);
            let https = {
                let b = hyper_rustls::HttpsConnectorBuilder::new();
                let b = match mock.ca_pem() {
                    Some(ca) => b.with_tls_config(tls::trusting(ca)),
                    None => b.with_tls_config(tls_config_empty()),
                };
                // As a careful hand-written client would: TCP_NODELAY, like the SDK and reqwest.
                let mut tcp = hyper_util::client::legacy::connect::HttpConnector::new();
                tcp.set_nodelay(true);
                tcp.enforce_http(false);
                b.https_or_http()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(tcp)
            };
            let bare: hyper_util::client::legacy::Client<_, Full<Bytes>> =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build(https);
            let bare_sample = measure(n, |i| {
                let req = http::Request::post(&url)
                    .header("content-type", "application/json")
                    .header("chart-api-version", "2024-01-01")
                    .body(Full::new(Bytes::from(body(&codes[i]))))
                    .unwrap();
                let bare = &bare;
                async move {
                    let resp = bare.request(req).await.unwrap();
                    assert_eq!(resp.status(), 200);
                    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
                    let token: Token = serde_json::from_slice(&bytes).unwrap();
                    std::hint::black_box((
                        token.account_id.or(token.taxpayer_id),
                        token.provider_id,
                        token.access_token,
                    ));
                }
            })
            .await;

            // 3. reqwest + serde_json, as a Rust user would write it by hand.
            let codes = mint(n + 1);
            let mut rb = reqwest::Client::builder();
            rb = match mock.ca_pem() {
                Some(ca) => {
                    // The same ALPN offer as the SDK, so both speak HTTP/2 to the mock.
                    let mut tls = tls::trusting(ca);
                    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
                    rb.use_preconfigured_tls(tls)
                }
                None => rb.use_preconfigured_tls(tls_config_empty()),
            };
            let rq = rb.build().unwrap();
            let reqwest_sample = measure(n, |i| {
                let req = rq
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("chart-api-version", "2024-01-01")
                    .body(body(&codes[i]));
                async move {
                    let resp = req.send().await.unwrap();
                    assert_eq!(resp.status(), 200);
                    let bytes = resp.bytes().await.unwrap();
                    let token: Token = serde_json::from_slice(&bytes).unwrap();
                    std::hint::black_box((
                        token.account_id.or(token.taxpayer_id),
                        token.provider_id,
                        token.access_token,
                    ));
                }
            })
            .await;
            [
                ("chart-auth SDK", sdk_sample),
                ("bare hyper-util + serde_json", bare_sample),
                ("reqwest + serde_json", reqwest_sample),
            ]
        });
        for (name, s) in &results {
            println!(
                "| {label} | {name} | {:.1} µs | {:.0} |",
                s.cpu_per_exchange.as_nanos() as f64 / 1000.0,
                s.per_sec
            );
        }
        let cpu = |i: usize| results[i].1.cpu_per_exchange.as_nanos() as f64;
        println!(
            "| {label} | **SDK / bare hyper** | **{:.2}×** (target ≤ 1.2) | |",
            cpu(0) / cpu(1)
        );
        println!(
            "| {label} | **SDK / reqwest** | **{:.2}×** (target < 1) | |",
            cpu(0) / cpu(2)
        );
    }
    drop(server_rt);
}

fn tls_config_empty() -> rustls::ClientConfig {
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth()
}

/// The user whose accounts these connections are.
fn owner() -> chart_auth::Owner {
    chart_auth::Owner::new("owner-test-user").unwrap()
}
