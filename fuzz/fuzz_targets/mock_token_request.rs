//! The mock's `POST /auth/token` body handling: any body gets a contract answer (a 200
//! with a token, or an error body whose name matches its status), never a panic.
//!
//! Valid codes are reachable: the target mints one code per scenario and flow, and
//! replaces `$C0` … `$C5` in the input by them (the dictionary and the seeds carry the
//! placeholders), so the fuzzer reaches the grant, every scenario and the 200 path. A
//! 200 is then checked against DESIGN §5: the code is spent, so the very same request
//! again is a 400 `invalid_grant_error`.
#![no_main]

use std::sync::{Arc, OnceLock};

use chart_mock_server::{
    Chart, MintRequest, MockConfig, SANDBOX_CLIENT_ID, SANDBOX_REDIRECT_URIS, Scenario, fuzzing,
};
use libfuzzer_sys::fuzz_target;

fn runtime() -> &'static tokio::runtime::Runtime {
    static R: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    R.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    })
}

/// The codes `$C0` … `$C5` stand for: (redirect flow, scenario).
const MINTED: [(bool, Scenario); 6] = [
    (false, Scenario::Success),
    (true, Scenario::Success),
    (false, Scenario::RateLimited),
    (false, Scenario::Denied),
    (false, Scenario::ServerError),
    (true, Scenario::Slow),
];

/// The contract's error names by status (DESIGN §5), written out here rather than taken
/// from the mock, so that the two cannot drift together.
fn contract_names(status: u16) -> &'static [&'static str] {
    match status {
        400 => &["invalid_request_error", "invalid_grant_error"],
        401 => &["invalid_client_error"],
        413 => &["payload_too_large"],
        415 => &["unsupported_media_type"],
        429 => &["rate_limit_exceeded_error"],
        500 => &["server_error"],
        _ => &[],
    }
}

fuzz_target!(|data: &[u8]| {
    let chart = Arc::new(Chart::new(&MockConfig {
        slow_ms: 0,
        ..MockConfig::default()
    }));
    let mut body = data.to_vec();
    for (n, (redirect, scenario)) in MINTED.iter().enumerate() {
        let code = chart
            .mint(&MintRequest {
                client_id: SANDBOX_CLIENT_ID.into(),
                redirect_uri: redirect.then(|| SANDBOX_REDIRECT_URIS[0].to_owned()),
                scenario: Some(*scenario),
                ..Default::default()
            })
            .unwrap()
            .code;
        body = replace(&body, format!("$C{n}").as_bytes(), code.as_bytes());
    }
    let (status, answer) = runtime().block_on(fuzzing::auth_token(chart.clone(), &body));
    let json: serde_json::Value = serde_json::from_slice(&answer).expect("every answer is JSON");
    if status == http::StatusCode::OK {
        assert!(json["access_token"].is_string() && json["account_id"] == json["taxpayer_id"]);
        let (again, answer) = runtime().block_on(fuzzing::auth_token(chart, &body));
        let json: serde_json::Value = serde_json::from_slice(&answer).unwrap();
        assert_eq!(again.as_u16(), 400, "a spent code was accepted again");
        assert_eq!(json["name"], "invalid_grant_error");
    } else {
        assert_eq!(json["code"], status.as_u16());
        let name = json["name"].as_str().unwrap();
        assert!(
            contract_names(status.as_u16()).contains(&name),
            "{status} {name}"
        );
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
});

fn replace(haystack: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut rest = haystack;
    while let Some(at) = rest.windows(from.len()).position(|w| w == from) {
        out.extend_from_slice(&rest[..at]);
        out.extend_from_slice(to);
        rest = &rest[at + from.len()..];
    }
    out.extend_from_slice(rest);
    out
}
