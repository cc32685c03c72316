//! The keyring text parser: never panics; what parses round-trips through `to_text`;
//! errors never echo a word of the input that could be key material.
#![no_main]

use chart_auth::vault::Keyring;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    match Keyring::parse(text) {
        Ok(ring) => {
            let again = Keyring::parse(&ring.to_text().expect("a plaintext keyring writes")).expect("a written keyring parses");
            assert_eq!(
                again.keys().collect::<Vec<_>>(),
                ring.keys().collect::<Vec<_>>()
            );
            assert_eq!(again.primary(), ring.primary());
            let debug = format!("{ring:?}");
            for word in ring.to_text().expect("a plaintext keyring writes").split_whitespace().filter(|w| w.len() == 44) {
                assert!(!debug.contains(word), "Debug shows a key");
            }
        }
        Err(e) => {
            let shown = format!("{e} {e:?}");
            // Words that could be key material: 16+ characters of the base64 alphabet.
            let key_like = |w: &&str| {
                w.len() >= 16
                    && w.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(&b))
            };
            for word in text.split_whitespace().filter(key_like) {
                assert!(!shown.contains(word), "the error echoes {word:?}");
            }
        }
    }
});
