//! The mock's Connect form parsing: any form or query is accepted or refused with a
//! message, never a panic; what is accepted names a registered client and redirect_uri.
#![no_main]

use std::sync::{Arc, OnceLock};

use chart_mock_server::{Chart, MockConfig, SANDBOX_CLIENT_ID, SANDBOX_REDIRECT_URIS, fuzzing};
use libfuzzer_sys::fuzz_target;

fn chart() -> Arc<Chart> {
    static C: OnceLock<Arc<Chart>> = OnceLock::new();
    C.get_or_init(|| Arc::new(Chart::new(&MockConfig::default())))
        .clone()
}

fuzz_target!(|data: &[u8]| {
    match fuzzing::connect_form(chart(), data) {
        Ok(()) => {
            let pairs: std::collections::HashMap<String, String> =
                form_urlencoded::parse(data).into_owned().collect();
            assert_eq!(
                pairs.get("client_id").map(String::as_str),
                Some(SANDBOX_CLIENT_ID)
            );
            if pairs.get("app_type").map(String::as_str) == Some("spa") {
                // The sandbox client allows local origins only: its redirect_uris are on
                // localhost, and any http://localhost or http://127.0.0.1 origin.
                let origin = pairs.get("sdk_host_url").map(String::as_str);
                assert!(
                    origin.is_some_and(is_local_origin),
                    "an origin the sandbox client does not allow was accepted: {origin:?}"
                );
            } else {
                let uri = pairs.get("redirect_uri").expect("a redirect_uri");
                assert!(
                    SANDBOX_REDIRECT_URIS.contains(&uri.as_str()),
                    "an unregistered redirect_uri was accepted"
                );
            }
        }
        Err(message) => assert!(!message.is_empty()),
    }
});

/// Whether `url`'s origin is `http://localhost[:port]` or `http://127.0.0.1[:port]`,
/// read from DESIGN's rule rather than the mock's code: the host must be exactly one of
/// the two (not a prefix of `localhost.evil.example`), with no user info.
fn is_local_origin(url: &str) -> bool {
    let url = url.to_ascii_lowercase();
    let Some(rest) = url.strip_prefix("http://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    matches!(host, "localhost" | "127.0.0.1")
        && port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}
