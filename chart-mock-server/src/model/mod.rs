//! The mock's model of Chart: clients, codes, tokens, the clock, faults and the journal.
//!
//! Everything here is synchronous and guarded by short-lived locks that are never held
//! across an await, so the HTTP layer can call it from any task.
//!
//! The storage is compact, because by default the mock holds 100,000 codes and 100,000
//! tokens: codes, tokens and every id are 16 random bytes ([`Uuid`]) rather than text,
//! a client is its index in the configuration, and a code's provider and metadata sit
//! in one allocation shared with its token and its journal entries (one for the whole
//! process in the usual case). The code and token maps are sharded by the keys' random
//! bits, so that concurrent exchanges rarely wait on the same lock.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use subtle::ConstantTimeEq;
use uuid::Uuid;

use crate::config::{ClientConfig, ClientIx, MockConfig};

mod fault;
mod journal;
mod maps;
mod mint;

use crate::report::{Observation, Observations, Report};
pub use fault::{Fault, FaultKind, MAX_RETRY_AFTER_SECS};
pub use mint::{MintError, MintRequest, MintedCode, PROVIDERS, Scenario};

/// The most metadata (JSON text, in bytes) a code keeps.
pub const MAX_METADATA_LEN: usize = 256;

/// The most `POST /__chart/clock` moves the mock's clock in one call: ten years.
pub const MAX_ADVANCE_SECS: u64 = 315_360_000;
pub(crate) use journal::Record;
pub use journal::{JOURNAL_FIELD_MAX, JOURNAL_MAX_BYTES, JournalEntry};
use journal::{Records, cut, cut_owned};
use maps::{Shards, lock};

/// What a code carries besides its secret, shared with the token it gives and the
/// journal entries that name it.
#[derive(Debug)]
struct Details {
    provider: Arc<str>,
    metadata: Option<Arc<str>>,
    /// A returning taxpayer's account id; none gives a new one at the exchange.
    taxpayer: Option<Uuid>,
}

/// An outstanding or spent code. Codes stay after they are spent, so that a reuse is
/// told apart from an unknown code and revokes the token it gave. No `Debug`: the maps
/// that hold entries are keyed by secrets.
struct CodeEntry {
    /// The code's non-secret id, which the journal and the report name.
    id: Uuid,
    /// The token this code gave, revoked if the code is sent again; nil if none.
    token: Uuid,
    expires_at: u64,
    details: Arc<Details>,
    client: ClientIx,
    /// The Redirect flow's `redirect_uri`, as its index among the client's.
    redirect: Option<u16>,
    scenario: Scenario,
    spent: bool,
    rate_limited_once: bool,
}

/// A live token.
struct TokenEntry {
    account: Uuid,
    details: Arc<Details>,
    client: ClientIx,
}

/// A live access token, as [`Chart::introspect`] tells it.
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
        account_id: Uuid,
        /// The provider.
        provider_id: Arc<str>,
        /// The access token.
        access_token: Uuid,
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

/// What the journal and the report note about the code an exchange carried.
#[derive(Clone, Debug)]
pub(crate) struct CodeFacts {
    pub(crate) id: Uuid,
    pub(crate) redirect_flow: bool,
    pub(crate) metadata: Option<Arc<str>>,
}

/// The text of a code: `code_` and its 16 bytes in lowercase hex.
fn code_text(code: Uuid) -> String {
    let mut buf = [0; uuid::fmt::Simple::LENGTH];
    format!("code_{}", code.simple().encode_lower(&mut buf))
}

/// A code's 16 bytes, if `text` has a code's exact form.
fn parse_code(text: &str) -> Option<Uuid> {
    let hex = text.strip_prefix("code_")?;
    let canonical = hex.len() == uuid::fmt::Simple::LENGTH
        && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    canonical.then(|| Uuid::try_parse(hex).ok()).flatten()
}

/// A token's or an id's 16 bytes, if `text` is a UUID in the lowercase hyphenated form
/// the mock issues. Any other spelling is not the token.
pub(crate) fn parse_uuid(text: &str) -> Option<Uuid> {
    let canonical = text.len() == uuid::fmt::Hyphenated::LENGTH
        && !text.bytes().any(|b| b.is_ascii_uppercase());
    canonical.then(|| Uuid::try_parse(text).ok()).flatten()
}

