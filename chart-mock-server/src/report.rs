//! The conformance report: how each client under test behaved, graded from what the
//! mock saw of its requests to Chart's API.
//!
//! The mock keeps one [`Observation`] per request to `/auth/token`, `/introspect` and
//! `/disconnect` (a bounded window, like the journal), and grades every client against
//! the checks of [`Check`] when asked. A check is `pass`, `fail` (with the request ids
//! that show it) or `not_seen` (nothing the client sent bore on it).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;

use serde::Serialize;
use uuid::Uuid;

use crate::config::ClientIx;

/// The Chart API endpoint a request went to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Endpoint {
    /// `POST /auth/token`.
    Token,
    /// `GET /introspect`.
    Introspect,
    /// `POST /disconnect`.
    Disconnect,
}

/// What the mock saw of one request to Chart's API, and of its answer. Holds no secret:
/// codes by their id, tokens by their account.
#[derive(Clone, Debug, Default)]
pub(crate) struct Observation {
    /// The `Chart-Request-Id` of the answer.
    pub(crate) request_id: Uuid,
    /// When it arrived, in milliseconds on the mock's clock.
    pub(crate) at_ms: u64,
    /// Where it went; `None` for paths that are not Chart's API.
    pub(crate) endpoint: Option<Endpoint>,
    /// The client it came from, when the mock could tell.
    pub(crate) client: Option<ClientIx>,
    /// The answer's status.
    pub(crate) status: u16,
    /// The answer's `Retry-After`, in seconds.
    pub(crate) retry_after: Option<u64>,
    /// The connection was cut, or the answer broken, by a fault: the client cannot know
    /// what happened.
    pub(crate) cut: bool,
    /// `Chart-API-Version` was sent.
    pub(crate) api_version: bool,
    /// A secret (a client secret, a code or a token, or a parameter named for one)
    /// was in the URL.
    pub(crate) secret_in_url: bool,
    /// `/auth/token` only: the body was `application/json` and a JSON object.
    pub(crate) json_body: Option<bool>,
    /// `/auth/token` only, once the body parsed: whether `redirect_uri` was sent.
    pub(crate) redirect_uri_sent: Option<bool>,
    /// The id of the code the request carried, when the mock knows it.
    pub(crate) code_id: Option<Uuid>,
    /// Whether that code came from the Redirect flow.
    pub(crate) code_redirect_flow: Option<bool>,
    /// The account of the token this request was answered with.
    pub(crate) issued_account: Option<Uuid>,
    /// The account of the token this request disconnected.
    pub(crate) disconnected_account: Option<Uuid>,
}

/// One check of the report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// `redirect_uri` was sent if and only if the code came from the Redirect flow.
    RedirectUri,
    /// `/auth/token` bodies were `application/json` objects.
    JsonBody,
    /// `Chart-API-Version` was sent with every request.
    ApiVersion,
    /// No code was sent again after it had been exchanged for a token.
    NoCodeReuse,
    /// After a 429 or 503 with `Retry-After`, the client waited that long before
    /// sending the same code (or calling the same endpoint) again.
    RetryAfterHonoured,
    /// A code whose request got a 5xx without `Retry-After`, or lost its connection, was
    /// never sent again: the outcome was unknown and the code may be spent.
    NoResendAfterUnknownOutcome,
    /// No client secret, code or token appeared in a URL.
    NoSecretInUrl,
    /// Every token the client dropped was disconnected first.
    DisconnectDroppedTokens,
}

impl Check {
    /// Every check, in report order.
    pub const ALL: [Check; 8] = [
        Check::RedirectUri,
        Check::JsonBody,
        Check::ApiVersion,
        Check::NoCodeReuse,
        Check::RetryAfterHonoured,
        Check::NoResendAfterUnknownOutcome,
        Check::NoSecretInUrl,
        Check::DisconnectDroppedTokens,
    ];

