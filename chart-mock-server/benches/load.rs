//! Load harness: successful `/auth/token` exchanges per second against the mock, a bare
//! hyper server answering the same JSON (the ceiling), and wiremock-rs serving the same
//! canned answer (the peer a Rust user would pick), all in one run, on 127.0.0.1 only,
//! with keep-alive connections and a bounded time. Then the mock's memory with 100,000
//! outstanding codes, and under sustained load.
//!
//! `cargo bench -p chart-mock-server --bench load` (LOAD_SECS, LOAD_CONNS to change)
//! `cargo bench -p chart-mock-server --bench load -- --test` (a fast smoke run)

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chart_mock_server::{
    MintRequest, MockConfig, MockServer, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET,
};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

const ANSWER: &str = r#"{"account_id":"5f0c6f2e-8a2b-4d8e-9a55-0e7b2d1c3f4a","taxpayer_id":"5f0c6f2e-8a2b-4d8e-9a55-0e7b2d1c3f4a","provider_id":"chart-sandbox","access_token":"0b8f3c2a-1d4e-4f6a-9b7c-8d9e0f1a2b3c"}"#;

struct Run {
    name: &'static str,
    ok: usize,
    errors: usize,
    secs: f64,
    p50_us: u32,
    p99_us: u32,
}

