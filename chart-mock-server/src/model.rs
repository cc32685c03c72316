//! The mock's model of Chart: clients, codes, tokens, the clock, faults and the journal.
//!
//! Everything here is synchronous and guarded by short-lived locks that are never held
//! across an await, so the HTTP layer can call it from any task.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::config::{ClientConfig, MockConfig};
use crate::report::{Observation, Observations, Report};

/// What happens when a code is exchanged (chosen at minting or on the Connect page).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// The exchange succeeds.
    #[default]
    Success,
    /// Every exchange answers 500 `server_error`; the code is not spent.
    ServerError,
    /// The first exchange answers 429 with `Retry-After: 1` without spending the code;
    /// the next succeeds.
    RateLimited,
    /// The exchange succeeds after a delay (the config's `slow_ms`).
    Slow,
    /// The user denied access: the Connect page answers `error=access_denied`, and an
    /// exchange of a minted denied code fails with `invalid_grant_error`.
    Denied,
}

impl Scenario {
    /// Every scenario, in the Connect page's order.
    pub const ALL: [Scenario; 5] = [
        Self::Success,
        Self::ServerError,
        Self::RateLimited,
        Self::Slow,
        Self::Denied,
    ];

    /// The scenario's wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::ServerError => "server_error",
            Self::RateLimited => "rate_limited",
            Self::Slow => "slow",
            Self::Denied => "denied",
        }
    }

    /// Parses a wire name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == name)
    }
}

/// Chart's tax providers, as the Connect page offers them.
pub const PROVIDERS: [(&str, &str); 13] = [
    ("chart-sandbox", "Chart Sandbox"),
    ("turbotax", "TurboTax"),
    ("hr", "H&R Block"),
    ("taxact", "TaxAct"),
    ("tax_slayer", "TaxSlayer"),
    ("jackson", "Jackson Hewitt"),
    ("free_tax_usa", "FreeTaxUSA"),
    ("irs", "IRS"),
    ("irs_tax_pro", "IRS Tax Pro"),
    ("pilot", "Pilot"),
    ("cch_axcess", "CCH Axcess"),
    ("drake", "Drake"),
    ("proconnect", "ProConnect"),
];

/// A request to mint a code, as the control plane takes it.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintRequest {
    /// The client the code is issued to.
    pub client_id: String,
    /// The provider (default `chart-sandbox`).
    #[serde(default)]
    pub provider_id: Option<String>,
    /// The Redirect flow's `redirect_uri`; none means an embedded-flow code.
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// What the exchange does (default `success`).
    #[serde(default)]
    pub scenario: Option<Scenario>,
    /// The React SDK's `metadata` (JSON text), kept with the code for the journal.
    #[serde(default)]
    pub metadata: Option<String>,
}

/// A freshly minted code.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct MintedCode {
    /// The authorization code.
    pub code: String,
    /// Seconds until it expires, on the mock's clock.
    pub expires_in: u64,
    /// A non-secret id for the code, which journal entries name.
    pub code_id: String,
}

/// Why minting a code failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// No such client.
    #[error("unknown client_id")]
    UnknownClient,
    /// The `redirect_uri` is not registered for the client.
    #[error("redirect_uri is not registered for this client")]
    UnregisteredRedirect,
    /// The provider is empty or too long.
    #[error("provider_id must be 1 to 64 characters")]
    BadProvider,
}

#[derive(Clone, Debug)]
struct CodeEntry {
    id: String,
    client_id: String,
    provider_id: String,
    redirect_uri: Option<String>,
    scenario: Scenario,
    metadata: Option<String>,
    expires_at: u64,
    /// `None` while unused; `Some(token)` once spent (the token it gave, if any).
    spent: Option<Option<String>>,
    rate_limited_once: bool,
}

/// A live access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// The account (`taxpayer_id`).
    pub account_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// The provider.
    pub provider_id: String,
}

/// The outcome of an exchange's grant check, after the client is authenticated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GrantOutcome {
    /// A new token.
    Issued {
        /// The account id (also the taxpayer id).
        account_id: String,
        /// The provider.
        provider_id: String,
        /// The access token.
        access_token: String,
        /// Whether the scenario asks for a slow answer.
        slow: bool,
    },
    /// `invalid_grant_error`, with its message.
    InvalidGrant(&'static str),
    /// 429 with `Retry-After: 1`; the code is not spent.
    RateLimited,
    /// 500 `server_error`; the code is not spent.
    ServerError,
}

