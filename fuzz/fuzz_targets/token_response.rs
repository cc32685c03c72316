//! The token response parser: never panics; what parses round-trips; errors never echo
//! the input or any one of its fields, and Debug never shows the token.
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
            // Neither the input nor any one of its string fields (a token beside a bad
            // account id, say) may show, except where it spells our own fixed wording.
            let mut pieces = vec![input.into_owned()];
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
                strings_in(&value, &mut pieces);
            }
            for piece in pieces.iter().filter(|p| p.len() >= 8) {
                if shown.contains(piece.as_str()) {
                    assert!(
                        fixed_wording().contains(piece.as_str()),
                        "the error echoes its input: {piece:?}"
                    );
                }
            }
        }
    }
});

/// Every string in a JSON value, keys included.
fn strings_in(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(items) => items.iter().for_each(|v| strings_in(v, out)),
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                out.push(k.clone());
                strings_in(v, out);
            }
        }
        _ => {}
    }
}

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
