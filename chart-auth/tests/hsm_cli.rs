//! The `chart-auth` CLI with an HSM: each test runs the binary against a SoftHSM2
//! token directory of its own (through `SOFTHSM2_CONF` in the child's environment).
#![cfg(all(feature = "cli", feature = "pkcs11"))]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chart_auth::vault::{FileStore, Keyring, Vault};
use chart_auth::{AccessToken, ProviderId};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";
const PIN: &str = "cli-user-pin-8151";

/// A SoftHSM2 token directory with one token, `chart`, and the CLI pointed at it.
struct Hsm {
    dir: tempfile::TempDir,
}

impl Hsm {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("tokens")).unwrap();
        std::fs::write(
            dir.path().join("softhsm2.conf"),
            format!(
                "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
                dir.path().join("tokens").display()
            ),
        )
        .unwrap();
        let hsm = Self { dir };
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", hsm.conf())
            .args(["--init-token", "--free", "--label", "chart"])
            .args(["--pin", PIN, "--so-pin", "cli-so-pin"])
            .output()
            .expect("softhsm2-util runs (apt-get install softhsm2)");
        assert!(out.status.success(), "{out:?}");
        hsm
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("softhsm2.conf")
    }

    /// Runs the CLI with the HSM in its environment and the given PIN; returns success
    /// and everything it printed.
    fn cli_with_pin(&self, pin: &str, args: &[&str]) -> (bool, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_chart-auth"))
            .env("SOFTHSM2_CONF", self.conf())
            .env("CHART_PKCS11_MODULE", MODULE)
            .env("CHART_PKCS11_TOKEN", "chart")
            .env("CHART_PKCS11_KEY", "kek")
            .env("CHART_PKCS11_PIN", pin)
            .args(args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!text.contains(pin), "the PIN was printed: {text}");
        (out.status.success(), text)
    }

    fn cli(&self, args: &[&str]) -> String {
        let (ok, out) = self.cli_with_pin(PIN, args);
        assert!(ok, "chart-auth {args:?} failed: {out}");
        out
    }

    fn refused(&self, args: &[&str]) -> String {
        let (ok, out) = self.cli_with_pin(PIN, args);
        assert!(!ok, "chart-auth {args:?} should have failed: {out}");
        out
    }
}

