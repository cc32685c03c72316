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
                // Schemes are case-insensitive; the sandbox client allows local origins only.
                let origin = pairs.get("sdk_host_url").map(|u| u.to_ascii_lowercase());
                assert!(
                    origin.as_deref().is_some_and(|u| u.starts_with("http://localhost")
                        || u.starts_with("http://127.0.0.1")),
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