    /// The check's name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Check::RedirectUri => "redirect_uri",
            Check::JsonBody => "json_body",
            Check::ApiVersion => "api_version",
            Check::NoCodeReuse => "no_code_reuse",
            Check::RetryAfterHonoured => "retry_after_honoured",
            Check::NoResendAfterUnknownOutcome => "no_resend_after_unknown_outcome",
            Check::NoSecretInUrl => "no_secret_in_url",
            Check::DisconnectDroppedTokens => "disconnect_dropped_tokens",
        }
    }

    /// What the check asks, in a sentence.
    pub fn rule(self) -> &'static str {
        match self {
            Check::RedirectUri => {
                "redirect_uri is sent if and only if the code came from the Redirect flow"
            }
            Check::JsonBody => "/auth/token bodies are application/json objects",
            Check::ApiVersion => "every request carries Chart-API-Version",
            Check::NoCodeReuse => "a code is never sent again once it was exchanged",
            Check::RetryAfterHonoured => {
                "after a 429 or 503 with Retry-After, the client waits that long before retrying"
            }
            Check::NoResendAfterUnknownOutcome => {
                "a code is never resent after a 5xx without Retry-After or a cut connection"
            }
            Check::NoSecretInUrl => "no client secret, code or token appears in a URL",
            Check::DisconnectDroppedTokens => {
                "every token the client no longer keeps was disconnected"
            }
        }
    }
}

/// A check's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Requests bore on it, and all conformed.
    Pass,
    /// At least one request broke it.
    Fail,
    /// Nothing the client sent bore on it.
    NotSeen,
}

/// One check's result for one client.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// The check's name.
    pub check: &'static str,
    /// What it asks.
    pub rule: &'static str,
    /// Pass, fail or not seen.
    pub verdict: Verdict,
    /// On a failure, the requests that show it; on a pass, those that were checked.
    pub request_ids: Vec<String>,
    /// Why it failed or was not seen, when there is more to say.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The report for one client.
#[derive(Clone, Debug, Serialize)]
pub struct ClientReport {
    /// The client id.
    pub client_id: String,
    /// How many of its requests the mock kept.
    pub requests: usize,
    /// Every check, in order.
    pub checks: Vec<CheckResult>,
}

impl ClientReport {
    /// The result of one check.
    pub fn check(&self, check: Check) -> &CheckResult {
        self.checks
            .iter()
            .find(|c| c.check == check.name())
            .expect("every check is graded")
    }
}

/// The whole report: one entry per client that sent anything.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Per client, in client id order.
    pub clients: Vec<ClientReport>,
    /// How many observations the mock keeps; older requests are not graded.
    pub window: usize,
}

impl Report {
    /// The report for one client, if it sent anything.
    pub fn client(&self, client_id: &str) -> Option<&ClientReport> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }
}

/// A bounded window of observations.
#[derive(Debug)]
pub(crate) struct Observations {
    seen: VecDeque<Observation>,
    cap: usize,
}

impl Observations {
    /// A window of at most `cap` observations.
    pub(crate) fn new(cap: usize) -> Self {
        Self {
            seen: VecDeque::new(),
            cap: cap.max(1),
        }
    }

    /// Keeps one observation, dropping the oldest past the cap.
    pub(crate) fn push(&mut self, observation: Observation) {
        if self.seen.len() == self.cap {
            self.seen.pop_front();
        }
        self.seen.push_back(observation);
    }

    /// Forgets every observation.
    pub(crate) fn clear(&mut self) {
        self.seen.clear();
    }

    /// How many observations the window holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.seen.len()
    }

    /// Grades every client, named by `name`. `kept`, when given, lists the accounts
    /// whose tokens the clients still hold; without it the disconnect check is not seen.
    pub(crate) fn grade<'a>(
        &self,
        kept: Option<&HashSet<Uuid>>,
        name: impl Fn(ClientIx) -> &'a str,
    ) -> Report {
        let mut by_client: BTreeMap<&str, Vec<&Observation>> = BTreeMap::new();
        for o in &self.seen {
            if let (Some(client), Some(_)) = (o.client, o.endpoint) {
                by_client.entry(name(client)).or_default().push(o);
            }
        }
        Report {
            clients: by_client
                .into_iter()
                .map(|(client, seen)| ClientReport {
                    client_id: client.to_owned(),
                    requests: seen.len(),
                    checks: Check::ALL
                        .iter()
                        .map(|check| grade(*check, &seen, kept))
                        .collect(),
                })
                .collect(),
            window: self.cap,
        }
    }
}

