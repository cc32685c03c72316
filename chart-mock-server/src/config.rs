//! The mock's configuration: the TOML file of `--config`, or the sandbox defaults.

use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// The sandbox client's id, used when no config names clients.
pub const SANDBOX_CLIENT_ID: &str = "chart-sandbox-client";
/// The sandbox client's secret. It is public: the sandbox guards nothing.
pub const SANDBOX_CLIENT_SECRET: &str = "chart-sandbox-secret";
/// The sandbox client's registered redirect URIs.
pub const SANDBOX_REDIRECT_URIS: [&str; 2] = [
    "http://localhost:3000/api/chart/callback",
    "http://127.0.0.1:3000/api/chart/callback",
];

/// A client as the mock refers to it once configured: its index in
/// [`MockConfig::clients`].
pub(crate) type ClientIx = u32;

/// A client registered with the mock.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ClientConfig {
    /// The OAuth client id.
    pub client_id: String,
    /// The OAuth client secret.
    pub client_secret: String,
    /// The whitelisted `redirect_uri`s for the Redirect flow.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// The origins that may embed the Connect page (embedded flow) and receive its
    /// messages. When empty: the origins of `redirect_uris`, and any `localhost` or
    /// `127.0.0.1` origin, for local development.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("redirect_uris", &self.redirect_uris)
            .field("allowed_origins", &self.allowed_origins)
            .finish()
    }
}

impl ClientConfig {
    /// Whether the Connect page may post to (and be framed by) `origin`, a normalized
    /// `scheme://host[:port]`.
    pub fn allows_origin(&self, origin: &str) -> bool {
        if !self.allowed_origins.is_empty() {
            return self
                .allowed_origins
                .iter()
                .any(|o| o.trim_end_matches('/').eq_ignore_ascii_case(origin));
        }
        let host = origin.split_once("://").map_or("", |(_, rest)| {
            rest.rsplit_once(':').map_or(rest, |(h, _)| h)
        });
        let local = origin.starts_with("http://") && matches!(host, "localhost" | "127.0.0.1");
        local
            || self.redirect_uris.iter().any(|r| {
                r.parse::<http::Uri>().ok().is_some_and(|u| {
                    u.scheme_str().zip(u.authority()).is_some_and(|(s, a)| {
                        format!("{s}://{}", a.as_str()).eq_ignore_ascii_case(origin)
                    })
                })
            })
    }

    /// The documented sandbox client.
    pub fn sandbox() -> Self {
        Self {
            client_id: SANDBOX_CLIENT_ID.into(),
            client_secret: SANDBOX_CLIENT_SECRET.into(),
            redirect_uris: SANDBOX_REDIRECT_URIS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            allowed_origins: Vec::new(),
        }
    }
}

/// Everything the mock can be told. `Default` is the sandbox on a random loopback port.
///
/// ```
/// let config = chart_mock_server::MockConfig::from_toml(r#"
///     code_ttl_secs = 60
///     [[clients]]
///     client_id = "app"
///     client_secret = "s"
///     redirect_uris = ["https://app.example.com/api/chart/callback"]
/// "#)?;
/// assert_eq!(config.code_ttl_secs, 60);
/// assert_eq!(config.clients[0].client_id, "app");
/// # Ok::<(), chart_mock_server::ConfigError>(())
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MockConfig {
    /// Where to listen (default `127.0.0.1:0`, a free port).
    #[serde(skip)]
    pub addr: SocketAddr,
    /// Serve HTTPS with a certificate made at start.
    #[serde(skip)]
    pub tls: bool,
    /// The bearer token the control plane requires from non-loopback peers.
    #[serde(skip)]
    pub admin_token: Option<String>,
    /// The host name the mock is served as (the binary's `--addr localhost:3000` gives
    /// `localhost`). Control-plane requests must name it, an IP literal or `localhost`
    /// in their `Host` header; any other name is refused (DNS rebinding).
    #[serde(skip)]
    pub host_name: Option<String>,
    /// How long codes live, on the mock's clock (default 600).
    pub code_ttl_secs: u64,
    /// The registered clients (default: the sandbox client).
    pub clients: Vec<ClientConfig>,
    /// The most codes minted through the control plane held at once; the oldest are
    /// evicted (default 100,000).
    pub max_codes: usize,
    /// The most codes minted through the Connect page held at once, apart from
    /// `max_codes`: the oldest are evicted, and never a control-plane code (default
    /// 16,384). Anyone who can load the page can mint these.
    pub max_page_codes: usize,
    /// The most live tokens held at once; the oldest are evicted (default 100,000).
    pub max_tokens: usize,
    /// The journal's length (default 1,000).
    pub journal_len: usize,
    /// An optional limit on `/auth/token` requests per minute, answered with 429.
    pub rate_limit_per_minute: Option<u32>,
    /// How long the `slow` scenario waits, in milliseconds (default 1,500).
    pub slow_ms: u64,
    /// The most connections open at once (default: 1,024, or fewer when the process
    /// may open fewer files). At the cap, the oldest connection that has not sent a
    /// byte is closed to make room; if every one has, the new one is refused at once.
    pub max_connections: Option<usize>,
    /// How long a new connection may stay silent before it is closed, in milliseconds
    /// (default 10,000).
    pub first_byte_timeout_ms: u64,
    /// How long a connection with no request under way may send nothing before it is
    /// closed, HTTP/1 and HTTP/2 alike, in milliseconds (default 60,000).
    pub idle_timeout_ms: u64,
}