/// The base64 of each key line of a plaintext keyring.
fn plaintext_keys(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| l.split_whitespace().nth(2).unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn wrap_rotate_and_unwrap_a_keyring_through_the_cli() {
    let hsm = Hsm::new();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let k = keys.to_str().unwrap();
    let store_dir = dir.path().join("tokens");
    let s = store_dir.to_str().unwrap();

    // A plaintext keyring of two keys, and records sealed under both.
    let mut ring = Keyring::generate();
    let second = ring.add_key().unwrap();
    ring.save(&keys).unwrap();
    let clear = plaintext_keys(&keys);
    assert_eq!(clear.len(), 2);
    let vault = Vault::new("client", ring, FileStore::open(&store_dir).unwrap());
    vault
        .put(
            &owner(),
            "under-1",
            &ProviderId::from("irs"),
            &AccessToken::new("t1"),
        )
        .await
        .unwrap();
    vault.update_keyring(|r| r.promote(second)).unwrap();
    vault
        .put(
            &owner(),
            "under-2",
            &ProviderId::from("irs"),
            &AccessToken::new("t2"),
        )
        .await
        .unwrap();
    drop(vault);

    hsm.cli(&["kek", "create"]);
    assert!(hsm.refused(&["kek", "create"]).contains("already exists"));
    let out = hsm.cli(&["keyring", "wrap", "--keyring", k]);
    assert!(out.contains("wrapped 2 key(s)"), "{out}");
    let text = std::fs::read(&keys).unwrap();
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for b64 in &clear {
        let raw = STANDARD.decode(b64).unwrap();
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        for form in [
            b64.as_bytes(),
            &raw[..],
            hex.as_bytes(),
            &b64.as_bytes()[..16],
        ] {
            assert!(
                !text.windows(form.len()).any(|w| w == form),
                "a data key is in the wrapped keyring"
            );
        }
    }
    let wrap_again = hsm.refused(&["keyring", "wrap", "--keyring", k]);
    assert!(wrap_again.contains("plaintext"), "{wrap_again}");

    // Every record unseals through the wrapped keyring; keys change under the HSM too.
    let inspect = [
        "inspect",
        "--keyring",
        k,
        "--store",
        s,
        "--client-id",
        "client",
    ];
    let out = hsm.cli(&inspect);
    assert!(out.contains("2 record(s) in all"), "{out}");
    assert!(out.contains("\"kek\" in token \"chart\""), "{out}");
    hsm.cli(&["keyring", "add", "--keyring", k]);

    // A new KEK: the data keys are rewrapped; the records are untouched.
    let sealed_before = std::fs::read_dir(&store_dir).unwrap().count();
    hsm.cli(&["kek", "create", "--key-label", "kek-2"]);
    let out = hsm.cli(&["kek", "rotate", "--keyring", k, "--new-key-label", "kek-2"]);
    assert!(out.contains("rewrapped 3 data key(s)"), "{out}");
    let mut with_new = inspect.to_vec();
    with_new.extend(["--key-label", "kek-2"]);
    let out = hsm.cli(&with_new);
    assert!(out.contains("2 record(s) in all"), "{out}");
    let out = hsm.refused(&inspect);
    assert!(
        out.contains("does not unwrap"),
        "the old KEK still opens: {out}"
    );
    assert_eq!(
        std::fs::read_dir(&store_dir).unwrap().count(),
        sealed_before
    );

    // Back out to plaintext only when forced; then the very same keys come back.
    let mut unwrap = vec!["keyring", "unwrap", "--keyring", k, "--key-label", "kek-2"];
    assert!(hsm.refused(&unwrap).contains("--force"));
    unwrap.push("--force");
    hsm.cli(&unwrap);
    assert_eq!(&plaintext_keys(&keys)[..2], &clear[..]);
    let vault = Vault::new(
        "client",
        Keyring::load(&keys).unwrap(),
        FileStore::open(&store_dir).unwrap(),
    );
    assert_eq!(
        vault
            .unseal(&owner(), "under-1")
            .await
            .unwrap()
            .expose_secret(),
        "t1"
    );
    assert_eq!(
        vault
            .unseal(&owner(), "under-2")
            .await
            .unwrap()
            .expose_secret(),
        "t2"
    );
}

#[test]
fn the_pin_never_comes_from_the_command_line_and_a_wrong_one_is_refused() {
    let hsm = Hsm::new();
    hsm.cli(&["kek", "create"]);
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let k = keys.to_str().unwrap();
    hsm.cli(&["keygen", "--keyring", k]);
    assert!(
        std::fs::read_to_string(&keys)
            .unwrap()
            .contains("kek pkcs11")
    );

    let out = hsm.refused(&["--pin", PIN, "inspect", "--keyring", k]);
    assert!(out.contains("unexpected argument"), "{out}");

    let (ok, out) = hsm.cli_with_pin("not-the-pin-42", &["inspect", "--keyring", k]);
    assert!(!ok && out.contains("refused the PIN"), "{out}");

    // The PIN from a private file, instead of the environment.
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, PIN).unwrap();
    std::fs::set_permissions(&pin_file, PermissionsExt::from_mode(0o600)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chart-auth"))
        .env("SOFTHSM2_CONF", hsm.conf())
        .args(["inspect", "--keyring", k, "--pkcs11-module", MODULE])
        .args(["--token-label", "chart", "--key-label", "kek", "--pin-file"])
        .arg(&pin_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");

    // A wrapped keyring without the HSM says what it needs.
    let out = Command::new(env!("CARGO_BIN_EXE_chart-auth"))
        .args(["inspect", "--keyring", k])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--pkcs11-module"));
}

/// The user whose accounts these records are.
fn owner() -> chart_auth::Owner {
    chart_auth::Owner::new("owner-test-user").unwrap()
}
