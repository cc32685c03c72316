//! The callback endpoint end to end, against an in-process mock: any query, body,
//! session and state; never a panic or a 500, never the code in an answer, a connection
//! only for a state we signed for this session and flow, and never twice for one state:
//! a replay of a claimed state is a 409 that sends nothing to Chart.
//!
//! Valid inputs are reachable: the input chooses, field by field, a state signed with
//! the endpoint's own key (for a session, a flow and an age it picks, optionally with a
//! flipped byte) or raw text, and a live code minted for this run or raw text. So the
//! fuzzer reaches the exchange, the replay guard and every refusal, not just parsing.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use arbitrary::Arbitrary;
use bytes::Bytes;
use chart_auth::vault::{Keyring, MemoryStore, Vault};
use chart_auth::{
    CallbackService, ChartClient, ChartConnect, ClientSecret, Config, ConnectStateSigner, Flow,
    Owner, Session,
};
use chart_mock_server::{
    MintRequest, MockConfig, MockServer, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET,
    SANDBOX_REDIRECT_URIS, Scenario,
};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;

const STATE_KEY: [u8; 32] = [3; 32];
const SESSION: &[u8] = b"session-of-the-user";
/// The user the server's session names for [`SESSION`].
const OWNER: &str = "owner-of-the-session";

fn owner(own: bool) -> Owner {
    Owner::new(if own { OWNER } else { "another-owner" }).unwrap()
}

#[derive(Arbitrary, Debug)]
enum Method {
    Get,
    PostJson,
    PostForm,
    Other,
}

#[derive(Arbitrary, Debug)]
enum State<'a> {
    /// Signed with the endpoint's key.
    Signed {
        redirect: bool,
        /// Signed for the request's session, or another.
        own_session: bool,
        /// Begun for the session's own user, or another (an account planted on them).
        own_owner: bool,
        /// How long ago it was issued, in minutes (the lifetime is 15).
        age_minutes: u8,
        /// A byte of the state flipped, at this position.
        flip: Option<u8>,
    },
    Raw(&'a str),
    Absent,
}

#[derive(Arbitrary, Debug)]
enum Code<'a> {
    /// Minted for this run, in the state's flow, with this scenario.
    Live(u8),
    Raw(&'a str),
    Absent,
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: Method,
    state: State<'a>,
    code: Code<'a>,
    /// An `error` parameter (Chart Connect's "the user cancelled").
    error: Option<&'a str>,
    /// Raw text appended to the query, or used as the body.
    extra: &'a str,
    session_header: bool,
    /// Send the same request again.
    replay: bool,
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    mock: MockServer,
    service: CallbackService<MemoryStore>,
    vault: Arc<Vault<MemoryStore>>,
    signer: ConnectStateSigner,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let mock = runtime
            .block_on(MockServer::start(MockConfig {
                slow_ms: 0,
                ..MockConfig::default()
            }))
            .unwrap();
        let _guard = runtime.enter();
        let client = ChartClient::new(
            Config::builder(SANDBOX_CLIENT_ID, ClientSecret::new(SANDBOX_CLIENT_SECRET))
                .api_base(mock.url())
                .connect_timeout(Duration::from_secs(2))
                .request_timeout(Duration::from_secs(2))
                .build()
                .unwrap(),
        )
        .unwrap();
        let vault = Arc::new(Vault::new(
            SANDBOX_CLIENT_ID,
            Keyring::generate(),
            MemoryStore::default(),
        ));
        let chart = ChartConnect::new(
            client,
            ConnectStateSigner::from_key(&STATE_KEY).unwrap(),
            vault.clone(),
        );
        let service = CallbackService::builder(chart)
            .session(|parts| {
                let binding = parts.headers.get("x-session")?.as_bytes().to_vec();
                Some(Session {
                    binding,
                    owner: owner(true),
                })
            })
            .build();
        Fixture {
            runtime,
            mock,
            service,
            vault,
            signer: ConnectStateSigner::from_key(&STATE_KEY).unwrap(),
        }
    })
}

