//! The mock's `POST /auth/token` over a real connection, against a reference model of
//! DESIGN §5: any method, content type, `Chart-API-Version` and body gets exactly the
//! answer the contract's table gives (status and error name), with a `Chart-Request-Id`,
//! and never a panic.
//!
//! Valid inputs are chosen, not found: the input is structured field by field, and a
//! code is either minted for this run (for a client, flow and scenario it picks), spent
//! on purpose, another client's, or raw text. So an empty corpus reaches the grant, every
//! scenario and the 200 path within seconds. Beyond the answer itself:
//! - after a 200 the code is spent: the same request is `invalid_grant_error`, and the
//!   token it gave is revoked (`/introspect` answers 401);
//! - a request refused before its grant is checked does not spend its code: the right
//!   request afterwards is answered as the code's scenario says;
//! - a `rate_limited` code answers 429 with `Retry-After: 1`, then 200.
#![no_main]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::OnceLock;

use arbitrary::Arbitrary;
use chart_mock_server::{
    ClientConfig, MintRequest, MockConfig, MockServer, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET,
    SANDBOX_REDIRECT_URIS, Scenario,
};
use libfuzzer_sys::fuzz_target;

// The contract's literals, written out here rather than taken from the mock.
const API_VERSION: &str = "2024-01-01";
const MAX_BODY: usize = 64 * 1024;
const OTHER_ID: &str = "fuzz-other-client";
const OTHER_SECRET: &str = "fuzz-other-secret";

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Method {
    Post,
    Get,
    Put,
    Delete,
}

#[derive(Arbitrary, Debug)]
enum ContentType<'a> {
    Json,
    JsonWithCharset,
    JsonUpperCase,
    Form,
    Absent,
    Raw(&'a str),
}

#[derive(Arbitrary, Debug)]
enum Version<'a> {
    Absent,
    Known,
    Raw(&'a str),
}

/// A JSON field as sent: the contract treats absent and null alike for optional fields,
/// and refuses empty strings and other types.
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Shape<'a> {
    Absent,
    Null,
    Empty,
    Number,
    Text(&'a str),
}

#[derive(Arbitrary, Debug, Clone, Copy, PartialEq)]
enum Client {
    Sandbox,
    Other,
    Unknown,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Secret {
    Right,
    Wrong,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Code<'a> {
    /// Minted now for the sandbox client, in this flow, with this scenario.
    Live {
        redirect: bool,
        scenario: u8,
    },
    /// Minted for the other client.
    OtherClients,
    /// Minted and exchanged before this request.
    Spent,
    Raw(&'a str),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Redirect<'a> {
    /// Not sent, or `null`.
    None {
        null: bool,
    },
    /// One of the sandbox client's registered URIs.
    Registered(bool),
    Raw(&'a str),
    Empty,
    Number,
}

#[derive(Arbitrary, Debug)]
enum Body<'a> {
    Fields {
        client: Option<Client>,
        client_shape: Option<Shape<'a>>,
        secret: Option<Secret>,
        secret_shape: Option<Shape<'a>>,
        code: Option<Code<'a>>,
        code_shape: Option<Shape<'a>>,
        redirect: Redirect<'a>,
        /// An extra field the contract ignores.
        extra: Option<(&'a str, &'a str)>,
    },
    /// A JSON object padded past the 64 KiB limit by this many bytes (at least one).
    TooLarge(u8),
    Raw(&'a [u8]),
}

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    method: Method,
    content_type: ContentType<'a>,
    version: Version<'a>,
    body: Body<'a>,
}

const SCENARIOS: [Scenario; 5] = [
    Scenario::Success,
    Scenario::Slow,
    Scenario::RateLimited,
    Scenario::ServerError,
    Scenario::Denied,
];

struct Fixture {
    addr: SocketAddr,
    mock: &'static MockServer,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let mut config = MockConfig {
                    slow_ms: 0,
                    ..MockConfig::default()
                };
                config.clients.push(ClientConfig {
                    client_id: OTHER_ID.into(),
                    client_secret: OTHER_SECRET.into(),
                    redirect_uris: vec!["http://localhost:4000/cb".into()],
                    allowed_origins: Vec::new(),
                });
                let mock: &'static MockServer =
                    Box::leak(Box::new(MockServer::start(config).await.unwrap()));
                tx.send(mock).unwrap();
                std::future::pending::<()>().await;
            });
        });
        let mock = rx.recv().unwrap();
        Fixture {
            addr: mock.addr(),
            mock,
        }
    })
}

struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("every answer is JSON")
    }
}

/// One HTTP/1.1 request on a fresh connection; the answer, read to the end.
fn send(method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let f = fixture();
    let mut stream = TcpStream::connect(f.addr).unwrap();
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        f.addr,
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut request = head.into_bytes();
    request.extend_from_slice(body);
    stream.write_all(&request).unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete head");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Answer {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

fn mint(client: &str, redirect_uri: Option<&str>, scenario: Scenario) -> String {
    fixture()
        .mock
        .mint_code(&MintRequest {
            client_id: client.into(),
            redirect_uri: redirect_uri.map(str::to_owned),
            scenario: Some(scenario),
            ..Default::default()
        })
        .unwrap()
        .code
}

/// A correct exchange of a sandbox code.
fn exchange(code: &str, redirect_uri: Option<&str>) -> Answer {
    let mut body = serde_json::json!({
        "client_id": SANDBOX_CLIENT_ID,
        "client_secret": SANDBOX_CLIENT_SECRET,
        "code": code,
    });
    if let Some(uri) = redirect_uri {
        body["redirect_uri"] = uri.into();
    }
    send(
        "POST",
        "/auth/token",
        &[
            ("Content-Type", "application/json"),
            ("Chart-API-Version", API_VERSION),
        ],
        body.to_string().as_bytes(),
    )
}

fn is_uuid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// A header value the request line can carry: printable ASCII only.
fn header_text(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A field's value as sent: the chosen value, or the shape put in its place.
fn shaped(value: &str, shape: Option<Shape<'_>>) -> Option<serde_json::Value> {
    match shape {
        None => Some(value.into()),
        Some(Shape::Absent) => None,
        Some(Shape::Null) => Some(serde_json::Value::Null),
        Some(Shape::Empty) => Some("".into()),
        Some(Shape::Number) => Some(7.into()),
        Some(Shape::Text(t)) => Some(t.into()),
    }
}

/// DESIGN §5: a required field must be a non-empty string (the mock caps it at 4096
/// bytes); an optional one may also be absent or null.
fn well_formed(value: Option<&serde_json::Value>, required: bool) -> bool {
    match value {
        None | Some(serde_json::Value::Null) => !required,
        Some(serde_json::Value::String(s)) => !s.is_empty() && s.len() <= 4096,
        Some(_) => false,
    }
}

/// The code a request carries, and what the model knows of it.
struct CodeFacts {
    text: String,
    /// Minted for the sandbox client and unspent: (redirect flow, scenario).
    live: Option<(bool, Scenario)>,
}

fn code_for(choice: Code<'_>) -> CodeFacts {
    match choice {
        Code::Live { redirect, scenario } => {
            let scenario = SCENARIOS[usize::from(scenario) % SCENARIOS.len()];
            let uri = redirect.then_some(SANDBOX_REDIRECT_URIS[0]);
            CodeFacts {
                text: mint(SANDBOX_CLIENT_ID, uri, scenario),
                live: Some((redirect, scenario)),
            }
        }
        Code::OtherClients => CodeFacts {
            text: mint(OTHER_ID, None, Scenario::Success),
            live: None,
        },
        Code::Spent => {
            let code = mint(SANDBOX_CLIENT_ID, None, Scenario::Success);
            assert_eq!(exchange(&code, None).status, 200);
            CodeFacts {
                text: code,
                live: None,
            }
        }
        Code::Raw(raw) => CodeFacts {
            text: raw.to_owned(),
            live: None,
        },
    }
}

fuzz_target!(|input: Input<'_>| {
    let content_type = match &input.content_type {
        ContentType::Json => Some("application/json".to_owned()),
        ContentType::JsonWithCharset => Some("application/json; charset=utf-8".to_owned()),
        ContentType::JsonUpperCase => Some("Application/JSON".to_owned()),
        ContentType::Form => Some("application/x-www-form-urlencoded".to_owned()),
        ContentType::Absent => None,
        ContentType::Raw(raw) => Some(header_text(raw)).filter(|v| !v.is_empty()),
    };
    // DESIGN: the content type must be application/json (parameters allowed).
    let json_type = content_type.as_deref().is_some_and(|v| {
        v.split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .eq_ignore_ascii_case("application/json")
    });
    let version = match &input.version {
        Version::Absent => None,
        Version::Known => Some(API_VERSION.to_owned()),
        Version::Raw(raw) => Some(header_text(raw)).filter(|v| !v.is_empty()),
    };
    let version_ok = version.as_deref().is_none_or(|v| v == API_VERSION);

    // The body, and the model's expectation for it once method and headers passed.
    let mut live = None;
    let (body, expected): (Vec<u8>, Option<(u16, &str)>) = match input.body {
        Body::TooLarge(extra) => {
            let pad = " ".repeat(MAX_BODY + usize::from(extra));
            (
                format!("{{{pad}}}").into_bytes(),
                Some((413, "payload_too_large")),
            )
        }
        // Raw bytes: any contract answer will do (checked below).
        Body::Raw(raw) => (raw.to_vec(), None),
        Body::Fields {
            client,
            client_shape,
            secret,
            secret_shape,
            code,
            code_shape,
            redirect,
            extra,
        } => {
            let client = client.unwrap_or(Client::Sandbox);
            let (id, right_secret) = match client {
                Client::Sandbox => (SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET),
                Client::Other => (OTHER_ID, OTHER_SECRET),
                Client::Unknown => ("fuzz-unknown-client", "fuzz-unknown-secret"),
            };
            let secret_text = match secret.unwrap_or(Secret::Right) {
                Secret::Right => right_secret.to_owned(),
                Secret::Wrong => format!("{right_secret}-wrong"),
            };
            let facts = code_for(code.unwrap_or(Code::Live {
                redirect: false,
                scenario: 0,
            }));
            let client_id = shaped(id, client_shape);
            let client_secret = shaped(&secret_text, secret_shape);
            let code_sent = shaped(&facts.text, code_shape);
            let uri = match redirect {
                Redirect::None { null: false } => None,
                Redirect::None { null: true } => Some(serde_json::Value::Null),
                Redirect::Registered(first) => {
                    Some(SANDBOX_REDIRECT_URIS[usize::from(!first)].into())
                }
                Redirect::Raw(raw) => Some(raw.into()),
                Redirect::Empty => Some("".into()),
                Redirect::Number => Some(3.into()),
            };
            let valid = well_formed(client_id.as_ref(), true)
                && well_formed(client_secret.as_ref(), true)
                && well_formed(code_sent.as_ref(), true)
                && well_formed(uri.as_ref(), false);
            let text = |v: &Option<serde_json::Value>| {
                v.as_ref()
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let (sent_id, sent_secret, sent_code) =
                (text(&client_id), text(&client_secret), text(&code_sent));
            let sent_uri = uri.as_ref().and_then(|u| u.as_str().map(str::to_owned));
            let mut fields = serde_json::Map::new();
            for (name, value) in [
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("code", code_sent),
                ("redirect_uri", uri),
            ] {
                fields.extend(value.map(|v| (name.to_owned(), v)));
            }
            if let Some((name, value)) = extra {
                if !["client_id", "client_secret", "code", "redirect_uri"].contains(&name) {
                    fields.insert(name.to_owned(), value.into());
                }
            }
            let authenticated = [
                (SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET),
                (OTHER_ID, OTHER_SECRET),
            ]
            .contains(&(sent_id.as_str(), sent_secret.as_str()));
            let grant = facts
                .live
                .filter(|_| sent_id == SANDBOX_CLIENT_ID && sent_code == facts.text);
            live = facts.live.map(|l| (facts.text.clone(), l));
            let expected = if !valid {
                (400, "invalid_request_error")
            } else if !authenticated {
                (401, "invalid_client_error")
            } else {
                match grant {
                    // Unknown, spent, another client's or raw: the grant is refused.
                    None => (400, "invalid_grant_error"),
                    Some((redirect, scenario)) => {
                        let uri_matches = if redirect {
                            sent_uri.as_deref() == Some(SANDBOX_REDIRECT_URIS[0])
                        } else {
                            sent_uri.is_none()
                        };
                        match scenario {
                            _ if !uri_matches => (400, "invalid_grant_error"),
                            Scenario::Success | Scenario::Slow => (200, ""),
                            Scenario::RateLimited => (429, "rate_limit_exceeded_error"),
                            Scenario::ServerError => (500, "server_error"),
                            _ => (400, "invalid_grant_error"),
                        }
                    }
                }
            };
            (
                serde_json::Value::Object(fields).to_string().into_bytes(),
                Some(expected),
            )
        }
    };
    let method = input.method;
    let expected = if method != Method::Post {
        Some((405, "method_not_allowed"))
    } else if !version_ok {
        Some((400, "invalid_request_error"))
    } else if !json_type {
        Some((415, "unsupported_media_type"))
    } else {
        expected
    };

    let mut headers = Vec::new();
    if let Some(v) = &content_type {
        headers.push(("Content-Type", v.as_str()));
    }
    if let Some(v) = &version {
        headers.push(("Chart-API-Version", v.as_str()));
    }
    let method_name = match method {
        Method::Post => "POST",
        Method::Get => "GET",
        Method::Put => "PUT",
        Method::Delete => "DELETE",
    };
    let answer = send(method_name, "/auth/token", &headers, &body);
    assert!(
        answer.header("chart-request-id").is_some_and(is_uuid),
        "every answer carries a Chart-Request-Id"
    );
    let json = answer.json();
    if answer.status == 200 {
        assert_eq!(
            expected,
            Some((200, "")),
            "a 200 the contract does not give: {input:?}"
        );
        let account = json["account_id"].as_str().unwrap();
        assert!(is_uuid(account) && json["taxpayer_id"] == account);
        let token = json["access_token"].as_str().unwrap();
        assert!(is_uuid(token));
        assert_eq!(json["provider_id"], "chart-sandbox");
        // Spent: the same request again is refused, and the reuse revokes the token.
        let again = send(method_name, "/auth/token", &headers, &body);
        assert_eq!(
            (again.status, again.json()["name"].clone()),
            (400, "invalid_grant_error".into())
        );
        let auth = format!("Bearer {token}");
        let introspect = send("GET", "/introspect", &[("Authorization", &auth)], b"");
        assert_eq!(introspect.status, 401, "a reused code's token still works");
        return;
    }
    assert_eq!(json["code"], answer.status, "{json}");
    let name = json["name"].as_str().unwrap();
    assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    match expected {
        Some((status, want)) => {
            assert_eq!((answer.status, name), (status, want), "{input:?}");
        }
        None => assert!(
            matches!(
                (answer.status, name),
                (400, "invalid_request_error" | "invalid_grant_error")
                    | (401, "invalid_client_error")
                    | (429, "rate_limit_exceeded_error")
                    | (500, "server_error")
            ),
            "{} {name}",
            answer.status
        ),
    }
    if answer.status == 405 {
        assert!(answer.header("allow").is_some_and(|a| a.contains("POST")));
    }
    // What the live code's next correct exchange must give.
    let Some((code, (redirect, scenario))) = live else {
        return;
    };
    let uri = redirect.then_some(SANDBOX_REDIRECT_URIS[0]);
    let grant_checked = matches!(answer.status, 429 | 500) || name == "invalid_grant_error";
    if answer.status == 429 {
        assert_eq!(answer.header("retry-after"), Some("1"));
        assert_eq!(
            exchange(&code, uri).status,
            200,
            "rate_limited: the retry succeeds"
        );
    } else if !grant_checked && matches!(scenario, Scenario::Success | Scenario::Slow) {
        assert_eq!(
            exchange(&code, uri).status,
            200,
            "a request refused before its grant spent the code: {input:?}"
        );
    }
});
