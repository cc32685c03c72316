//! The callback endpoint and state verification, fed any query, body and state: never
//! a panic, never a success (no state can be forged), never the code in an answer.
#![no_main]

use std::sync::{Arc, OnceLock};

use arbitrary::Arbitrary;
use bytes::Bytes;
use chart_auth::vault::{Keyring, MemoryStore, Vault};
use chart_auth::{
    CallbackService, ChartClient, ChartConnect, ClientSecret, Config, ConnectStateSigner, FlowKind,
};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    post: bool,
    json_type: bool,
    query: &'a str,
    body: &'a [u8],
    session: &'a [u8],
    state: &'a str,
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    service: CallbackService<MemoryStore>,
    signer: ConnectStateSigner,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = runtime.enter();
        // Port 9 on loopback: nothing listens, and no input should get that far anyway.
        let client = ChartClient::new(
            Config::builder("fuzz", ClientSecret::new("fuzz-secret"))
                .api_base("http://127.0.0.1:9")
                .build()
                .unwrap(),
        )
        .unwrap();
        let vault = Arc::new(Vault::new("fuzz", Keyring::generate(), MemoryStore::default()));
        let chart = ChartConnect::new(
            client,
            ConnectStateSigner::from_key(&[3; 32]).unwrap(),
            vault,
        );
        let service = CallbackService::builder(chart)
            .session(|parts| {
                parts
                    .headers
                    .get("x-session")
                    .map(|v| v.as_bytes().to_vec())
            })
            .build();
        Fixture {
            runtime,
            service,
            signer: ConnectStateSigner::from_key(&[4; 32]).unwrap(),
        }
    })
}

fuzz_target!(|input: Input<'_>| {
    let f = fixture();
    for via in [FlowKind::Redirect, FlowKind::Embedded] {
        assert!(
            f.signer.verify(input.state, input.session, via).is_err(),
            "a forged state verified"
        );
    }
    let answer = |query: &str| -> Option<(http::StatusCode, String)> {
        let uri = format!("/api/chart/callback?{query}").parse::<http::Uri>().ok()?;
        let mut req = http::Request::builder()
            .method(if input.post { "POST" } else { "GET" })
            .uri(uri)
            .header("x-session", "s");
        if input.json_type {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::copy_from_slice(input.body)))
            .unwrap();
        let resp = f.runtime.block_on(f.service.handle(req));
        let status = resp.status();
        let body = f
            .runtime
            .block_on(resp.into_body().collect())
            .unwrap()
            .to_bytes();
        Some((status, String::from_utf8_lossy(&body).into_owned()))
    };
    let Some((status, text)) = answer(input.query) else {
        return;
    };
    assert_ne!(status, http::StatusCode::INTERNAL_SERVER_ERROR);
    assert!(
        !text.contains("\"connected\""),
        "a forged callback connected"
    );
    // The code is never echoed: the same request with another code of the same length
    // gets the very same answer. (Comparing bodies, not searching them, so a code that
    // happens to spell one of our own words, such as `status`, is no false alarm.)
    for (k, v) in form_pairs(input.query) {
        if k == "code" && v.chars().any(|c| c.is_ascii_alphanumeric()) {
            // Only letters and digits change, so `#`, `%` and `+` keep the query's shape.
            let other: String = v
                .chars()
                .map(|c| match c {
                    'Z' => 'Y',
                    c if c.is_ascii_alphanumeric() => 'Z',
                    c => c,
                })
                .collect();
            let swapped = input.query.replacen(&format!("code={v}"), &format!("code={other}"), 1);
            if let Some((_, again)) = answer(&swapped) {
                assert_eq!(text, again, "the answer depends on the code: it is echoed");
            }
        }
    }
});

fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}