/// 16 random bytes from a CSPRNG (uuid's `fast-rng`), as a version 4 UUID.
fn random_id() -> Uuid {
    Uuid::new_v4()
}

/// The mock's state, shared by every connection. Its `Debug` shows counts, never a
/// code, a token or a client secret.
pub struct Chart {
    clients: Vec<ClientConfig>,
    client_ix: HashMap<String, ClientIx>,
    /// The known providers without metadata: what nearly every code carries.
    plain_details: Vec<Arc<Details>>,
    code_ttl: u64,
    slow: Duration,
    clock_offset: AtomicU64,
    /// Codes minted through the control plane, and through the Connect page, each with
    /// its own cap, so that page codes never evict control-plane ones. A code's last
    /// bit says which map holds it.
    codes: Shards<CodeEntry>,
    page_codes: Shards<CodeEntry>,
    tokens: Shards<TokenEntry>,
    faults: Mutex<Vec<Fault>>,
    /// Whether any fault is pending: the hot path skips the lock when none is.
    has_faults: std::sync::atomic::AtomicBool,
    records: Mutex<Records>,
    journal_len: usize,
    rate: Option<Mutex<RateWindow>>,
    dummy_secret: String,
}

impl std::fmt::Debug for Chart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chart")
            .field("clients", &self.clients)
            .field("code_ttl", &self.code_ttl)
            .field("codes_held", &self.codes_held())
            .field("live_tokens", &self.tokens.len())
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct RateWindow {
    per_minute: u32,
    window_start: u64,
    used: u32,
}

