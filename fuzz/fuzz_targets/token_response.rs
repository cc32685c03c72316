//! The token response parser: never panics; what parses round-trips; errors never echo
//! the input and Debug never shows the token.
#![no_main]

use chart_auth::TokenResponse;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match TokenResponse::parse(data) {
        Ok(parsed) => {
            let token = parsed.access_token.expose_secret().to_owned();
            let again = serde_json::json!({
                "account_id": parsed.account_id,
                "provider_id": parsed.provider_id.as_str(),
                "access_token": token,
            });
            let reparsed = TokenResponse::parse(again.to_string().as_bytes())
                .expect("a parsed response re-parses");
            assert_eq!(reparsed.account_id, parsed.account_id);
            assert_eq!(reparsed.provider_id, parsed.provider_id);
            assert_eq!(reparsed.access_token, parsed.access_token);
            if token.len() >= 8 {
                assert!(
                    !format!("{parsed:?}").contains(&token),
                    "Debug shows the token"
                );
            }
        }
        Err(e) => {
            if data.len() >= 16 {
                let shown = format!("{e} {e:?}");
                assert!(
                    !shown.contains(String::from_utf8_lossy(data).as_ref()),
                    "the error echoes its input"
                );
            }
        }
    }
});
