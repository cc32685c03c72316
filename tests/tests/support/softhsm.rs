//! Fresh SoftHSM2 tokens for the PKCS#11 tests and benches.
//!
//! SoftHSM2 reads its configuration from `SOFTHSM2_CONF` when the module is first
//! initialized in a process; `.ci/test` points it at a fresh temporary token directory.
//! Each test then takes a token of its own there, so that no two tests share one.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use chart_auth::vault::{Pkcs11Config, Pkcs11KeySource};

/// Debian's SoftHSM2 module.
pub const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// The user PIN of every test token.
pub const PIN: &str = "4711-user-pin";

/// A token made for one test, by its label.
pub struct Token {
    pub label: String,
}

/// Tokens made per process, before the module is first initialized: SoftHSM2 reads its
/// token directory then, and does not reliably see a token made later by
/// `softhsm2-util` in another process.
const TOKENS_PER_PROCESS: usize = 16;

/// A fresh token of this process's own, never handed to another test.
pub fn fresh_token() -> Token {
    static TOKENS: OnceLock<Vec<String>> = OnceLock::new();
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let tokens = TOKENS.get_or_init(|| (0..TOKENS_PER_PROCESS).map(init_token).collect());
    let label = tokens
        .get(NEXT.fetch_add(1, Ordering::Relaxed))
        .expect("raise TOKENS_PER_PROCESS: more tests than tokens")
        .clone();
    Token { label }
}

fn init_token(n: usize) -> String {
    let conf = std::env::var_os("SOFTHSM2_CONF").expect(
        "SOFTHSM2_CONF is not set: run the tests with `bash .ci/test`, which installs \
         SoftHSM2 and makes a fresh token directory",
    );
    assert!(
        Path::new(MODULE).is_file(),
        "SoftHSM2 is not installed (apt-get install softhsm2), or not at {MODULE}"
    );
    let label = format!("test-{}-{n}", std::process::id());
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", conf)
        .args(["--init-token", "--free", "--label", &label])
        .args(["--pin", PIN, "--so-pin", "4711-so-pin"])
        .output()
        .expect("softhsm2-util runs");
    assert!(
        out.status.success(),
        "softhsm2-util --init-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    label
}

impl Token {
    /// This token's configuration for a KEK labelled `key_label`, with the right PIN.
    pub fn config(&self, key_label: &str) -> Pkcs11Config {
        Pkcs11Config::new(MODULE, &self.label, key_label).pin(PIN)
    }

    /// Creates the KEK `key_label` in this token and opens it.
    pub fn kek(&self, key_label: &str) -> Pkcs11KeySource {
        let config = self.config(key_label);
        config.create_kek().expect("the KEK is created");
        config.open().expect("the KEK opens")
    }
}
