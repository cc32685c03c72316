//! `chart-mock-server`: the mock Chart API as a command.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chart_mock_server::{MockConfig, MockServer};
use clap::Parser;

/// A faithful mock of Chart's token API, Connect page and control plane.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Where to listen: `127.0.0.1:4010`, a host name (`localhost:3000`) or a bare port
    /// (`3000`, on 127.0.0.1); port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:4010", value_parser = parse_addr)]
    addr: Listen,
    /// A TOML config file (clients, code_ttl_secs, ...).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Serve HTTPS with a certificate made at start; the CA is written as PEM.
    #[arg(long)]
    tls: bool,
    /// Where to write the CA with --tls (default: a file in the temp directory).
    #[arg(long, requires = "tls")]
    ca_out: Option<PathBuf>,
    /// The log format on stderr: `text` (colour only on a terminal) or `json`, one
    /// object per line, for teams that ship logs.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// The bearer token the control plane requires from non-loopback clients. Prefer
    /// `--admin-token-file` or `CHART_MOCK_ADMIN_TOKEN`: a command line shows in `ps`.
    #[arg(long, env = "CHART_MOCK_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// A file whose first line is the admin token (kept out of `ps`).
    #[arg(long, conflicts_with = "admin_token")]
    admin_token_file: Option<PathBuf>,
}

/// How the log is written.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// A listen address, and the host name to print in URLs.
#[derive(Clone, Debug)]
struct Listen {
    addr: SocketAddr,
    host: String,
}

