//! The `chart-auth` key CLI: a full rotation on a FileStore, and no secret in its output.
#![cfg(feature = "cli")]

use std::process::Command;

use chart_auth::vault::{FileStore, KeyId, Keyring, Vault};
use chart_auth::{AccessToken, ProviderId};

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chart-auth"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn a_full_rotation_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let store = dir.path().join("tokens");
    let (k, s) = (keys.to_str().unwrap(), store.to_str().unwrap());

    let (ok, out) = cli(&["keygen", "--keyring", k]);
    assert!(ok, "{out}");
    assert!(
        !cli(&["keygen", "--keyring", k]).0,
        "keygen never overwrites"
    );
    let vault = Vault::new(
        Keyring::load(&keys).unwrap(),
        FileStore::open(&store).unwrap(),
    );
    for i in 0..5 {
        vault
            .put(
                "client",
                &format!("acct-{i}"),
                &ProviderId::Irs,
                &AccessToken::new(format!("token-{i}")),
            )
            .await
            .unwrap();
    }

    let (ok, out) = cli(&["keyring", "add", "--keyring", k]);
    assert!(ok && out.contains("added key 2"), "{out}");
    assert!(cli(&["keyring", "promote", "--keyring", k, "2"]).0);
    let (ok, out) = cli(&["rewrap", "--keyring", k, "--store", s]);
    assert!(
        ok && out.contains("rewrapped 5 record(s) to key 2"),
        "{out}"
    );
    let (ok, out) = cli(&["keyring", "retire", "--keyring", k, "1"]);
    assert!(ok, "{out}");
    assert!(
        !cli(&["keyring", "retire", "--keyring", k, "2"]).0,
        "the primary cannot retire"
    );

    let (ok, out) = cli(&["inspect", "--keyring", k, "--store", s]);
    assert!(ok, "{out}");
    assert!(
        out.contains("       1  retired   0") && out.contains("       2  primary   5"),
        "{out}"
    );
    assert!(out.contains("5 record(s) in all"));

    // Everything still opens with the rotated keyring, and nothing secret was printed.
    let ring = Keyring::load(&keys).unwrap();
    let text = ring.to_text();
    let vault = Vault::new(ring, FileStore::open(&store).unwrap());
    for i in 0..5 {
        assert_eq!(
            vault
                .unseal(&format!("acct-{i}"))
                .await
                .unwrap()
                .expose_secret(),
            format!("token-{i}")
        );
    }
    assert_eq!(
        vault.get("acct-0").await.unwrap().unwrap().key_id(),
        KeyId(2)
    );
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let key = line.split_whitespace().last().unwrap();
        assert!(!out.contains(key));
    }
    assert!(!out.contains("token-"));
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, "1 primary not-base64-but-a-secret-looking-value\n").unwrap();
    let (ok, out) = cli(&["inspect", "--keyring", keys.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        out.contains("line 1") && !out.contains("secret-looking"),
        "{out}"
    );
    let (ok, out) = cli(&[
        "keyring",
        "promote",
        "--keyring",
        "/nonexistent/keys.txt",
        "3",
    ]);
    assert!(
        !ok && out.contains("cannot read /nonexistent/keys.txt"),
        "{out}"
    );
}