const SCENARIOS: [Scenario; 5] = [
    Scenario::Success,
    Scenario::ServerError,
    Scenario::RateLimited,
    Scenario::Slow,
    Scenario::Denied,
];

fuzz_target!(|input: Input<'_>| {
    let f = fixture();
    let redirect_uri = SANDBOX_REDIRECT_URIS[0];
    let (state, valid_state, redirect) = match &input.state {
        State::Signed {
            redirect,
            own_session,
            own_owner,
            age_minutes,
            flip,
        } => {
            let flow = if *redirect {
                Flow::Redirect {
                    redirect_uri: redirect_uri.into(),
                }
            } else {
                Flow::Embedded
            };
            let session: &[u8] = if *own_session {
                SESSION
            } else {
                b"another-session"
            };
            let issued = SystemTime::now() - Duration::from_secs(60 * u64::from(*age_minutes));
            let mut state = f
                .signer
                .issue_at(&flow, session, &owner(*own_owner), issued)
                .into_bytes();
            if let Some(at) = flip {
                let at = usize::from(*at) % state.len();
                // Stay within the state's alphabet, so the change is not simply a parse error.
                state[at] = if state[at] == b'A' { b'B' } else { b'A' };
            }
            // The flow is chosen by the method: GET for the Redirect flow, a JSON POST
            // for the embedded one. A state used in the other flow is refused.
            let method_matches = match input.method {
                Method::Get => *redirect,
                Method::PostJson => !*redirect,
                Method::PostForm | Method::Other => false,
            };
            let valid =
                *own_session && *own_owner && *age_minutes < 15 && flip.is_none() && method_matches;
            (Some(String::from_utf8(state).unwrap()), valid, *redirect)
        }
        State::Raw(raw) => (Some((*raw).to_owned()), false, false),
        State::Absent => (None, false, false),
    };
    let code = match &input.code {
        Code::Live(scenario) => Some(
            f.mock
                .mint_code(&MintRequest {
                    client_id: SANDBOX_CLIENT_ID.into(),
                    redirect_uri: redirect.then(|| redirect_uri.to_owned()),
                    scenario: Some(SCENARIOS[usize::from(*scenario) % SCENARIOS.len()]),
                    ..Default::default()
                })
                .unwrap()
                .code,
        ),
        Code::Raw(raw) => Some((*raw).to_owned()),
        Code::Absent => None,
    };
    let live_code = matches!(input.code, Code::Live(_));

    let mut pairs = form_urlencoded::Serializer::new(String::new());
    if let Some(code) = &code {
        pairs.append_pair("code", code);
    }
    if let Some(state) = &state {
        pairs.append_pair("state", state);
    }
    if let Some(error) = input.error {
        pairs.append_pair("error", error);
    }
    let query = format!("{}{}", pairs.finish(), input.extra);
    let json = {
        let mut body = serde_json::Map::new();
        for (k, v) in [("code", &code), ("state", &state)] {
            if let Some(v) = v {
                body.insert(k.into(), v.clone().into());
            }
        }
        if let Some(error) = input.error {
            body.insert("error".into(), error.into());
        }
        serde_json::Value::Object(body).to_string()
    };

    let send = |query: &str, json: &str| -> Option<(http::StatusCode, String)> {
        let (method, uri, body, ctype) = match input.method {
            Method::Get => (
                "GET",
                format!("/api/chart/callback?{query}"),
                String::new(),
                None,
            ),
            Method::PostJson => (
                "POST",
                "/api/chart/callback".to_owned(),
                json.to_owned(),
                Some("application/json"),
            ),
            Method::PostForm => (
                "POST",
                "/api/chart/callback".to_owned(),
                query.to_owned(),
                Some("application/x-www-form-urlencoded"),
            ),
            Method::Other => (
                "PUT",
                "/api/chart/callback".to_owned(),
                query.to_owned(),
                None,
            ),
        };
        let mut req = http::Request::builder()
            .method(method)
            .uri(uri.parse::<http::Uri>().ok()?);
        if input.session_header {
            req = req.header("x-session", SESSION);
        }
        if let Some(ctype) = ctype {
            req = req.header("content-type", ctype);
        }
        let req = req.body(Full::new(Bytes::from(body))).unwrap();
        let resp = f.runtime.block_on(f.service.handle(req));
        let status = resp.status();
        let body = f
            .runtime
            .block_on(resp.into_body().collect())
            .unwrap()
            .to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    };

    let Some((status, text)) = send(&query, &json) else {
        return;
    };
    assert_ne!(status, http::StatusCode::INTERNAL_SERVER_ERROR, "{text}");
    let connected = text.contains("\"connected\"");
    // The other way round too: a valid callback whose code succeeds connects, so the
    // refusals above are not simply refusing everything.
    let succeeds = matches!(input.code, Code::Live(s)
        if SCENARIOS[usize::from(s) % SCENARIOS.len()] == Scenario::Success);
    let untouched = input.extra.is_empty() || matches!(input.method, Method::PostJson);
    if valid_state && succeeds && untouched && input.session_header && input.error.is_none() {
        assert!(connected, "a valid callback did not connect: {text}");
    }
    if connected {
        assert!(
            valid_state && live_code && input.session_header,
            "connected on {input:?}"
        );
        let answer: serde_json::Value = serde_json::from_str(&text).unwrap();
        let account = answer["account_id"].as_str().unwrap();
        // Stored, and never the token in the answer.
        // Stored as the session's user's, and no one else's; never the token in the answer.
        let token = f
            .runtime
            .block_on(f.vault.unseal(&owner(true), account))
            .unwrap();
        assert!(!text.contains(token.expose_secret()));
        assert!(
            f.runtime
                .block_on(f.vault.get(&owner(false), account))
                .unwrap()
                .is_none()
        );
        f.runtime
            .block_on(f.vault.delete(&owner(true), account))
            .unwrap();
    }
    if input.replay {
        // A request that sent its code to Chart went through the replay claim, and keeps
        // it unless the code surely never reached Chart; the replay is then refused with
        // 409 before anything is sent, so the journal shows no second /auth/token.
        // Whether it was sent is read from the mock's journal, not predicted from the
        // input: `extra` may repeat `state` or add `error`, which changes what is parsed.
        let sent_before = code.as_deref().map_or(0, |c| token_requests_for(f, c));
        let claimed = live_code && sent_before > 0;
        let label = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned));
        let never_sent = matches!(
            label.as_deref(),
            Some("connect_failed" | "tls_failed" | "timeout")
        );
        if let Some((again_status, again)) = send(&query, &json) {
            assert!(
                !again.contains("\"connected\""),
                "a replayed state connected twice"
            );
            if claimed && !never_sent {
                assert_eq!(again_status, http::StatusCode::CONFLICT, "replay: {again}");
                let code = code.as_deref().unwrap();
                assert_eq!(
                    token_requests_for(f, code),
                    sent_before,
                    "a replay resent the code"
                );
            }
        }
    }
    // The code is never echoed in an answer. Codes shorter than 12 characters are
    // skipped: they may be words of our own messages.
    if let Some(code) = &code {
        if code.len() >= 12 {
            let encoded: String = form_urlencoded::byte_serialize(code.as_bytes()).collect();
            let escaped = serde_json::Value::from(code.as_str()).to_string();
            for form in [code.as_str(), &encoded, escaped.trim_matches('"')] {
                assert!(!text.contains(form), "the code was echoed");
            }
        }
    }
});

/// How many `/auth/token` requests the mock's journal holds for a code it minted.
fn token_requests_for(f: &Fixture, code: &str) -> usize {
    let Some(id) = f.mock.chart().code_id(code) else {
        return 0;
    };
    f.mock
        .journal()
        .iter()
        .filter(|e| e.path == "/auth/token" && e.code_id.as_deref() == Some(id.as_str()))
        .count()
}
