//! A test target: the mock in-process or as the binary a user starts, and a small
//! HTTP client to drive it.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use bytes::Bytes;
use chart_mock_server::{MockConfig, MockServer};
use http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

pub const CLIENT: &str = "chart-sandbox-client";
pub const SECRET: &str = "chart-sandbox-secret";
pub const REDIRECT: &str = "http://localhost:3000/api/chart/callback";
pub const REDIRECT_2: &str = "http://127.0.0.1:3000/api/chart/callback";
pub const OTHER: &str = "other-client";

/// The config both targets run with, plus `extra` TOML lines.
pub fn config_toml(extra: &str) -> String {
    format!(
        r#"{extra}
code_ttl_secs = 600
slow_ms = 200
[[clients]]
client_id = "{CLIENT}"
client_secret = "{SECRET}"
redirect_uris = ["{REDIRECT}", "{REDIRECT_2}"]
[[clients]]
client_id = "{OTHER}"
client_secret = "other-secret"
redirect_uris = ["{REDIRECT}"]
"#
    )
}

pub enum Guard {
    InProcess(Box<MockServer>),
    Binary(Child, tempfile::NamedTempFile),
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Guard::Binary(child, _) = self {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub struct Target {
    pub base: String,
    pub guard: Guard,
    http: Client<HttpConnector, Full<Bytes>>,
}

pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }

    /// Asserts the contract's error shape and returns the message.
    pub fn error(&self, status: u16, name: &str) -> String {
        assert_eq!(self.status.as_u16(), status, "{:?}", self.body);
        let body = self.json();
        assert_eq!(body["code"], status);
        assert_eq!(body["name"], name, "{body}");
        body["message"].as_str().expect("a message").to_owned()
    }
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

impl Target {
    pub async fn in_process(extra: &str) -> Target {
        let config = MockConfig::from_toml(&config_toml(extra)).unwrap();
        let mock = MockServer::start(config).await.unwrap();
        Target {
            base: mock.url(),
            guard: Guard::InProcess(Box::new(mock)),
            http: client(),
        }
    }

    pub async fn binary(extra: &str) -> Target {
        let (child, file, base) = spawn_binary(&config_toml(extra), &[]);
        Target {
            base,
            guard: Guard::Binary(child, file),
            http: client(),
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Answer {
        self.try_send(method, path, headers, body)
            .await
            .expect("an answer")
    }

    pub async fn try_send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Result<Answer, String> {
        let mut req = Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .http
            .request(req.body(Full::new(body.into())).unwrap())
            .await
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = resp.into_parts();
        let body = body
            .collect()
            .await
            .map_err(|e| format!("body: {e:?}"))?
            .to_bytes();
        assert!(
            parts.headers.contains_key("chart-request-id"),
            "every answer has a request id"
        );
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Answer {
        self.send(
            Method::POST,
            path,
            &[("content-type", "application/json")],
            body.to_string(),
        )
        .await
    }

    pub async fn mint(&self, body: Value) -> Answer {
        self.post_json("/__chart/codes", &body).await
    }

    pub async fn code(&self, redirect: Option<&str>, scenario: &str) -> String {
        let mut body = json!({"client_id": CLIENT, "scenario": scenario});
        if let Some(r) = redirect {
            body["redirect_uri"] = json!(r);
        }
        let a = self.mint(body).await;
        assert_eq!(a.status, StatusCode::CREATED, "{:?}", a.body);
        a.json()["code"].as_str().unwrap().to_owned()
    }

    pub async fn exchange(&self, code: &str, redirect: Option<&str>) -> Answer {
        let mut body = json!({"client_id": CLIENT, "client_secret": SECRET, "code": code});
        if let Some(r) = redirect {
            body["redirect_uri"] = json!(r);
        }
        self.post_json("/auth/token", &body).await
    }

    pub async fn bearer(&self, method: Method, path: &str, token: &str) -> Answer {
        self.send(
            method,
            path,
            &[("authorization", &format!("Bearer {token}"))],
            "",
        )
        .await
    }

    pub async fn journal(&self) -> Vec<Value> {
        self.send(Method::GET, "/__chart/journal", &[], "")
            .await
            .json()
            .as_array()
            .unwrap()
            .clone()
    }
}

/// Starts the binary as a user does, with a config file, and reads the URL it prints.
pub fn spawn_binary(config: &str, extra_args: &[&str]) -> (Child, tempfile::NamedTempFile, String) {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chart-mock-server"))
        .args(["--addr", "127.0.0.1:0", "--config"])
        .arg(file.path())
        .args(extra_args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.as_mut().unwrap())
        .read_line(&mut first)
        .unwrap();
    let base = first.trim().rsplit(' ').next().unwrap().to_owned();
    assert!(base.starts_with("http"), "unexpected first line {first:?}");
    (child, file, base)
}