/// A map that forgets its oldest entries past a cap.
#[derive(Debug)]
struct Bounded<V> {
    map: HashMap<String, V>,
    order: VecDeque<String>,
    cap: usize,
}

impl<V> Bounded<V> {
    fn new(cap: usize) -> Self {
        Self {
            map: HashMap::new(),
            order: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    fn insert(&mut self, key: String, value: V) {
        while self.map.len() >= self.cap {
            match self.order.pop_front() {
                Some(old) => {
                    self.map.remove(&old);
                }
                None => break,
            }
        }
        if self.order.len() > 2 * self.cap {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
        self.order.push_back(key.clone());
        self.map.insert(key, value);
    }
}

/// A fault waiting for requests, as the control plane takes it.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Which path it hits (default `/auth/token`).
    #[serde(default = "default_fault_path")]
    pub path: String,
    /// How many requests it hits (default 1).
    #[serde(default = "one")]
    pub times: u32,
    /// For `status`: the status to answer.
    #[serde(default)]
    pub status: Option<u16>,
    /// For `latency`: the delay before the normal answer.
    #[serde(default)]
    pub delay_ms: Option<u64>,
    /// For `status` 429 and 503: the `Retry-After` seconds (default 1).
    #[serde(default)]
    pub retry_after: Option<u64>,
}

fn default_fault_path() -> String {
    "/auth/token".into()
}

fn one() -> u32 {
    1
}

/// The fault kinds of the control plane.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FaultKind {
    /// Waits `delay_ms`, then answers normally.
    Latency,
    /// Answers `status` with a matching error body, before the grant is checked.
    Status,
    /// Closes the connection before any answer.
    Reset,
    /// Sends the status line and headers of a 200, then closes.
    Empty,
    /// A 200 whose body is not JSON.
    MalformedJson,
    /// A 200 whose body stops midway.
    Truncated,
}

impl FaultKind {
    /// The kind's name in the control plane, e.g. `malformed_json`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Latency => "latency",
            Self::Status => "status",
            Self::Reset => "reset",
            Self::Empty => "empty",
            Self::MalformedJson => "malformed_json",
            Self::Truncated => "truncated",
        }
    }
}

/// One request, as the journal keeps it. No secret is ever recorded: the client
/// secret, the code, tokens and the `Authorization` header are left out.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct JournalEntry {
    /// The `Chart-Request-Id` of the answer.
    pub request_id: String,
    /// Seconds since the Unix epoch, on the mock's clock.
    pub at: u64,
    /// The HTTP method.
    pub method: String,
    /// The path, without the query (which may carry secrets).
    pub path: String,
    /// The answer's status.
    pub status: u16,
    /// The error name, or `success`.
    pub outcome: String,
    /// The client id, if the request named one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub client_id: Option<String>,
    /// The non-secret id of the code the request carried, if the mock knows it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code_id: Option<String>,
    /// The fault applied, if any.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub fault: Option<FaultKind>,
    /// The React SDK's `metadata` kept with the code that this request used.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub metadata: Option<String>,
}

/// The journal's entries, and roughly how many bytes they hold.
#[derive(Debug, Default)]
struct Journal {
    entries: VecDeque<JournalEntry>,
    bytes: usize,
}

/// The most bytes the journal holds, whatever its length: about 2 MiB.
pub const JOURNAL_MAX_BYTES: usize = 2 << 20;
/// The longest journal field a client chooses (a path, a client id, metadata).
pub const JOURNAL_FIELD_MAX: usize = 256;

/// Cuts `text` to at most `max` bytes, on a character boundary, marking the cut.
fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut at = max.saturating_sub(3);
        while !text.is_char_boundary(at) {
            at -= 1;
        }
        text.truncate(at);
        text.push('…');
    }
}

/// What an entry costs, roughly: its strings and its fixed part.
fn entry_size(e: &JournalEntry) -> usize {
    std::mem::size_of::<JournalEntry>()
        + e.request_id.len()
        + e.method.len()
        + e.path.len()
        + e.outcome.len()
        + e.client_id.as_ref().map_or(0, String::len)
        + e.code_id.as_ref().map_or(0, String::len)
        + e.metadata.as_ref().map_or(0, String::len)
}

