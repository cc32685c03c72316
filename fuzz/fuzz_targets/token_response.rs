//! The token response parser: never panics; what parses round-trips; errors never echo
//! the input and Debug never shows the token.
#![no_main]

use chart_auth::fuzzing::TokenResponse;
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
            let input = String::from_utf8_lossy(data);
            let shown = format!("{e} {e:?}");
            // The input may only show where it happens to spell our own fixed wording.
            if data.len() >= 16 && shown.contains(input.as_ref()) {
                assert!(
                    fixed_wording().contains(input.as_ref()),
                    "the error echoes its input"
                );
            }
        }
    }
});

/// Every message the parser can give, as Display and Debug.
fn fixed_wording() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        let samples: [&[u8]; 7] = [
            b"{",
            b"x",
            b"",
            br#"{"provider_id":"p","access_token":"t"}"#,
            br#"{"account_id":"a","provider_id":"p","access_token":""}"#,
            br#"{"account_id":"a","provider_id":"","access_token":"t"}"#,
            br#"{"account_id":1}"#,
        ];
        samples
            .iter()
            .filter_map(|s| TokenResponse::parse(s).err())
            .map(|e| format!("{e} {e:?}\n"))
            .collect()
    })
}
