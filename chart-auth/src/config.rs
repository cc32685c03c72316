//! The SDK's configuration: client credentials, endpoints, timeouts, TLS roots and the
//! retry policy. Every setting has a safe default and is checked once, at build time.

use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::header::HeaderValue;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::error::{ConfigError, Error};
use crate::secret::ClientSecret;

/// The production Chart API.
pub const DEFAULT_API_BASE: &str = "https://api.trychart.com";
/// The production Chart Connect page.
pub const DEFAULT_CONNECT_BASE: &str = "https://connect.trychart.com";
/// The API version sent as `Chart-API-Version` unless overridden.
pub const DEFAULT_API_VERSION: &str = "2024-01-01";

/// How the SDK retries requests that cannot have spent a code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included. `1` disables retries.
    pub max_attempts: u32,
    /// The first backoff after a connect failure; it doubles each time, with full jitter.
    pub base_backoff: Duration,
    /// The longest backoff after a connect failure.
    pub max_backoff: Duration,
    /// The longest `Retry-After` the SDK waits for; longer ones are returned as errors.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(2),
            max_retry_after: Duration::from_secs(10),
        }
    }
}

/// The SDK's configuration. Build it with [`Config::builder`] or [`Config::from_env`].
///
/// `Debug` shows everything but the client secret.
#[derive(Debug)]
pub struct Config {
    pub(crate) client_id: String,
    pub(crate) client_secret: ClientSecret,
    pub(crate) api_base: String,
    pub(crate) connect_base: String,
    pub(crate) api_version: Option<String>,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Duration,
    pub(crate) deadline: Duration,
    pub(crate) max_response_bytes: usize,
    pub(crate) webpki_roots: bool,
    pub(crate) extra_roots: Vec<CertificateDer<'static>>,
    pub(crate) retry: RetryPolicy,
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
}

impl Config {
    /// Starts a configuration with the client credentials Chart issued.
    ///
    /// ```
    /// use chart_auth::{ClientSecret, Config};
    /// let config = Config::builder("my-client", ClientSecret::new("my-secret"))
    ///     .api_base("http://127.0.0.1:4010")
    ///     .build()?;
    /// assert_eq!(config.client_id(), "my-client");
    /// assert!(!format!("{config:?}").contains("my-secret"));
    /// # Ok::<(), chart_auth::Error>(())
    /// ```
    pub fn builder(client_id: impl Into<String>, client_secret: ClientSecret) -> ConfigBuilder {
        ConfigBuilder {
            config: Config {
                client_id: client_id.into(),
                client_secret,
                api_base: DEFAULT_API_BASE.into(),
                connect_base: DEFAULT_CONNECT_BASE.into(),
                api_version: Some(DEFAULT_API_VERSION.into()),
                connect_timeout: Duration::from_secs(5),
                request_timeout: Duration::from_secs(15),
                deadline: Duration::from_secs(30),
                max_response_bytes: 64 * 1024,
                webpki_roots: true,
                extra_roots: Vec::new(),
                retry: RetryPolicy::default(),
                tls: None,
            },
            pem_error: None,
        }
    }

    /// Reads `CHART_CLIENT_ID`, `CHART_CLIENT_SECRET` and, optionally, `CHART_API_BASE`
    /// and `CHART_CONNECT_BASE`.
    pub fn from_env() -> Result<Config, Error> {
        Self::builder_from_env()?.build()
    }

    /// Like [`Config::from_env`], but returns the builder for further settings.
    pub fn builder_from_env() -> Result<ConfigBuilder, Error> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let client_id = var("CHART_CLIENT_ID").ok_or(ConfigError::MissingEnv("CHART_CLIENT_ID"))?;
        let secret =
            var("CHART_CLIENT_SECRET").ok_or(ConfigError::MissingEnv("CHART_CLIENT_SECRET"))?;
        let mut builder = Self::builder(client_id, ClientSecret::new(secret));
        if let Some(base) = var("CHART_API_BASE") {
            builder = builder.api_base(base);
        }
        if let Some(base) = var("CHART_CONNECT_BASE") {
            builder = builder.connect_base(base);
        }
        Ok(builder)
    }

    /// The OAuth client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// The API base URL, without a trailing slash.
    pub fn api_base(&self) -> &str {
        &self.api_base
    }

    /// The Chart Connect page's URL.
    pub fn connect_base(&self) -> &str {
        &self.connect_base
    }
}

/// Builds a [`Config`]; every setting has a safe default.
#[derive(Debug)]
#[must_use]
pub struct ConfigBuilder {
    config: Config,
    pem_error: Option<ConfigError>,
}

impl ConfigBuilder {
    /// The Chart API base URL (default [`DEFAULT_API_BASE`]). `http://` is allowed only
    /// for loopback hosts, such as the mock server.
    pub fn api_base(mut self, url: impl Into<String>) -> Self {
        self.config.api_base = url.into().trim_end_matches('/').to_owned();
        self
    }

    /// The Chart Connect page used by [`ChartConnect::begin_connect`](crate::ChartConnect::begin_connect)
    /// (default [`DEFAULT_CONNECT_BASE`]).
    pub fn connect_base(mut self, url: impl Into<String>) -> Self {
        self.config.connect_base = url.into();
        self
    }