impl std::fmt::Debug for MockConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MockConfig")
            .field("addr", &self.addr)
            .field("tls", &self.tls)
            .field(
                "admin_token",
                &self.admin_token.as_ref().map(|_| "<redacted>"),
            )
            .field("code_ttl_secs", &self.code_ttl_secs)
            .field("clients", &self.clients)
            .field("max_codes", &self.max_codes)
            .field("max_page_codes", &self.max_page_codes)
            .field("max_tokens", &self.max_tokens)
            .field("journal_len", &self.journal_len)
            .field("rate_limit_per_minute", &self.rate_limit_per_minute)
            .field("slow_ms", &self.slow_ms)
            .field("max_connections", &self.max_connections)
            .field("first_byte_timeout_ms", &self.first_byte_timeout_ms)
            .field("idle_timeout_ms", &self.idle_timeout_ms)
            .finish_non_exhaustive()
    }
}

impl Default for MockConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            tls: false,
            admin_token: None,
            host_name: None,
            code_ttl_secs: 600,
            clients: vec![ClientConfig::sandbox()],
            max_codes: 100_000,
            max_page_codes: 16_384,
            max_tokens: 100_000,
            journal_len: 1_000,
            rate_limit_per_minute: None,
            slow_ms: 1_500,
            max_connections: None,
            first_byte_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown keys.
    #[error("bad config: {0}")]
    Parse(String),
    /// The values are inconsistent.
    #[error("bad config: {0}")]
    Invalid(String),
}

/// toml's message with where it happened: `line 2, column 17, key code_ttl_secs: ...`.
/// The line's text is not quoted, so a secret on it is not echoed.
fn located(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return e.message().to_owned();
    };
    let Some(before) = text.get(..span.start) else {
        return e.message().to_owned();
    };
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line_text = text
        .get(line_start..)
        .and_then(|l| l.lines().next())
        .unwrap_or("");
    let key = line_text
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| {
            !k.is_empty()
                && k.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        });
    match key {
        Some(key) => format!("line {line}, column {column}, key {key}: {}", e.message()),
        None => format!("line {line}, column {column}: {}", e.message()),
    }
}

impl MockConfig {
    /// Parses the TOML of `--config` and checks it.
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let config: Self =
            toml::from_str(text).map_err(|e| ConfigError::Parse(located(text, &e)))?;
        config.validate()?;
        Ok(config)
    }

    /// Reads and parses a config file; errors name the file, the line and the key.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse(m) => ConfigError::Parse(format!("{}: {m}", path.display())),
            ConfigError::Invalid(m) => ConfigError::Invalid(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Checks that the values make sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        if self.clients.is_empty() {
            return bad("at least one client is needed".into());
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.clients {
            if c.client_id.is_empty() || c.client_secret.is_empty() {
                return bad("every client needs a non-empty client_id and client_secret".into());
            }
            if !seen.insert(&c.client_id) {
                return bad(format!("client_id {:?} appears twice", c.client_id));
            }
            for uri in &c.redirect_uris {
                if !(uri.starts_with("https://") || uri.starts_with("http://")) {
                    return bad(format!(
                        "redirect_uri {uri:?} of {:?} is not an http(s) URL",
                        c.client_id
                    ));
                }
            }
        }
        if self.max_connections == Some(0)
            || self.first_byte_timeout_ms == 0
            || self.idle_timeout_ms == 0
        {
            return bad(
                "max_connections, first_byte_timeout_ms and idle_timeout_ms must be positive"
                    .into(),
            );
        }
        if self.code_ttl_secs == 0
            || self.max_codes == 0
            || self.max_page_codes == 0
            || self.max_tokens == 0
            || self.journal_len == 0
        {
            return bad(
                "code_ttl_secs, max_codes, max_page_codes, max_tokens and journal_len must be positive"
                    .into(),
            );
        }
        Ok(())
    }
}
