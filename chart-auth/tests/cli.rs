//! The `chart-auth` key CLI: a full rotation on a FileStore, and no secret in its output.
#![cfg(feature = "cli")]

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use chart_auth::vault::{FileStore, KeyId, KeyStatus, Keyring, Vault};
use chart_auth::{AccessToken, ProviderId};

#[path = "../../tests/tests/support/leaks.rs"]
mod leaks;

#[path = "../../tests/tests/support/golden.rs"]
mod golden;

/// Everything every CLI run in this file printed, for the leak search.
static PRINTED: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chart-auth"))
        .args(args)
        .output()
        .unwrap();
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    PRINTED.lock().unwrap().push_str(&printed);
    (out.status.success(), printed)
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
        "client",
        Keyring::load(&keys).unwrap(),
        FileStore::open(&store).unwrap(),
    );
    for i in 0..5 {
        vault
            .put(
                &owner(),
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
    // Retiring key 1 while records are still under it is refused, and says why.
    let (ok, out) = cli(&["keyring", "retire", "--keyring", k, "--store", s, "1"]);
    assert!(
        !ok && out.contains("5 record(s) are still sealed under key 1") && out.contains("rewrap"),
        "{out}"
    );
    let (ok, out) = cli(&[
        "rewrap",
        "--keyring",
        k,
        "--store",
        s,
        "--client-id",
        "client",
    ]);
    assert!(
        ok && out.contains("rewrapped 5 record(s) to key 2"),
        "{out}"
    );
    let (ok, out) = cli(&["keyring", "retire", "--keyring", k, "--store", s, "1"]);
    assert!(ok, "{out}");
    assert!(
        !cli(&["keyring", "retire", "--keyring", k, "--force", "2"]).0,
        "the primary cannot retire"
    );

    let (ok, out) = cli(&[
        "inspect",
        "--keyring",
        k,
        "--store",
        s,
        "--client-id",
        "client",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("       1  retired   0") && out.contains("       2  primary   5"),
        "{out}"
    );
    assert!(out.contains("5 record(s) in all"));

    // Everything still opens with the rotated keyring, and nothing secret was printed.
    let ring = Keyring::load(&keys).unwrap();
    let text = ring.to_text().unwrap();
    let vault = Vault::new("client", ring, FileStore::open(&store).unwrap());
    for i in 0..5 {
        assert_eq!(
            vault
                .unseal(&owner(), &format!("acct-{i}"))
                .await
                .unwrap()
                .expose_secret(),
            format!("token-{i}")
        );
    }
    assert_eq!(
        vault
            .get(&owner(), "acct-0")
            .await
            .unwrap()
            .unwrap()
            .key_id(),
        KeyId(2)
    );
    // No key (in any form) and no token in anything the CLI printed.
    let mut secrets = leaks::keyring_keys(&text);
    secrets.extend((0..5).map(|i| format!("token-{i}").into_bytes()));
    let printed = PRINTED.lock().unwrap().clone();
    assert!(printed.contains("rewrapped 5 record(s)"));
    leaks::assert_no_leak(printed.as_bytes(), &secrets, "the CLI's output");
}

#[test]
fn bad_input_gives_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    std::fs::write(&keys, "1 primary not-base64-but-a-secret-looking-value\n").unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
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

/// A typo in `--store` fails; it never creates an empty store that looks fine.
#[test]
fn a_missing_store_is_an_error_not_a_new_empty_store() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let k = keys.to_str().unwrap();
    assert!(cli(&["keygen", "--keyring", k]).0);
    let typo = dir.path().join("tokns");
    let t = typo.to_str().unwrap();
    for args in [
        vec![
            "rewrap",
            "--keyring",
            k,
            "--store",
            t,
            "--client-id",
            "client",
        ],
        vec!["inspect", "--keyring", k, "--store", t],
        vec!["keyring", "retire", "--keyring", k, "--store", t, "1"],
    ] {
        let (ok, out) = cli(&args);
        assert!(
            !ok && out.contains("no store directory at"),
            "{args:?}: {out}"
        );
        assert!(!typo.exists(), "{args:?} created the store");
    }
}

/// The wrong keyring is named as the likely cause, with the records that fail.
#[tokio::test]
async fn a_wrong_keyring_is_reported_by_inspect_and_rewrap() {
    let dir = tempfile::tempdir().unwrap();
    let (right, wrong) = (dir.path().join("right.txt"), dir.path().join("wrong.txt"));
    let store = dir.path().join("tokens");
    let (r, w, s) = (
        right.to_str().unwrap(),
        wrong.to_str().unwrap(),
        store.to_str().unwrap(),
    );
    assert!(cli(&["keygen", "--keyring", r]).0);
    assert!(cli(&["keygen", "--keyring", w]).0);
    let vault = Vault::new(
        "client",
        Keyring::load(&right).unwrap(),
        FileStore::open(&store).unwrap(),
    );
    vault
        .put(
            &owner(),
            "acct-7",
            &ProviderId::Irs,
            &AccessToken::new("token-7"),
        )
        .await
        .unwrap();

    let (ok, out) = cli(&[
        "inspect",
        "--keyring",
        w,
        "--store",
        s,
        "--client-id",
        "client",
    ]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("\"acct-7\"") && out.contains("wrong keyring"),
        "{out}"
    );
    let (ok, out) = cli(&[
        "inspect",
        "--keyring",
        r,
        "--store",
        s,
        "--client-id",
        "client",
    ]);
    assert!(ok, "{out}");

    // Key 1 of the wrong ring names another key: the same id, other bytes. Promote a
    // fresh key so rewrap must unseal.
    assert!(cli(&["keyring", "add", "--keyring", w]).0);
    assert!(cli(&["keyring", "promote", "--keyring", w, "2"]).0);
    let (ok, out) = cli(&[
        "rewrap",
        "--keyring",
        w,
        "--store",
        s,
        "--client-id",
        "client",
    ]);
    assert!(
        !ok && out.contains("\"acct-7\"") && out.contains("wrong"),
        "{out}"
    );
    assert!(!out.contains("token-7"));
}

/// A retired key comes back with `keyring activate`.
#[tokio::test]
async fn a_retire_can_be_undone() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let k = keys.to_str().unwrap();
    assert!(cli(&["keygen", "--keyring", k]).0);
    assert!(cli(&["keyring", "add", "--keyring", k]).0);
    assert!(cli(&["keyring", "retire", "--keyring", k, "--force", "2"]).0);
    assert_eq!(
        Keyring::load(&keys).unwrap().keys().last(),
        Some((KeyId(2), KeyStatus::Retired))
    );
    let (ok, out) = cli(&["keyring", "activate", "--keyring", k, "2"]);
    assert!(ok, "{out}");
    assert_eq!(
        Keyring::load(&keys).unwrap().keys().last(),
        Some((KeyId(2), KeyStatus::Active))
    );
}

