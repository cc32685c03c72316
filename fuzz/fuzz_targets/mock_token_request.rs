//! The mock's `POST /auth/token` body handling: any body gets a contract answer (a 200
//! with a token, or an error body whose name matches its status), never a panic.
#![no_main]

use std::sync::{Arc, OnceLock};

use chart_mock_server::{Chart, MintRequest, MockConfig, SANDBOX_CLIENT_ID, error_name, fuzzing};
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

fuzz_target!(|data: &[u8]| {
    let chart = Arc::new(Chart::new(&MockConfig {
        slow_ms: 0,
        ..MockConfig::default()
    }));
    // A live code the input may name (the dictionary has its shape).
    let _ = chart.mint(&MintRequest {
        client_id: SANDBOX_CLIENT_ID.into(),
        ..Default::default()
    });
    let (status, body) = runtime().block_on(fuzzing::auth_token(chart, data));
    let json: serde_json::Value = serde_json::from_slice(&body).expect("every answer is JSON");
    if status == http::StatusCode::OK {
        assert!(json["access_token"].is_string() && json["account_id"] == json["taxpayer_id"]);
    } else {
        assert_eq!(json["code"], status.as_u16());
        let name = json["name"].as_str().unwrap();
        assert!(
            name == error_name(status) || name == "invalid_grant_error",
            "{status} {name}"
        );
        assert!(json["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
});