impl Run {
    fn rps(&self) -> f64 {
        self.ok as f64 / self.secs
    }
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A bare hyper server that reads the body and answers the canned JSON.
async fn bare_hyper() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let _ = tcp.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(
                    |req: http::Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        let mut resp =
                            http::Response::new(Full::new(Bytes::from_static(ANSWER.as_bytes())));
                        resp.headers_mut().insert(
                            "content-type",
                            http::HeaderValue::from_static("application/json"),
                        );
                        resp.headers_mut()
                            .insert("chart-request-id", http::HeaderValue::from_static("bare"));
                        Ok::<_, std::convert::Infallible>(resp)
                    },
                );
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// Drives `conns` keep-alive HTTP/1.1 connections for `secs`, each request carrying the
/// next pre-minted code, and counts the 200s.
async fn drive(
    name: &'static str,
    addr: SocketAddr,
    codes: Arc<Vec<String>>,
    conns: usize,
    secs: f64,
) -> Run {
    let next = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let started = Instant::now();
    let tasks: Vec<_> = (0..conns)
        .map(|_| {
            let (codes, next) = (codes.clone(), next.clone());
            tokio::spawn(async move {
                let tcp = TcpStream::connect(addr).await.unwrap();
                tcp.set_nodelay(true).unwrap();
                let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await.unwrap();
                tokio::spawn(conn);
                let (mut ok, mut errors, mut lat) = (0usize, 0usize, Vec::with_capacity(65_536));
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(code) = codes.get(i) else { break };
                    let body = format!(
                        r#"{{"client_id":"{SANDBOX_CLIENT_ID}","client_secret":"{SANDBOX_CLIENT_SECRET}","code":"{code}"}}"#
                    );
                    let req = http::Request::post("/auth/token")
                        .header("host", "127.0.0.1")
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(body)))
                        .unwrap();
                    let t = Instant::now();
                    if send.ready().await.is_err() {
                        errors += 1;
                        break;
                    }
                    match send.send_request(req).await {
                        Ok(resp) => {
                            let status = resp.status();
                            let _ = resp.into_body().collect().await;
                            if status == http::StatusCode::OK { ok += 1 } else { errors += 1 }
                        }
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                    lat.push(t.elapsed().as_micros() as u32);
                }
                (ok, errors, lat)
            })
        })
        .collect();
    let (mut ok, mut errors, mut lat) = (0, 0, Vec::new());
    for t in tasks {
        let (o, e, l) = t.await.unwrap();
        ok += o;
        errors += e;
        lat.extend(l);
    }
    let secs = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    Run {
        name,
        ok,
        errors,
        secs,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: run a fast smoke then.
    let test_mode =
        std::env::args().any(|a| a == "--test") || !std::env::args().any(|a| a == "--bench");
    let secs: f64 = std::env::var("LOAD_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if test_mode { 0.3 } else { 5.0 });
    let conns: usize = std::env::var("LOAD_CONNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if test_mode { 4 } else { 64 });
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let mint_into = |mock: &MockServer, n: usize| -> Arc<Vec<String>> {
            Arc::new(
                (0..n)
                    .map(|_| mock.mint_code(&MintRequest { client_id: SANDBOX_CLIENT_ID.into(), ..Default::default() }).unwrap().code)
                    .collect(),
            )
        };

        // Memory first, before any other server shares the process: a mock with its
        // default limits, 100,000 outstanding codes, then three rounds of sustained load.
        let n = if test_mode { 10_000 } else { 100_000 };
        let fresh = MockServer::start(MockConfig::default()).await.unwrap();
        let r0 = rss_kib();
        let codes = mint_into(&fresh, n);
        let r1 = rss_kib();
        let round1 = drive("memory round 1", fresh.addr(), codes, conns, secs).await;
        let r2 = rss_kib();
        let round2 = drive("memory round 2", fresh.addr(), mint_into(&fresh, n), conns, secs).await;
        let r3 = rss_kib();
        let round3 = drive("memory round 3", fresh.addr(), mint_into(&fresh, n), conns, secs).await;
        let r4 = rss_kib();
        let mib = |k: u64| k as f64 / 1024.0;
        println!("\nmock memory (process RSS): {:.1} MiB at start", mib(r0));
        println!("  + {n} outstanding codes: +{:.1} MiB (target < 64 MiB for 100,000)", mib(r1.saturating_sub(r0)));
        println!("  after sustained load round 1 ({} exchanges): {:.1} MiB", round1.ok, mib(r2));
        println!("  after re-minting and round 2 ({} exchanges): {:.1} MiB", round2.ok, mib(r3));
        println!("  after re-minting and round 3 ({} exchanges): {:.1} MiB (codes, tokens and journal are capped)", round3.ok, mib(r4));
        drop(fresh);

        let budget = if test_mode { 10_000 } else { 1_000_000 };
        // Each round's codes fit in the map, so none is evicted before it is used; the
        // map stays near its default size (a huge map would make every lookup a cache miss).
        let rounds = if test_mode { 1 } else { 5 };
        let mock = MockServer::start(MockConfig { max_codes: budget / rounds * 5 / 4, ..MockConfig::default() }).await.unwrap();
        let fake_codes: Arc<Vec<String>> = Arc::new((0..budget).map(|i| format!("code_{i:032}")).collect());
        let bare = bare_hyper().await;
        let wiremock = wiremock::MockServer::start().await;
        wiremock::Mock::given(wiremock::matchers::method("POST"))
            .and(wiremock::matchers::path("/auth/token"))
            .respond_with(wiremock::ResponseTemplate::new(200).set_body_raw(ANSWER, "application/json"))
            .mount(&wiremock)
            .await;
        // Interleaved rounds (bare, mock, wiremock, bare, ...), so that drift in a noisy
        // machine hits all three alike; each server's median round is reported.
        let mut all: [Vec<Run>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..rounds {
            let codes = mint_into(&mock, budget / rounds);
            all[0].push(drive("bare hyper (ceiling)", bare, fake_codes.clone(), conns, secs).await);
            all[1].push(drive("chart-mock-server", mock.addr(), codes, conns, secs).await);
            all[2].push(drive("wiremock-rs 0.6", *wiremock.address(), fake_codes.clone(), conns, secs).await);
        }
        let runs: Vec<Run> = all
            .into_iter()
            .map(|mut r| {
                r.sort_by(|a, b| a.rps().total_cmp(&b.rps()));
                r.swap_remove(r.len() / 2)
            })
            .collect();
        println!("\n/auth/token, {conns} keep-alive connections, median of {rounds} interleaved {secs:.1} s rounds, 127.0.0.1, one process\n");
        println!("| server | exchanges/s | p50 | p99 | errors |");
        println!("|---|---:|---:|---:|---:|");
        for r in &runs {
            println!("| {} | {:.0} | {} µs | {} µs | {} |", r.name, r.rps(), r.p50_us, r.p99_us, r.errors);
        }
        let (b, m, w) = (runs[0].rps(), runs[1].rps(), runs[2].rps());
        println!("\nmock / bare hyper = {:.2}   (target ≥ 0.75)", m / b);
        println!("mock / wiremock-rs = {:.2}  (target ≥ 2)", m / w);
        assert!(runs[1].ok > 0 && runs[1].errors == 0, "the mock failed requests");
    });
}