/// `IP:PORT`, `HOST:PORT` or a bare `PORT`. `localhost` listens on 127.0.0.1, which is
/// where browsers reach `http://localhost` too.
fn parse_addr(text: &str) -> Result<Listen, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(Listen {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            host: "127.0.0.1".into(),
        });
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(Listen {
            addr,
            host: addr.ip().to_string(),
        });
    }
    let (host, port) = text
        .rsplit_once(':')
        .ok_or_else(|| format!("{text:?} is not HOST:PORT, IP:PORT or a port"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| format!("{port:?} is not a port number"))?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(Listen {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            host: "localhost".into(),
        });
    }
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| format!("cannot resolve {host:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("{host:?} has no address"))?;
    Ok(Listen {
        addr,
        host: host.to_owned(),
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "chart_mock_server=info".into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| LogWriter);
    match args.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let log_writer = LogWriterThread::start();
    let result = run(args).await;
    log_writer.stop();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("chart-mock-server: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The log (stderr), buffered. Under load the mock logs many lines a second, and a
/// `write` to stderr for each cost a tenth of its time; a writer thread woken for each
/// line cost as much. Lines go into this buffer instead, and a thread of its own writes
/// it out every [`LOG_FLUSH_EVERY`] and at exit. A slow or unread stderr therefore
/// never holds up an answer: past [`LOG_BUFFER_MAX`] lines are dropped, and counted.
static LOG: Mutex<Pending> = Mutex::new(Pending {
    lines: Vec::new(),
    dropped: 0,
});

/// Log lines not yet written, and how many did not fit.
struct Pending {
    lines: Vec<u8>,
    dropped: u64,
}

/// How long a log line may wait in [`LOG`].
const LOG_FLUSH_EVERY: Duration = Duration::from_millis(100);
/// The most log bytes kept waiting for stderr.
const LOG_BUFFER_MAX: usize = 1 << 20;

fn pending() -> MutexGuard<'static, Pending> {
    LOG.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes formatted log lines into [`LOG`]; `tracing` writes each line in one call.
struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut pending = pending();
        if pending.lines.len() + line.len() <= LOG_BUFFER_MAX {
            pending.lines.extend_from_slice(line);
        } else {
            pending.dropped += 1;
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The thread that writes [`LOG`] to stderr.
struct LogWriterThread {
    stop: std::sync::mpsc::Sender<()>,
    stopped: std::sync::mpsc::Receiver<()>,
}

impl LogWriterThread {
    fn start() -> Self {
        let (stop, stop_rx) = std::sync::mpsc::channel();
        let (stopped_tx, stopped) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                let write_out = || {
                    let (lines, dropped) = {
                        let mut p = pending();
                        (std::mem::take(&mut p.lines), std::mem::take(&mut p.dropped))
                    };
                    let _ = std::io::stderr().write_all(&lines);
                    if dropped > 0 {
                        tracing::warn!(
                            dropped,
                            "log lines dropped: stderr is not read fast enough"
                        );
                    }
                };
                while let Err(RecvTimeoutError::Timeout) = stop_rx.recv_timeout(LOG_FLUSH_EVERY) {
                    write_out();
                }
                write_out();
                // Again, for the count of any lines dropped since the last write.
                write_out();
                let _ = stopped_tx.send(());
            })
            .expect("a thread for the log");
        Self { stop, stopped }
    }

    /// Writes out what is left, waiting at most a second for a stderr that nobody reads.
    fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.stopped.recv_timeout(Duration::from_secs(1));
    }
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    // Before anything is printed: a SIGTERM sent as soon as the banner shows must find
    // the handler in place, not kill the process with the default action.
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut config = match &args.config {
        Some(path) => MockConfig::load(path)?,
        None => MockConfig::default(),
    };
    config.addr = args.addr.addr;
    config.tls = args.tls;
    config.admin_token = match &args.admin_token_file {
        Some(path) => Some(read_token_file(path)?),
        None => args.admin_token.clone().filter(|t| !t.is_empty()),
    };
    if args.addr.host.parse::<std::net::IpAddr>().is_err() {
        config.host_name = Some(args.addr.host.clone());
    }
    let server = MockServer::start(config).await?;

    let scheme = if server.ca_pem().is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{}:{}", args.addr.host, server.addr().port());
    println!("chart-mock-server listening on {url}");
    // A CA file this run chose is removed at exit, with its directory; one the user
    // named is theirs.
    let mut temporary_ca_dir = None;
    if let Some(pem) = server.ca_pem() {
        let path = match args.ca_out {
            Some(path) => {
                replace_file(&path, pem.as_bytes())
                    .map_err(|e| format!("cannot write the CA to {}: {e}", path.display()))?;
                path
            }
            None => {
                let dir = private_temp_dir()?;
                let path = dir.join("ca.pem");
                temporary_ca_dir = Some(dir);
                write_new(&path, pem.as_bytes())?;
                path
            }
        };
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
    println!("start here:    {url}/ (the clients, the Connect page in both flows, the report)");
    println!("Connect page:  {url}/connect?client_id=...&redirect_uri=...&state=...");
    if server.addr().port() == 3000 && scheme == "http" {
        println!("React SDK: use chartDevMode: true; this mock answers at http://localhost:3000");
    } else {
        println!(
            "React SDK: its dev mode (chartDevMode: true) loads http://localhost:3000; start with --addr localhost:3000"
        );
    }
    println!(
        "control plane: {}/__chart/health (loopback open; others need the admin token)",
        server.url()
    );
    println!("Press Ctrl-C to stop.");

    tokio::select! {
        _ = term.recv() => {}
        _ = interrupt.recv() => {}
    }
    eprintln!("shutting down");
    server.shutdown().await;
    if let Some(dir) = temporary_ca_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    Ok(())
}

/// A fresh directory only this user can enter, under the temp directory. Made with a
/// random name and refused if anything is already there, so another local user cannot
/// plant a file or a symlink where the CA will be written.
fn private_temp_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let dir = std::env::temp_dir().join(format!("chart-mock-server-{}", uuid::Uuid::new_v4()));
    std::fs::DirBuilder::new().mode(0o700).create(&dir)?;
    Ok(dir)
}

/// Writes a file that must not exist yet, mode 0644. `create_new` (O_CREAT | O_EXCL)
/// fails on any existing name, a symlink included, and O_NOFOLLOW says so twice.
fn write_new(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .mode(0o644)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Writes `path` whole, as a new file renamed over whatever the name held: a symlink
/// there is replaced, never followed, so its target is never truncated, and a reader
/// never sees half a file.
fn replace_file(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.{}", uuid::Uuid::new_v4().simple()));
    let written = write_new(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// The admin token from its file: the first line, which must not be empty. A file that
/// group or others can read or write is refused: the token opens the control plane.
fn read_token_file(path: &std::path::Path) -> Result<String, Box<dyn std::error::Error>> {
    use std::os::unix::fs::PermissionsExt;
    let unreadable = |e| format!("cannot read the admin token file {}: {e}", path.display());
    let mode = std::fs::metadata(path)
        .map_err(unreadable)?
        .permissions()
        .mode();
    if mode & 0o066 != 0 {
        return Err(format!(
            "the admin token file {} can be read or written by group or others (mode {:o}); run `chmod 600` on it",
            path.display(),
            mode & 0o777
        )
        .into());
    }
    let text = std::fs::read_to_string(path).map_err(unreadable)?;
    let token = text.lines().next().unwrap_or("").trim().to_owned();
    if token.is_empty() {
        return Err(format!("the admin token file {} is empty", path.display()).into());
    }
    Ok(token)
}