impl Chart {
    /// Builds the state from a configuration.
    pub fn new(config: &MockConfig) -> Self {
        Self {
            clients: config.clients.clone(),
            client_ix: (0..)
                .zip(&config.clients)
                .map(|(i, c)| (c.client_id.clone(), i))
                .collect(),
            plain_details: PROVIDERS
                .iter()
                .map(|(id, _)| {
                    Arc::new(Details {
                        provider: Arc::from(*id),
                        metadata: None,
                        taxpayer: None,
                    })
                })
                .collect(),
            code_ttl: config.code_ttl_secs,
            slow: Duration::from_millis(config.slow_ms),
            clock_offset: AtomicU64::new(0),
            codes: Shards::new(config.max_codes),
            page_codes: Shards::new(config.max_page_codes),
            tokens: Shards::new(config.max_tokens),
            faults: Mutex::new(Vec::new()),
            has_faults: std::sync::atomic::AtomicBool::new(false),
            records: Mutex::new(Records {
                journal: VecDeque::new(),
                bytes: 0,
                observations: Observations::new(config.journal_len),
            }),
            journal_len: config.journal_len,
            rate: config.rate_limit_per_minute.map(|per_minute| {
                Mutex::new(RateWindow {
                    per_minute,
                    window_start: 0,
                    used: 0,
                })
            }),
            dummy_secret: random_id().to_string(),
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

    /// Moves the mock's clock forward (saturating; the control plane takes at most
    /// [`MAX_ADVANCE_SECS`] a call).
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
        self.client_index(client_id).map(|i| self.client_at(i))
    }

    /// The configured clients, in the order of the config.
    pub fn clients(&self) -> &[ClientConfig] {
        &self.clients
    }

    /// A configured client's index.
    pub(crate) fn client_index(&self, client_id: &str) -> Option<ClientIx> {
        self.client_ix.get(client_id).copied()
    }

    /// The client at an index the mock gave out.
    pub(crate) fn client_at(&self, ix: ClientIx) -> &ClientConfig {
        &self.clients[ix as usize]
    }

    /// Checks a client's credentials in constant time. Unknown clients take the same
    /// path against a dummy secret, so timing does not reveal which ids exist.
    pub fn authenticate(&self, client_id: &str, secret: &str) -> bool {
        self.authenticated(client_id, secret).is_some()
    }

    /// [`Chart::authenticate`], giving the client's index.
    pub(crate) fn authenticated(&self, client_id: &str, secret: &str) -> Option<ClientIx> {
        let ix = self.client_index(client_id);
        let expected = match ix {
            Some(i) => self.client_at(i).client_secret.as_str(),
            None => self.dummy_secret.as_str(),
        };
        let equal: bool = expected.as_bytes().ct_eq(secret.as_bytes()).into();
        ix.filter(|_| equal)
    }

    /// Mints a code for a client, as the control plane does.
    pub fn mint(&self, req: &MintRequest) -> Result<MintedCode, MintError> {
        self.mint_into(req, false)
    }

    /// Mints a code as the Connect page does: held within `max_page_codes`, apart from
    /// the control plane's codes.
    pub(crate) fn mint_for_page(&self, req: &MintRequest) -> Result<MintedCode, MintError> {
        self.mint_into(req, true)
    }

    /// The map that holds `code`: its last bit says whether the page minted it.
    fn code_map(&self, code: &Uuid) -> &Shards<CodeEntry> {
        if code.as_bytes()[15] & 1 == 1 {
            &self.page_codes
        } else {
            &self.codes
        }
    }

    fn mint_into(&self, req: &MintRequest, page: bool) -> Result<MintedCode, MintError> {
        let client = self
            .client_index(&req.client_id)
            .ok_or(MintError::UnknownClient)?;
        let redirect = match &req.redirect_uri {
            None => None,
            Some(uri) => Some(
                self.client_at(client)
                    .redirect_uris
                    .iter()
                    .position(|r| r == uri)
                    .and_then(|i| u16::try_from(i).ok())
                    .ok_or(MintError::UnregisteredRedirect)?,
            ),
        };
        let provider = req.provider_id.as_deref().unwrap_or("chart-sandbox");
        if provider.is_empty() || provider.len() > 64 {
            return Err(MintError::BadProvider);
        }
        if req
            .metadata
            .as_ref()
            .is_some_and(|m| m.len() > MAX_METADATA_LEN)
        {
            return Err(MintError::BadMetadata);
        }
        let taxpayer = match &req.taxpayer_id {
            None => None,
            Some(id) => Some(parse_uuid(id).ok_or(MintError::BadTaxpayer)?),
        };
        let known = PROVIDERS.iter().position(|(id, _)| *id == provider);
        let details = match (known, &req.metadata, taxpayer) {
            (Some(i), None, None) => self.plain_details[i].clone(),
            (known, metadata, taxpayer) => Arc::new(Details {
                provider: match known {
                    Some(i) => self.plain_details[i].provider.clone(),
                    None => Arc::from(provider),
                },
                metadata: metadata.as_deref().map(Arc::from),
                taxpayer,
            }),
        };
        let (code, id) = (random_id(), random_id());
        let mut bytes = *code.as_bytes();
        bytes[15] = (bytes[15] & !1) | u8::from(page);
        let code = Uuid::from_bytes(bytes);
        let entry = CodeEntry {
            id,
            token: Uuid::nil(),
            expires_at: self.now().saturating_add(self.code_ttl),
            details,
            client,
            redirect,
            scenario: req.scenario.unwrap_or_default(),
            spent: false,
            rate_limited_once: false,
        };
        self.code_map(&code).of(&code).insert(code, entry);
        Ok(MintedCode {
            code: code_text(code),
            expires_in: self.code_ttl,
            code_id: id.to_string(),
        })
    }

    /// The non-secret id of a code, if the mock knows it.
    pub fn code_id(&self, code: &str) -> Option<String> {
        self.code_facts(code).map(|f| f.id.to_string())
    }

    /// What the journal notes about a code, if the mock knows it.
    pub(crate) fn code_facts(&self, code: &str) -> Option<CodeFacts> {
        let code = parse_code(code)?;
        self.code_map(&code)
            .of(&code)
            .map
            .get(&code)
            .map(|c| CodeFacts {
                id: c.id,
                redirect_flow: c.redirect.is_some(),
                metadata: c.details.metadata.clone(),
            })
    }

    /// Whether the only client is the documented sandbox client (no `--config`).
    pub fn sandbox_only(&self) -> bool {
        self.clients.len() == 1
            && self.clients.iter().all(|c| {
                c.client_id == crate::config::SANDBOX_CLIENT_ID
                    && c.client_secret == crate::config::SANDBOX_CLIENT_SECRET
            })
    }

    /// How many codes the mock holds (unused and spent), minted either way.
    pub fn codes_held(&self) -> usize {
        self.codes.len() + self.page_codes.len()
    }

    /// Checks and spends a code for an authenticated client. Exactly one caller can
    /// spend a code, however many race for it.
    pub fn redeem(&self, client_id: &str, code: &str, redirect_uri: Option<&str>) -> GrantOutcome {
        match self.client_index(client_id) {
            Some(client) => self.redeem_for(client, code, redirect_uri).0,
            None => GrantOutcome::InvalidGrant("The authorization code is invalid."),
        }
    }

    /// [`Chart::redeem`] for a client by index, with what the journal notes about the
    /// code.
    pub(crate) fn redeem_for(
        &self,
        client: ClientIx,
        code: &str,
        redirect_uri: Option<&str>,
    ) -> (GrantOutcome, Option<CodeFacts>) {
        let unknown = GrantOutcome::InvalidGrant("The authorization code is invalid.");
        let Some(code) = parse_code(code) else {
            return (unknown, None);
        };
        let now = self.now();
        let mut codes = self.code_map(&code).of(&code);
        let Some(entry) = codes.map.get_mut(&code) else {
            return (unknown, None);
        };
        let facts = CodeFacts {
            id: entry.id,
            redirect_flow: entry.redirect.is_some(),
            metadata: entry.details.metadata.clone(),
        };
        let refuse = |entry: &mut CodeEntry, message| {
            entry.spent = true;
            GrantOutcome::InvalidGrant(message)
        };
        if entry.spent {
            // RFC 6749 §10.5: a reused code revokes what it was exchanged for.
            let token = std::mem::replace(&mut entry.token, Uuid::nil());
            drop(codes);
            if !token.is_nil() {
                self.tokens.of(&token).map.remove(&token);
            }
            let used = GrantOutcome::InvalidGrant("The authorization code has already been used.");
            return (used, Some(facts));
        }
        let expected_uri = entry
            .redirect
            .map(|i| self.client_at(entry.client).redirect_uris[usize::from(i)].as_str());
        let outcome = if now >= entry.expires_at {
            refuse(entry, "The authorization code has expired.")
        } else if entry.client != client {
            refuse(
                entry,
                "The authorization code was issued to another client.",
            )
        } else if expected_uri.is_none() && redirect_uri.is_some() {
            refuse(
                entry,
                "This code comes from the embedded flow; do not send a redirect_uri.",
            )
        } else if expected_uri.is_some() && redirect_uri != expected_uri {
            refuse(
                entry,
                "The redirect_uri does not match the one the code was issued for.",
            )
        } else {
            match entry.scenario {
                Scenario::ServerError => GrantOutcome::ServerError,
                Scenario::RateLimited if !entry.rate_limited_once => {
                    entry.rate_limited_once = true;
                    GrantOutcome::RateLimited
                }
                Scenario::Denied => refuse(entry, "The user denied access to their account."),
                _ => {
                    let token = random_id();
                    entry.spent = true;
                    entry.token = token;
                    let details = entry.details.clone();
                    let account = details.taxpayer.unwrap_or_else(random_id);
                    let slow = entry.scenario == Scenario::Slow;
                    drop(codes);
                    let provider_id = details.provider.clone();
                    self.tokens.of(&token).insert(
                        token,
                        TokenEntry {
                            account,
                            details,
                            client,
                        },
                    );
                    return (
                        GrantOutcome::Issued {
                            account_id: account,
                            provider_id,
                            access_token: token,
                            slow,
                        },
                        Some(facts),
                    );
                }
            }
        };
        (outcome, Some(facts))
    }

    /// The live token's details.
    pub fn introspect(&self, token: &str) -> Option<TokenInfo> {
        let (client, account, provider) = self.token_facts(token)?;
        Some(TokenInfo {
            account_id: account.to_string(),
            client_id: self.client_at(client).client_id.clone(),
            provider_id: provider.to_string(),
        })
    }

    /// A live token's client, account and provider.
    pub(crate) fn token_facts(&self, token: &str) -> Option<(ClientIx, Uuid, Arc<str>)> {
        let token = parse_uuid(token)?;
        let tokens = self.tokens.of(&token);
        let t = tokens.map.get(&token)?;
        Some((t.client, t.account, t.details.provider.clone()))
    }

    /// Revokes a token; `false` if it was not live.
    pub fn revoke(&self, token: &str) -> bool {
        parse_uuid(token).is_some_and(|t| self.tokens.of(&t).map.remove(&t).is_some())
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

    /// Records a request in the journal, and what the report grades of it, under one
    /// lock; the oldest entries go past the journal's length or bytes.
    pub(crate) fn record(&self, mut record: Record, observation: Option<Observation>) {
        // Text a client chose is cut, so that no request can grow the journal by more
        // than a few hundred bytes.
        cut_owned(&mut record.path, JOURNAL_FIELD_MAX);
        cut_owned(&mut record.outcome, 64);
        if record
            .metadata
            .as_ref()
            .is_some_and(|m| m.len() > JOURNAL_FIELD_MAX)
        {
            let mut m = record.metadata.as_deref().unwrap_or_default().to_owned();
            cut(&mut m, JOURNAL_FIELD_MAX);
            record.metadata = Some(Arc::from(m));
        }
        let size = record.size();
        let mut records = lock(&self.records);
        if let Some(observation) = observation {
            records.observations.push(observation);
        }
        records.bytes += size;
        records.journal.push_back(record);
        while records.journal.len() > self.journal_len || records.bytes > JOURNAL_MAX_BYTES {
            let Some(old) = records.journal.pop_front() else {
                break;
            };
            records.bytes -= old.size();
        }
    }

    /// The journal, oldest first.
    pub fn journal(&self) -> Vec<JournalEntry> {
        let records = lock(&self.records);
        records
            .journal
            .iter()
            .map(|r| JournalEntry {
                request_id: r.request_id.to_string(),
                at: r.at,
                method: r.method.to_string(),
                path: r.path.to_string(),
                status: r.status,
                outcome: r.outcome.to_string(),
                client_id: r.client.map(|c| self.client_at(c).client_id.clone()),
                code_id: r.code_id.map(|c| c.to_string()),
                fault: r.fault,
                metadata: r.metadata.as_deref().map(str::to_owned),
            })
            .collect()
    }

    /// Empties the journal.
    pub fn clear_journal(&self) {
        let mut records = lock(&self.records);
        records.journal.clear();
        records.bytes = 0;
    }

    /// The conformance report; `kept` lists the accounts whose tokens the clients still
    /// hold (see [`Check::DisconnectDroppedTokens`](crate::report::Check)).
    pub fn report(&self, kept: Option<&HashSet<String>>) -> Report {
        let kept: Option<HashSet<Uuid>> =
            kept.map(|k| k.iter().filter_map(|a| parse_uuid(a)).collect());
        lock(&self.records)
            .observations
            .grade(kept.as_ref(), |c| &self.client_at(c).client_id)
    }

    /// Forgets what the report was graded on.
    pub fn clear_report(&self) {
        lock(&self.records).observations.clear();
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
        // `owner_of` knows client secrets too.
        !value.is_empty() && self.owner_of(value).is_some()
    }

    /// The client a code was issued to, a token belongs to, or a secret is of.
    pub(crate) fn owner_of(&self, secret: &str) -> Option<ClientIx> {
        if let Some(code) = parse_code(secret)
            && let Some(entry) = self.code_map(&code).of(&code).map.get(&code)
        {
            return Some(entry.client);
        }
        if let Some((client, _, _)) = self.token_facts(secret) {
            return Some(client);
        }
        (0..)
            .zip(&self.clients)
            .find(|(_, c)| secret_eq(&c.client_secret, secret))
            .map(|(i, _)| i)
    }
}

/// Compares a client secret in constant time, as authentication does.
fn secret_eq(expected: &str, given: &str) -> bool {
    bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

#[cfg(test)]
mod tests;