/// The mock's state, shared by every connection.
#[derive(Debug)]
pub struct Chart {
    clients: HashMap<String, ClientConfig>,
    code_ttl: u64,
    slow: Duration,
    clock_offset: AtomicU64,
    codes: Mutex<Bounded<CodeEntry>>,
    tokens: Mutex<Bounded<TokenInfo>>,
    faults: Mutex<Vec<Fault>>,
    /// Whether any fault is pending: the hot path skips the lock when none is.
    has_faults: std::sync::atomic::AtomicBool,
    journal: Mutex<Journal>,
    journal_len: usize,
    observations: Mutex<Observations>,
    rate: Option<Mutex<RateWindow>>,
    dummy_secret: String,
}

#[derive(Debug)]
struct RateWindow {
    per_minute: u32,
    window_start: u64,
    used: u32,
}

fn random_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

impl Chart {
    /// Builds the state from a configuration.
    pub fn new(config: &MockConfig) -> Self {
        Self {
            clients: config
                .clients
                .iter()
                .map(|c| (c.client_id.clone(), c.clone()))
                .collect(),
            code_ttl: config.code_ttl_secs,
            slow: Duration::from_millis(config.slow_ms),
            clock_offset: AtomicU64::new(0),
            codes: Mutex::new(Bounded::new(config.max_codes)),
            tokens: Mutex::new(Bounded::new(config.max_tokens)),
            faults: Mutex::new(Vec::new()),
            has_faults: std::sync::atomic::AtomicBool::new(false),
            journal: Mutex::new(Journal::default()),
            journal_len: config.journal_len,
            observations: Mutex::new(Observations::new(config.journal_len)),
            rate: config.rate_limit_per_minute.map(|per_minute| {
                Mutex::new(RateWindow {
                    per_minute,
                    window_start: 0,
                    used: 0,
                })
            }),
            dummy_secret: random_id(),
        }
    }

    /// Now on the mock's clock, in seconds since the Unix epoch.
    pub fn now(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        real.saturating_add(self.clock_offset.load(Ordering::Relaxed))
    }