    /// The `Chart-API-Version` header; `None` sends none.
    pub fn api_version(mut self, version: Option<&str>) -> Self {
        self.config.api_version = version.map(str::to_owned);
        self
    }

    /// How long a TCP connect plus TLS handshake may take (default 5 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.config.connect_timeout = timeout;
        self
    }

    /// How long one attempt may take, from sending to the end of the body (default 15 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config.request_timeout = timeout;
        self
    }

    /// How long a call may take in all, retries and waits included (default 30 s).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.config.deadline = deadline;
        self
    }

    /// The largest response body accepted (default 64 KiB).
    pub fn max_response_bytes(mut self, limit: usize) -> Self {
        self.config.max_response_bytes = limit;
        self
    }

    /// Trusts the certificates in this PEM (e.g. a private CA, or the mock's CA) in
    /// addition to the webpki roots.
    pub fn add_root_certificates_pem(mut self, pem: &[u8]) -> Self {
        let mut found = false;
        for cert in CertificateDer::pem_slice_iter(pem) {
            match cert {
                // Parsed as a trust anchor now, so that a PEM block holding something
                // other than a certificate is refused by `build`, not later.
                Ok(cert) => match rustls::RootCertStore::empty().add(cert.clone()) {
                    Ok(()) => {
                        found = true;
                        self.config.extra_roots.push(cert);
                    }
                    Err(e) => {
                        self.pem_error = Some(ConfigError::BadRootCertificate(e.to_string()));
                    }
                },
                Err(e) => self.pem_error = Some(ConfigError::BadRootCertificate(e.to_string())),
            }
        }
        if !found && self.pem_error.is_none() {
            self.pem_error = Some(ConfigError::BadRootCertificate(
                "no certificate found in the PEM".into(),
            ));
        }
        self
    }

    /// Whether to trust the webpki (Mozilla) roots (default `true`). Turn it off to
    /// trust only the roots added with [`ConfigBuilder::add_root_certificates_pem`].
    pub fn webpki_roots(mut self, enabled: bool) -> Self {
        self.config.webpki_roots = enabled;
        self
    }

    /// The retry policy (see [`RetryPolicy`]).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.config.retry = policy;
        self
    }

    /// Uses the caller's own rustls configuration, for a private CA, client
    /// certificates or another crypto provider. It replaces the roots set with
    /// [`ConfigBuilder::add_root_certificates_pem`] and [`ConfigBuilder::webpki_roots`];
    /// the SDK sets its ALPN protocols (h2, http/1.1) on a copy.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use chart_auth::{ClientSecret, Config};
    /// let mut roots = rustls::RootCertStore::empty();
    /// roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    /// let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
    ///     rustls::crypto::ring::default_provider(),
    /// ))
    /// .with_safe_default_protocol_versions()?
    /// .with_root_certificates(roots)
    /// .with_no_client_auth();
    /// let config = Config::builder("my-client", ClientSecret::new("my-secret"))
    ///     .tls_config(Arc::new(tls))
    ///     .build()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn tls_config(mut self, tls: Arc<rustls::ClientConfig>) -> Self {
        self.config.tls = Some(tls);
        self
    }

    /// Checks the settings and builds the configuration.
    pub fn build(self) -> Result<Config, Error> {
        if let Some(e) = self.pem_error {
            return Err(e.into());
        }
        let c = self.config;
        if c.client_id.is_empty() {
            return Err(ConfigError::EmptyClientId.into());
        }
        if c.client_secret.expose_secret().is_empty() {
            return Err(ConfigError::EmptyClientSecret.into());
        }
        check_base_url(&c.api_base, "API base")?;
        check_base_url(&c.connect_base, "Connect base")?;
        if let Some(v) = &c.api_version
            && HeaderValue::from_str(v).is_err()
        {
            return Err(ConfigError::BadApiVersion.into());
        }
        if c.connect_timeout > c.request_timeout || c.request_timeout > c.deadline {
            return Err(ConfigError::TimeoutOrder.into());
        }
        if c.retry.max_attempts == 0 {
            return Err(ConfigError::NoAttempts.into());
        }
        if c.tls.is_none() && !c.webpki_roots && c.extra_roots.is_empty() {
            return Err(ConfigError::NoTrustedRoots.into());
        }
        Ok(c)
    }
}

/// Checks that `url` is an absolute `https://` URL, or `http://` on a loopback host.
pub(crate) fn check_base_url(url: &str, what: &'static str) -> Result<(), ConfigError> {
    let bad = |problem| ConfigError::BadUrl {
        what,
        url: url.to_owned(),
        problem,
    };
    let uri: Uri = url.parse().map_err(|_| bad("is not a valid URL"))?;
    let host = uri.host().ok_or_else(|| bad("has no host"))?;
    match uri.scheme_str() {
        Some("https") => Ok(()),
        Some("http") if is_loopback(host) => Ok(()),
        Some("http") => Err(bad("uses http:// on a non-loopback host; use https://")),
        _ => Err(bad("must be https://")),
    }
}

fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
