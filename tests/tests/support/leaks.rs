//! Every form in which a secret could leak, and a search for them.
//!
//! A secret can leak as itself, or encoded: hex (either case), base64 (standard or
//! URL-safe, padded or not), a Rust byte list (`[55, 101, …]`, as `Debug` prints a
//! `[u8]`), or cut short. [`find_leak`] looks for each form, and for a 12-byte prefix
//! of secrets long enough that 12 bytes still identify them.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Secrets at least this long are also searched for by their prefix.
const PREFIX_FROM: usize = 16;
/// How long that prefix is, in bytes (and twice that in hex digits, 16 base64 chars).
const PREFIX: usize = 12;

/// Each form of `secret` worth searching for, with a name for messages.
pub fn leak_forms(secret: &[u8]) -> Vec<(&'static str, Vec<u8>)> {
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let list = format!("{secret:?}");
    let mut forms = vec![
        ("raw", secret.to_vec()),
        ("hex", hex.clone().into_bytes()),
        ("HEX", hex.to_uppercase().into_bytes()),
        // Without its closing bracket, so that a longer list holding it also matches.
        ("byte list", list.as_bytes()[..list.len() - 1].to_vec()),
    ];
    for (name, engine) in [
        ("base64", STANDARD),
        ("base64 unpadded", STANDARD_NO_PAD),
        ("base64url", URL_SAFE),
        ("base64url unpadded", URL_SAFE_NO_PAD),
    ] {
        let text = engine.encode(secret);
        if secret.len() >= PREFIX_FROM {
            forms.push((name, text.as_bytes()[..16].to_vec()));
        }
        forms.push((name, text.into_bytes()));
    }
    if secret.len() >= PREFIX_FROM {
        let head = &secret[..PREFIX];
        let head_list = format!("{head:?}");
        forms.push(("raw prefix", head.to_vec()));
        forms.push(("hex prefix", hex.as_bytes()[..2 * PREFIX].to_vec()));
        forms.push((
            "byte list prefix",
            head_list.as_bytes()[1..head_list.len() - 1].to_vec(),
        ));
    }
    forms
}

/// The first form of `secret` found in `haystack`, by name.
pub fn find_leak(haystack: &[u8], secret: &[u8]) -> Option<&'static str> {
    leak_forms(secret)
        .into_iter()
        .find(|(_, form)| !form.is_empty() && haystack.windows(form.len()).any(|w| w == form))
        .map(|(name, _)| name)
}

/// Panics naming the first secret that `haystack` holds in any form.
pub fn assert_no_leak(haystack: &[u8], secrets: &[Vec<u8>], what: &str) {
    for (n, secret) in secrets.iter().enumerate() {
        if let Some(form) = find_leak(haystack, secret) {
            panic!(
                "{what}: secret #{n} ({} bytes) leaked as {form}",
                secret.len()
            );
        }
    }
}

/// The raw data keys of a plaintext keyring's text, to search output for.
pub fn keyring_keys(text: &str) -> Vec<Vec<u8>> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| STANDARD.decode(l.split_whitespace().last()?).ok())
        .collect()
}
