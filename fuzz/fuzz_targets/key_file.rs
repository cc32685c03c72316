//! The keyring text parser: never panics; what parses round-trips through `to_text`
//! with the very same key bytes (the text is canonical, and a record sealed before
//! opens after); errors never echo a word of the input that could be key material.
#![no_main]

use chart_auth::vault::{Keyring, RecordIdentity};
use libfuzzer_sys::fuzz_target;

const ID: RecordIdentity<'static> = RecordIdentity {
    client_id: "fuzz",
    owner: b"owner",
    account_id: "account",
    provider_id: "irs",
};

fuzz_target!(|text: &str| {
    match Keyring::parse(text) {
        Ok(ring) => {
            let written = ring.to_text().expect("a plaintext keyring writes");
            let again = Keyring::parse(&written).expect("a written keyring parses");
            assert_eq!(
                again.to_text().unwrap().as_str(),
                written.as_str(),
                "the keys, ids or statuses changed in a round trip"
            );
            let sealed = ring.seal(&ID, b"token").expect("the primary seals");
            assert_eq!(
                &again
                    .unseal(&ID, &sealed)
                    .expect("opens after a round trip")[..],
                b"token"
            );
            let debug = format!("{ring:?}");
            for word in written.split_whitespace().filter(|w| w.len() == 44) {
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