/// Grades one check over one client's requests, oldest first.
fn grade(check: Check, seen: &[&Observation], kept: Option<&HashSet<Uuid>>) -> CheckResult {
    let tokens = || seen.iter().filter(|o| o.endpoint == Some(Endpoint::Token));
    let mut bearing: Vec<&Observation> = Vec::new();
    let mut failing: Vec<&Observation> = Vec::new();
    let mut note = None;
    match check {
        Check::RedirectUri => {
            for o in tokens() {
                if let (Some(sent), Some(redirect)) = (o.redirect_uri_sent, o.code_redirect_flow) {
                    bearing.push(o);
                    if sent != redirect {
                        failing.push(o);
                    }
                }
            }
        }
        Check::JsonBody => {
            for o in tokens() {
                if let Some(json) = o.json_body {
                    bearing.push(o);
                    if !json {
                        failing.push(o);
                    }
                }
            }
        }
        Check::ApiVersion => {
            bearing.extend(seen.iter().copied());
            failing.extend(seen.iter().copied().filter(|o| !o.api_version));
        }
        Check::NoCodeReuse => {
            let mut exchanged: HashSet<Uuid> = HashSet::new();
            for o in tokens() {
                let Some(code) = o.code_id else {
                    continue;
                };
                bearing.push(o);
                if exchanged.contains(&code) {
                    failing.push(o);
                }
                if o.issued_account.is_some() && !o.cut {
                    exchanged.insert(code);
                }
            }
        }
        Check::RetryAfterHonoured => {
            // Per code (or per endpoint, for requests without one): the earliest time a
            // retry may come.
            let mut not_before: HashMap<(Option<Uuid>, Option<Endpoint>), u64> = HashMap::new();
            for o in seen {
                let key = retry_key(o);
                if let Some(&earliest) = not_before.get(&key) {
                    bearing.push(o);
                    // The mock's clock has millisecond steps; allow one.
                    if o.at_ms.saturating_add(1) < earliest {
                        failing.push(o);
                    }
                    not_before.remove(&key);
                }
                if let (Some(secs), true) = (o.retry_after, matches!(o.status, 429 | 503)) {
                    bearing.push(o);
                    not_before.insert(key, o.at_ms.saturating_add(secs.saturating_mul(1000)));
                }
            }
        }
        Check::NoResendAfterUnknownOutcome => {
            let mut unknown: HashSet<Uuid> = HashSet::new();
            for o in tokens() {
                let Some(code) = o.code_id else {
                    continue;
                };
                if unknown.contains(&code) {
                    failing.push(o);
                }
                let outcome_unknown = o.cut || (o.status >= 500 && o.retry_after.is_none());
                if outcome_unknown {
                    bearing.push(o);
                    unknown.insert(code);
                }
            }
        }
        Check::NoSecretInUrl => {
            bearing.extend(seen.iter().copied());
            failing.extend(seen.iter().copied().filter(|o| o.secret_in_url));
        }
        Check::DisconnectDroppedTokens => match kept {
            None => {
                note = Some(
                    "give ?kept=<account ids the client still holds, comma-separated> \
                     to grade this"
                        .into(),
                );
            }
            Some(kept) => {
                let disconnected: HashSet<Uuid> =
                    seen.iter().filter_map(|o| o.disconnected_account).collect();
                // A token whose answer was cut never reached the client.
                for o in tokens().filter(|o| !o.cut) {
                    let Some(account) = o.issued_account else {
                        continue;
                    };
                    bearing.push(o);
                    if !kept.contains(&account) && !disconnected.contains(&account) {
                        failing.push(o);
                    }
                }
            }
        },
    }
    let verdict = if !failing.is_empty() {
        Verdict::Fail
    } else if bearing.is_empty() {
        Verdict::NotSeen
    } else {
        Verdict::Pass
    };
    let shown = if failing.is_empty() { bearing } else { failing };
    CheckResult {
        check: check.name(),
        rule: check.rule(),
        verdict,
        request_ids: shown.iter().map(|o| o.request_id.to_string()).collect(),
        note,
    }
}

/// What a retry is matched on: the code, or else the endpoint.
fn retry_key(o: &Observation) -> (Option<Uuid>, Option<Endpoint>) {
    match o.code_id {
        Some(code) => (Some(code), None),
        None => (None, o.endpoint),
    }
}

