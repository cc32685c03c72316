//! `chart-mock-server`: the mock Chart API as a command.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use chart_mock_server::{MockConfig, MockServer};
use clap::Parser;

/// A faithful mock of Chart's token API, Connect page and control plane.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where to listen; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:4010")]
    addr: SocketAddr,
    /// A TOML config file (clients, code_ttl_secs, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve HTTPS with a certificate made at start; the CA is written as PEM.
    #[arg(long)]
    tls: bool,
    /// Where to write the CA with --tls (default: a file in the temp directory).
    #[arg(long, requires = "tls")]
    ca_out: Option<PathBuf>,
    /// The bearer token the control plane requires from non-loopback clients.
    #[arg(long, env = "CHART_MOCK_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "chart_mock_server=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    match run(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chart-mock-server: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let mut config = match &args.config {
        Some(path) => MockConfig::load(path)?,
        None => MockConfig::default(),
    };
    config.addr = args.addr;
    config.tls = args.tls;
    config.admin_token = args.admin_token.filter(|t| !t.is_empty());
    let server = MockServer::start(config).await?;

    println!("chart-mock-server listening on {}", server.url());
    if let Some(pem) = server.ca_pem() {
        let path = args.ca_out.unwrap_or_else(|| {
            std::env::temp_dir().join(format!("chart-mock-server-{}-ca.pem", server.addr().port()))
        });
        std::fs::write(&path, pem)?;
        println!("CA certificate (PEM): {}", path.display());
    }
    for client in &server.config().clients {
        println!("client_id:     {}", client.client_id);
        if args.config.is_none() {
            // The sandbox client's secret is public and documented; a configured one is not printed.
            println!("client_secret: {}", client.client_secret);
        }
        for uri in &client.redirect_uris {
            println!("redirect_uri:  {uri}");
        }
    }
    println!(
        "Connect page:  {}/connect?client_id=...&redirect_uri=...&state=...",
        server.url()
    );
    println!(
        "control plane: {}/__chart/health (loopback open; others need the admin token)",
        server.url()
    );
    println!("Press Ctrl-C to stop.");

    wait_for_signal().await;
    eprintln!("shutting down");
    server.shutdown().await;
    Ok(())
}

async fn wait_for_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
    }
}
