//! The server: binding, TLS, accepting connections and serving each with hyper, and
//! [`MockServer`], its in-process handle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::config::{ConfigError, MockConfig};
use crate::connections::{Activity, Limits, Registry, Watched};
use crate::dispatch;
use crate::model::{Chart, Fault, JournalEntry, MintError, MintRequest, MintedCode};
use crate::report::Report;
use crate::request::{Ctx, HEADER_READ_TIMEOUT, Served};
use crate::tls;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TLS material could not be made.
    #[error("TLS setup failed: {0}")]
    Tls(String),
}

/// A running mock. It stops when dropped, or gracefully with [`MockServer::shutdown`].
#[derive(Debug)]
pub struct MockServer {
    addr: SocketAddr,
    ca_pem: Option<String>,
    chart: Arc<Chart>,
    config: MockConfig,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockServer {
    /// Starts a mock on `config.addr` (default: a free loopback port).
    pub async fn start(config: MockConfig) -> Result<MockServer, StartError> {
        config.validate()?;
        let tls = if config.tls {
            Some(tls::generate().map_err(StartError::Tls)?)
        } else {
            None
        };
        let listener = TcpListener::bind(config.addr)
            .await
            .map_err(|source| StartError::Bind {
                addr: config.addr,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: config.addr,
            source,
        })?;
        let chart = Arc::new(Chart::new(&config));
        let ctx = Ctx {
            chart: chart.clone(),
            admin_token: config.admin_token.as_deref().map(Arc::from),
            served: Served {
                port: addr.port(),
                host_name: config.host_name.as_deref().map(Arc::from),
            },
            log: Default::default(),
        };
        let (stop, stopped) = oneshot::channel();
        let acceptor = tls
            .as_ref()
            .map(|t| tokio_rustls::TlsAcceptor::from(t.server_config.clone()));
        let limits = Limits::new(
            config.max_connections,
            config.first_byte_timeout_ms,
            config.idle_timeout_ms,
        );
        let task = tokio::spawn(serve(listener, acceptor, ctx, limits, stopped));
        Ok(MockServer {
            addr,
            ca_pem: tls.map(|t| t.ca_pem),
            chart,
            config,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The base URL, e.g. `https://127.0.0.1:4010`. A wildcard listen address is
    /// given as `127.0.0.1`.
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        let ip = if self.addr.ip().is_unspecified() {
            "127.0.0.1".parse().expect("ip")
        } else {
            self.addr.ip()
        };
        format!("{scheme}://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The CA certificate (PEM) that signed the server's certificate, when serving TLS.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    /// The configuration the server runs with.
    pub fn config(&self) -> &MockConfig {
        &self.config
    }

    /// The model behind the server, for assertions beyond the control plane.
    pub fn chart(&self) -> &Chart {
        &self.chart
    }

    /// Mints a code, as `POST /__chart/codes` does.
    pub fn mint_code(&self, req: &MintRequest) -> Result<MintedCode, MintError> {
        self.chart.mint(req)
    }

    /// Moves the mock's clock forward, as `POST /__chart/clock` does.
    pub fn advance_clock(&self, by: Duration) {
        self.chart.advance_clock(by);
    }

    /// Queues a fault, as `POST /__chart/faults` does.
    pub fn add_fault(&self, fault: Fault) {
        self.chart.add_fault(fault);
    }

    /// Clears pending faults, as `DELETE /__chart/faults` does.
    pub fn clear_faults(&self) {
        self.chart.clear_faults();
    }

    /// The journal, oldest first, with every secret left out.
    pub fn journal(&self) -> Vec<JournalEntry> {
        self.chart.journal()
    }

    /// The conformance report of every client that called Chart's API, as
    /// `GET /__chart/report` serves it. `kept` lists the accounts whose tokens the
    /// clients still hold; without it the disconnect check is not seen.
    pub fn report(&self, kept: Option<&std::collections::HashSet<String>>) -> Report {
        self.chart.report(kept)
    }

    /// Stops accepting, lets open requests finish (for up to 5 s), and returns.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves HTTP/1.1 or HTTP/2 on one connection, plain or TLS.
async fn serve_io<I>(
    io: I,
    ctx: Ctx,
    peer: SocketAddr,
    activity: Arc<Activity>,
    limits: Limits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    // Pings find dead peers under long requests; they come later than the idle timeout,
    // so that an idle connection is closed rather than kept alive by them.
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(limits.idle + limits.idle / 4))
        .keep_alive_timeout(Duration::from_secs(20));
    // One handle per connection: each request then touches only its connection's
    // reference count, not one that every core shares.
    let ctx = Arc::new(ctx);
    let service = hyper::service::service_fn(move |req| {
        let in_flight = activity.request();
        let answer = dispatch::handle(ctx.clone(), peer, req);
        async move {
            let answer = answer.await;
            drop(in_flight);
            answer
        }
    });
    let conn = builder
        .serve_connection(TokioIo::new(io), service)
        .into_owned();
    if let Err(e) = watcher.watch(conn).await {
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The first byte of a TLS connection: a handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Whether the client opened with a TLS handshake (it waits for the first byte; the
/// connection's watchdog ends a wait that lasts too long).
async fn speaks_tls(tcp: &tokio::net::TcpStream, activity: &Activity) -> bool {
    let mut first = [0u8; 1];
    match tcp.peek(&mut first).await {
        Ok(1) => {
            activity.read();
            first[0] == TLS_HANDSHAKE
        }
        // Closed, failed or silent: let the TLS accept report it.
        _ => true,
    }
}

/// Plain HTTP sent to the HTTPS port gets a readable 400 instead of a TLS alert that
/// curl shows as "HTTP/0.9".
async fn refuse_plain_http(mut tcp: tokio::net::TcpStream) {
    use tokio::io::AsyncWriteExt;
    let body = "This port speaks HTTPS (the mock runs with --tls): use https:// and trust the CA it printed.\n";
    let answer = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\n\
         connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.write_all(answer.as_bytes()).await;
    let _ = tcp.shutdown().await;
}

async fn serve(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    ctx: Ctx,
    limits: Limits,
    mut stopped: oneshot::Receiver<()>,
) {
    let graceful = GracefulShutdown::new();
    let registry = Arc::new(Registry::default());
    let mut refused: u64 = 0;
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stopped => break,
        };
        let Some(admission) = registry.admit(limits.max_connections) else {
            // Every open connection is in use: refuse this one at once.
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    refused,
                    max = limits.max_connections,
                    "connection cap reached; refusing"
                );
            }
            drop(tcp);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let ctx = ctx.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let activity = admission.activity.clone();
            let work = async {
                match acceptor {
                    Some(acceptor) => {
                        if !speaks_tls(&tcp, &activity).await {
                            refuse_plain_http(tcp).await;
                            return;
                        }
                        let tcp = Watched::new(tcp, activity.clone());
                        match tokio::time::timeout(HEADER_READ_TIMEOUT, acceptor.accept(tcp)).await
                        {
                            Ok(Ok(tls)) => {
                                serve_io(tls, ctx, peer, activity.clone(), limits, watcher).await
                            }
                            Ok(Err(e)) => {
                                tracing::debug!(%peer, error = %e, "TLS handshake failed")
                            }
                            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                        }
                    }
                    None => {
                        let tcp = Watched::new(tcp, activity.clone());
                        serve_io(tcp, ctx, peer, activity.clone(), limits, watcher).await
                    }
                }
            };
            let mut admission = admission;
            tokio::select! {
                () = work => {}
                _ = &mut admission.evicted => tracing::debug!(%peer, "silent connection closed to make room"),
                () = activity.expired(limits) => tracing::debug!(%peer, "connection closed: silent or idle"),
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(5), graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!("connections still open after 5 s; closing them");
    }
    ctx.log.report_skipped();
}
