//! The mock's TOML config parser: never panics; what it accepts is what the text says
//! (every client, with its own secret, authenticates and no other secret does); what
//! it refuses is refused without quoting a secret from the text.
#![no_main]

use chart_mock_server::{Chart, MockConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    // The same text read as plain TOML: what the config should hold.
    let raw: Option<toml::Table> = toml::from_str(text).ok();
    let raw_clients: Vec<(String, String)> = raw
        .as_ref()
        .and_then(|t| t.get("clients"))
        .and_then(|c| c.as_array())
        .map(|clients| {
            clients
                .iter()
                .filter_map(|c| {
                    Some((
                        c.get("client_id")?.as_str()?.to_owned(),
                        c.get("client_secret")?.as_str()?.to_owned(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    match MockConfig::from_toml(text) {
        Ok(config) => {
            let chart = Chart::new(&config);
            if raw_clients.is_empty() {
                assert!(
                    config
                        .clients
                        .iter()
                        .any(|c| c.client_id == "chart-sandbox-client")
                );
            }
            for (id, secret) in &raw_clients {
                assert!(
                    chart.authenticate(id, secret),
                    "client {id:?} lost its secret"
                );
                assert!(!chart.authenticate(id, &format!("{secret}x")));
            }
            let ttl = raw
                .as_ref()
                .and_then(|t| t.get("code_ttl_secs"))
                .and_then(|v| v.as_integer());
            if let Some(ttl) = ttl {
                assert_eq!(i128::from(config.code_ttl_secs), i128::from(ttl));
            }
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            for (_, secret) in &raw_clients {
                if secret.len() >= 8 {
                    assert!(
                        !shown.contains(secret.as_str()),
                        "the error quotes a secret"
                    );
                }
            }
        }
    }
});
