//! The mock's TOML config parser: never panics; what it accepts is valid.
#![no_main]

use chart_mock_server::MockConfig;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    if let Ok(config) = MockConfig::from_toml(text) {
        config.validate().expect("an accepted config is valid");
        assert!(!config.clients.is_empty() && config.code_ttl_secs > 0);
        for c in &config.clients {
            assert!(!format!("{c:?}").contains(&c.client_secret) || c.client_secret.len() < 4);
        }
    }
});