    /// Moves the mock's clock forward.
    pub fn advance_clock(&self, by: Duration) {
        let _ = self
            .clock_offset
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |o| {
                Some(o.saturating_add(by.as_secs()))
            });
    }

    /// How long the `slow` scenario waits.
    pub fn slow_delay(&self) -> Duration {
        self.slow
    }

    /// A configured client.
    pub fn client(&self, client_id: &str) -> Option<&ClientConfig> {
        self.clients.get(client_id)
    }

    /// Checks a client's credentials in constant time. Unknown clients take the same
    /// path against a dummy secret, so timing does not reveal which ids exist.
    pub fn authenticate(&self, client_id: &str, secret: &str) -> bool {
        let (expected, known) = match self.clients.get(client_id) {
            Some(c) => (c.client_secret.as_str(), true),
            None => (self.dummy_secret.as_str(), false),
        };
        let equal: bool = expected.as_bytes().ct_eq(secret.as_bytes()).into();
        equal && known
    }

    /// Mints a code for a client.
    pub fn mint(&self, req: &MintRequest) -> Result<MintedCode, MintError> {
        let client = self
            .clients
            .get(&req.client_id)
            .ok_or(MintError::UnknownClient)?;
        if let Some(uri) = &req.redirect_uri
            && !client.redirect_uris.iter().any(|r| r == uri)
        {
            return Err(MintError::UnregisteredRedirect);
        }
        let provider_id = req
            .provider_id
            .clone()
            .unwrap_or_else(|| "chart-sandbox".into());
        if provider_id.is_empty() || provider_id.len() > 64 {
            return Err(MintError::BadProvider);
        }
        let code = format!("code_{}", uuid::Uuid::new_v4().simple());
        let id = random_id();
        let entry = CodeEntry {
            id: id.clone(),
            client_id: req.client_id.clone(),
            provider_id,
            redirect_uri: req.redirect_uri.clone(),
            scenario: req.scenario.unwrap_or_default(),
            metadata: req.metadata.clone(),
            expires_at: self.now().saturating_add(self.code_ttl),
            spent: None,
            rate_limited_once: false,
        };
        lock(&self.codes).insert(code.clone(), entry);
        Ok(MintedCode {
            code,
            expires_in: self.code_ttl,
            code_id: id,
        })
    }

    /// The non-secret id of a code, if the mock knows it.
    pub fn code_id(&self, code: &str) -> Option<String> {
        lock(&self.codes).map.get(code).map(|c| c.id.clone())
    }

    /// Whether the only client is the documented sandbox client (no `--config`).
    pub fn sandbox_only(&self) -> bool {
        self.clients.len() == 1
            && self.clients.values().all(|c| {
                c.client_id == crate::config::SANDBOX_CLIENT_ID
                    && c.client_secret == crate::config::SANDBOX_CLIENT_SECRET
            })
    }

    /// The `metadata` kept with a code, if any.
    pub fn code_metadata(&self, code: &str) -> Option<String> {
        lock(&self.codes)
            .map
            .get(code)
            .and_then(|c| c.metadata.clone())
    }

    /// How many codes the mock holds (unused and spent).
    pub fn codes_held(&self) -> usize {
        lock(&self.codes).map.len()
    }

    /// Checks and spends a code for an authenticated client. Exactly one caller can
    /// spend a code, however many race for it.
    pub fn redeem(&self, client_id: &str, code: &str, redirect_uri: Option<&str>) -> GrantOutcome {
        self.redeem_noting(client_id, code, redirect_uri, &mut None, &mut None)
    }

    /// Like [`Chart::redeem`], and notes the code's non-secret id for the journal.
    pub fn redeem_noting(
        &self,
        client_id: &str,
        code: &str,
        redirect_uri: Option<&str>,
        code_id: &mut Option<String>,
        redirect_flow: &mut Option<bool>,
    ) -> GrantOutcome {
        let now = self.now();
        let mut codes = lock(&self.codes);
        let Some(entry) = codes.map.get_mut(code) else {
            return GrantOutcome::InvalidGrant("The authorization code is invalid.");
        };
        *code_id = Some(entry.id.clone());
        *redirect_flow = Some(entry.redirect_uri.is_some());
        if let Some(token) = &mut entry.spent {
            // RFC 6749 §10.5: a reused code revokes what it was exchanged for.
            if let Some(token) = token.take() {
                lock(&self.tokens).map.remove(&token);
            }
            return GrantOutcome::InvalidGrant("The authorization code has already been used.");
        }
        if now >= entry.expires_at {
            entry.spent = Some(None);
            return GrantOutcome::InvalidGrant("The authorization code has expired.");
        }
        if entry.client_id != client_id {
            entry.spent = Some(None);
            return GrantOutcome::InvalidGrant(
                "The authorization code was issued to another client.",
            );
        }
        match (&entry.redirect_uri, redirect_uri) {
            (None, Some(_)) => {
                entry.spent = Some(None);
                return GrantOutcome::InvalidGrant(
                    "This code comes from the embedded flow; do not send a redirect_uri.",
                );
            }
            (Some(expected), got) if got != Some(expected.as_str()) => {
                entry.spent = Some(None);
                return GrantOutcome::InvalidGrant(
                    "The redirect_uri does not match the one the code was issued for.",
                );
            }
            _ => {}
        }
        match entry.scenario {
            Scenario::ServerError => return GrantOutcome::ServerError,
            Scenario::RateLimited if !entry.rate_limited_once => {
                entry.rate_limited_once = true;
                return GrantOutcome::RateLimited;
            }
            Scenario::Denied => {
                entry.spent = Some(None);
                return GrantOutcome::InvalidGrant("The user denied access to their account.");
            }
            _ => {}
        }
        let token = random_id();
        entry.spent = Some(Some(token.clone()));
        let account_id = random_id();
        let provider_id = entry.provider_id.clone();
        let slow = entry.scenario == Scenario::Slow;
        drop(codes);
        lock(&self.tokens).insert(
            token.clone(),
            TokenInfo {
                account_id: account_id.clone(),
                client_id: client_id.into(),
                provider_id: provider_id.clone(),
            },
        );
        GrantOutcome::Issued {
            account_id,
            provider_id,
            access_token: token,
            slow,
        }
    }

    /// The live token's details.
    pub fn introspect(&self, token: &str) -> Option<TokenInfo> {
        lock(&self.tokens).map.get(token).cloned()
    }

    /// Revokes a token; `false` if it was not live.
    pub fn revoke(&self, token: &str) -> bool {
        lock(&self.tokens).map.remove(token).is_some()
    }

    /// Takes one use of the configured rate limit; `false` when it is exhausted.
    pub fn take_rate(&self) -> bool {
        let Some(rate) = &self.rate else { return true };
        let now = self.now();
        let mut w = lock(rate);
        if now >= w.window_start.saturating_add(60) {
            w.window_start = now;
            w.used = 0;
        }
        w.used += 1;
        w.used <= w.per_minute
    }

    /// Queues a fault. A fault for zero requests is ignored.
    pub fn add_fault(&self, fault: Fault) {
        if fault.times == 0 {
            return;
        }
        let mut faults = lock(&self.faults);
        faults.push(fault);
        self.has_faults.store(true, Ordering::Relaxed);
    }

    /// Clears every pending fault.
    pub fn clear_faults(&self) {
        let mut faults = lock(&self.faults);
        faults.clear();
        self.has_faults.store(false, Ordering::Relaxed);
    }

    /// Takes one use of the first fault that matches `path`.
    pub fn take_fault(&self, path: &str) -> Option<Fault> {
        if !self.has_faults.load(Ordering::Relaxed) {
            return None;
        }
        let mut faults = lock(&self.faults);
        let i = faults.iter().position(|f| f.path == path)?;
        let fault = faults[i].clone();
        faults[i].times -= 1;
        if faults[i].times == 0 {
            faults.remove(i);
        }
        self.has_faults.store(!faults.is_empty(), Ordering::Relaxed);
        Some(fault)
    }

    /// Records a request in the journal, forgetting the oldest past its length.
    pub fn record(&self, mut entry: JournalEntry) {
        // Fields a client chooses are cut, so that no request can grow the journal by
        // more than a few hundred bytes.
        cut(&mut entry.path, JOURNAL_FIELD_MAX);
        cut(&mut entry.method, 16);
        cut(&mut entry.outcome, 64);
        for field in [&mut entry.client_id, &mut entry.metadata]
            .into_iter()
            .flatten()
        {
            cut(field, JOURNAL_FIELD_MAX);
        }
        let size = entry_size(&entry);
        let mut journal = lock(&self.journal);
        journal.bytes += size;
        journal.entries.push_back(entry);
        while journal.entries.len() > self.journal_len || journal.bytes > JOURNAL_MAX_BYTES {
            let Some(old) = journal.entries.pop_front() else {
                break;
            };
            journal.bytes -= entry_size(&old);
        }
    }

    /// The journal, oldest first.
    pub fn journal(&self) -> Vec<JournalEntry> {
        lock(&self.journal).entries.iter().cloned().collect()
    }

    /// Empties the journal.
    pub fn clear_journal(&self) {
        let mut journal = lock(&self.journal);
        journal.entries.clear();
        journal.bytes = 0;
    }

    /// Keeps what the mock saw of a request to Chart's API, for the conformance report.
    pub fn observe(&self, observation: Observation) {
        lock(&self.observations).push(observation);
    }

    /// The conformance report; `kept` lists the accounts whose tokens the clients still
    /// hold (see [`Check::DisconnectDroppedTokens`](crate::report::Check)).
    pub fn report(&self, kept: Option<&HashSet<String>>) -> Report {
        lock(&self.observations).grade(kept)
    }

    /// Forgets what the report was graded on.
    pub fn clear_report(&self) {
        lock(&self.observations).clear();
    }

    /// The mock's clock in milliseconds.
    pub fn now_ms(&self) -> u64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis();
        u64::try_from(real).unwrap_or(u64::MAX).saturating_add(
            self.clock_offset
                .load(Ordering::Relaxed)
                .saturating_mul(1000),
        )
    }

    /// Whether `value` is a secret the mock knows: a client secret, a live or spent
    /// code, or a live token.
    pub fn is_known_secret(&self, value: &str) -> bool {
        !value.is_empty()
            && (self
                .clients
                .values()
                .any(|c| secret_eq(&c.client_secret, value))
                || lock(&self.codes).map.contains_key(value)
                || lock(&self.tokens).map.contains_key(value))
    }

    /// The client a code was issued to, or a token belongs to.
    pub fn owner_of(&self, secret: &str) -> Option<String> {
        if let Some(code) = lock(&self.codes).map.get(secret) {
            return Some(code.client_id.clone());
        }
        lock(&self.tokens)
            .map
            .get(secret)
            .map(|t| t.client_id.clone())
            .or_else(|| {
                self.clients
                    .values()
                    .find(|c| secret_eq(&c.client_secret, secret))
                    .map(|c| c.client_id.clone())
            })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Compares a client secret in constant time, as authentication does.
fn secret_eq(expected: &str, given: &str) -> bool {
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_map_evicts_the_oldest() {
        let mut m = Bounded::new(2);
        m.insert("a".into(), 1);
        m.insert("b".into(), 2);
        m.insert("c".into(), 3);
        assert!(!m.map.contains_key("a"));
        assert_eq!(m.map.len(), 2);
    }
}