impl Report {
    /// The report as an HTML page.
    pub fn to_html(&self) -> String {
        let mut out = String::from(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
             <title>Chart mock: conformance report</title><style>\
             body{font:15px system-ui,sans-serif;margin:2em;max-width:70em}\
             table{border-collapse:collapse;width:100%;margin-bottom:2em}\
             td,th{border-bottom:1px solid #ddd;padding:.4em;text-align:left;vertical-align:top}\
             .pass{color:#0a6b2d}.fail{color:#b00020;font-weight:bold}.not_seen{color:#777}\
             code{font-size:13px}</style></head><body><h1>Conformance report</h1>",
        );
        if self.clients.is_empty() {
            out.push_str("<p>No client has called Chart's API yet.</p>");
        }
        for client in &self.clients {
            let _ = write!(
                out,
                "<h2>Client <code>{}</code></h2><p>{} request(s) seen.</p>\
                 <table><tr><th>check</th><th>verdict</th><th>rule</th><th>requests</th></tr>",
                escape(&client.client_id),
                client.requests
            );
            for c in &client.checks {
                let (class, word) = match c.verdict {
                    Verdict::Pass => ("pass", "pass"),
                    Verdict::Fail => ("fail", "FAIL"),
                    Verdict::NotSeen => ("not_seen", "not seen"),
                };
                let ids: Vec<String> = c
                    .request_ids
                    .iter()
                    .take(10)
                    .map(|id| format!("<code>{}</code>", escape(id)))
                    .collect();
                let more = c.request_ids.len().saturating_sub(10);
                let _ = write!(
                    out,
                    "<tr><td><code>{}</code></td><td class=\"{class}\">{word}</td><td>{}{}</td>\
                     <td>{}{}</td></tr>",
                    c.check,
                    escape(c.rule),
                    c.note
                        .as_deref()
                        .map(|n| format!("<br><small>{}</small>", escape(n)))
                        .unwrap_or_default(),
                    ids.join(" "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                );
            }
            out.push_str("</table>");
        }
        let _ = write!(
            out,
            "<p><small>The last {} requests to Chart's API are graded.</small></p></body></html>",
            self.window
        );
        out
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::{Check, Endpoint, Observation, Verdict, grade};

    /// A retry after `Retry-After: 1` may come one millisecond early (the clock's step),
    /// and not two.
    #[test]
    fn retry_after_allows_one_millisecond_of_clock_step() {
        let code = Some(uuid::Uuid::from_u128(7));
        let throttled = Observation {
            at_ms: 10_000,
            endpoint: Some(Endpoint::Token),
            status: 429,
            retry_after: Some(1),
            code_id: code,
            ..Observation::default()
        };
        for (retry_at, verdict) in [(10_999, Verdict::Pass), (10_998, Verdict::Fail)] {
            let retry = Observation {
                at_ms: retry_at,
                endpoint: Some(Endpoint::Token),
                status: 200,
                code_id: code,
                ..Observation::default()
            };
            let result = grade(Check::RetryAfterHonoured, &[&throttled, &retry], None);
            assert_eq!(
                result.verdict,
                verdict,
                "a retry at +{} ms",
                retry_at - 10_000
            );
        }
    }

    /// Times at the end of the mock's clock and waits as long as a `u64` grade without
    /// overflow (a debug build panicked here, a release build graded wrongly): a retry
    /// that comes before a wait that never ends fails, and none passes it.
    #[test]
    fn grading_saturates_at_the_end_of_the_clock() {
        let code = Some(uuid::Uuid::from_u128(8));
        for (at_ms, wait) in [(u64::MAX, 1), (u64::MAX - 5, u64::MAX), (10_000, u64::MAX)] {
            let throttled = Observation {
                at_ms,
                endpoint: Some(Endpoint::Token),
                status: 429,
                retry_after: Some(wait),
                code_id: code,
                ..Observation::default()
            };
            let retry = Observation {
                at_ms,
                status: 200,
                ..throttled.clone()
            };
            let early = at_ms < u64::MAX;
            let result = grade(Check::RetryAfterHonoured, &[&throttled, &retry], None);
            let expected = if early { Verdict::Fail } else { Verdict::Pass };
            assert_eq!(result.verdict, expected, "at {at_ms}, Retry-After {wait}");
        }
    }
}