/// Like ssh, a key file others can read is refused, with the fix in the message.
#[test]
fn a_key_file_readable_by_others_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let k = keys.to_str().unwrap();
    assert!(cli(&["keygen", "--keyring", k]).0);
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (ok, out) = cli(&["inspect", "--keyring", k]);
    assert!(!ok && out.contains("chmod 600"), "{out}");
    assert!(Keyring::load(&keys).is_err());
}

/// The user whose accounts these records are.
fn owner() -> chart_auth::Owner {
    chart_auth::Owner::new("owner-test-user").unwrap()
}

/// Records from before owners existed: `rewrap` leaves them ownerless and says so, then
/// moves the ones `--owner-map` names to format v2 under their owner. The legacy record
/// is the v1 golden blob (`golden::GOLDEN_7`, keys 7 and 8).
#[tokio::test]
async fn rewrap_gives_legacy_records_the_owners_an_operator_names() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let store = dir.path().join("tokens");
    std::fs::write(
        &keys,
        "7 primary ERERERERERERERERERERERERERERERERERERERERERE=\n8 active IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\n",
    )
    .unwrap();
    std::fs::set_permissions(&keys, std::fs::Permissions::from_mode(0o600)).unwrap();
    let files = FileStore::open(&store).unwrap();
    // A record file as a version before owners wrote it: no owner field, hex name.
    let legacy = serde_json::json!({
        "version": 1, "client_id": "golden-client", "account_id": "golden-account",
        "provider_id": "turbotax", "stored_at": 1_700_000_000u64,
        "sealed": base64_of(golden::hex(golden::GOLDEN_7)),
    });
    std::fs::write(
        store.join(format!("{}.json", hex_of(b"golden-account"))),
        legacy.to_string(),
    )
    .unwrap();
    let (k, s) = (keys.to_str().unwrap(), store.to_str().unwrap());
    let rewrap = |extra: &[&str]| {
        let mut args = vec![
            "rewrap",
            "--keyring",
            k,
            "--store",
            s,
            "--client-id",
            "golden-client",
        ];
        args.extend_from_slice(extra);
        cli(&args)
    };
    let (ok, out) = rewrap(&[]);
    assert!(
        ok && out.contains("1 record(s) from before owners existed still have none")
            && out.contains("--owner-map"),
        "{out}"
    );
    let map = dir.path().join("owners.txt");
    std::fs::write(&map, "# account owner\ngolden-account user-alice\n").unwrap();
    let (ok, out) = rewrap(&["--owner-map", map.to_str().unwrap()]);
    assert!(
        ok && out.contains("rewrapped 1 record(s) to key 7"),
        "{out}"
    );
    assert!(!out.contains("from before owners"), "{out}");
    let vault = Vault::new("golden-client", Keyring::load(&keys).unwrap(), files);
    let alice = chart_auth::Owner::new("user-alice").unwrap();
    assert_eq!(
        vault
            .unseal(&alice, "golden-account")
            .await
            .unwrap()
            .expose_secret(),
        "golden-token-under-key-7"
    );
    // A map line that is not a pair, or names an account twice, is refused by line.
    std::fs::write(&map, "golden-account\n").unwrap();
    let (ok, out) = rewrap(&["--owner-map", map.to_str().unwrap()]);
    assert!(
        !ok && out.contains("line 1: expected `ACCOUNT_ID OWNER`"),
        "{out}"
    );
    std::fs::write(&map, "a x\na y\n").unwrap();
    let (ok, out) = rewrap(&["--owner-map", map.to_str().unwrap()]);
    assert!(
        !ok && out.contains("line 2: this account is named twice"),
        "{out}"
    );
}

fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn base64_of(bytes: Vec<u8>) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
