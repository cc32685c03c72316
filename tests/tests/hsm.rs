//! The PKCS#11 key source on real SoftHSM2 tokens: the whole flow with a wrapped
//! keyring, a key file that holds no data key in the clear, KEK rotation, and a typed
//! error for each way the HSM can refuse.
#![cfg(feature = "pkcs11")]

mod support;
use support::{key, owner};

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use chart_auth::vault::{
    FileStore, KeyId, KeySource, Keyring, Pkcs11Config, Plaintext, TokenStore, Vault, WrapMechanism,
};
use chart_auth::{ChartConnect, ConnectStateSigner, KeySourceError, VaultError};
use chart_mock_server::Scenario;
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::Attribute;
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;
use support::softhsm::{MODULE, PIN, fresh_token};

/// Known data keys, so that the key file can be searched for them.
const KEY_1: [u8; 32] = [0x5a; 32];
const KEY_2: [u8; 32] = *b"a second data key, 32 bytes long";

fn known_ring() -> Keyring {
    let mut ring = Keyring::from_key(KeyId(1), &KEY_1).unwrap();
    ring.add_key_bytes(KeyId(2), &KEY_2).unwrap();
    ring
}

fn source_error(result: Result<impl std::fmt::Debug, VaultError>) -> KeySourceError {
    match result {
        Err(VaultError::KeySource(e)) => e,
        other => panic!("expected a key-source error, got {other:?}"),
    }
}

fn holds_any(file: &[u8], key: &[u8]) -> bool {
    support::leaks::find_leak(file, key).is_some()
}

#[test]
fn the_key_file_holds_no_data_key_in_the_clear() {
    let token = fresh_token();
    let hsm: Arc<dyn KeySource> = Arc::new(token.kek("kek"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys.txt");

    // The search finds the keys where they are in the clear...
    let ring = known_ring();
    ring.save(&path).unwrap();
    let plain = std::fs::read(&path).unwrap();
    assert!(holds_any(&plain, &KEY_1) && holds_any(&plain, &KEY_2));

    // ...and not once they are wrapped.
    let mut ring = ring;
    ring.set_key_source(hsm.clone());
    ring.save(&path).unwrap();
    let wrapped = std::fs::read(&path).unwrap();
    assert!(!holds_any(&wrapped, &KEY_1), "key 1 is in the wrapped file");
    assert!(!holds_any(&wrapped, &KEY_2), "key 2 is in the wrapped file");
    assert!(String::from_utf8_lossy(&wrapped).contains("\nkek pkcs11 aes-key-wrap-pad\n"));
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // It loads back to the same keys: a record sealed before opens after.
    let id = chart_auth::vault::RecordIdentity {
        client_id: "c",
        owner: b"owner-test-user",
        account_id: "a",
        provider_id: "irs",
    };
    let sealed = known_ring().seal(&id, b"token").unwrap();
    let again = Keyring::load_with(&path, hsm).unwrap();
    assert_eq!(&again.unseal(&id, &sealed).unwrap()[..], b"token");
}

#[tokio::test]
async fn the_whole_flow_runs_on_a_wrapped_keyring() {
    let token = fresh_token();
    let hsm: Arc<dyn KeySource> = Arc::new(token.kek("kek"));
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let mut ring = Keyring::generate();
    ring.set_key_source(hsm);
    ring.save(&keys).unwrap();

    let env = support::env().await;
    // A fresh source, as a restarted backend would open it.
    let reopened = Arc::new(token.config("kek").open().unwrap());
    let vault = Arc::new(Vault::new(
        env.client.config().client_id(),
        Keyring::load_with(&keys, reopened).unwrap(),
        FileStore::open(dir.path().join("tokens")).unwrap(),
    ));
    let chart = ChartConnect::new(
        env.client.clone(),
        ConnectStateSigner::from_key(&support::STATE_KEY).unwrap(),
        vault.clone(),
    );
    let code = env.mint(false, Scenario::Success);
    let start = chart
        .begin_connect(chart_auth::Flow::Embedded, support::SESSION, &owner())
        .unwrap();
    let received = chart
        .receive_code(
            chart_auth::AuthorizationCode::new(&code),
            &start.state,
            support::SESSION,
            &owner(),
            chart_auth::FlowKind::Embedded,
        )
        .unwrap();
    let stored = chart.complete(received).await.unwrap();

    // Opened from the store through a keyring loaded anew from the HSM.
    let restarted = Vault::new(
        env.client.config().client_id(),
        Keyring::load_with(&keys, Arc::new(token.config("kek").open().unwrap())).unwrap(),
        FileStore::open(dir.path().join("tokens")).unwrap(),
    );
    let token_value = restarted
        .unseal(&owner(), stored.account_id())
        .await
        .unwrap();
    let introspected = env.client.introspect_token(&token_value).await.unwrap();
    assert_eq!(introspected.taxpayer_id, stored.account_id());
}

#[tokio::test]
async fn kek_rotation_keeps_every_record_opening() {
    let token = fresh_token();
    let old: Arc<dyn KeySource> = Arc::new(token.kek("kek-1"));
    let new: Arc<dyn KeySource> = Arc::new(token.kek("kek-2"));
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let mut ring = known_ring();
    ring.set_key_source(old.clone());
    ring.save(&keys).unwrap();

    let store = FileStore::open(dir.path().join("tokens")).unwrap();
    let vault = Vault::new(
        "c",
        Keyring::load_with(&keys, old.clone()).unwrap(),
        store.clone(),
    );
    let mut sealed_before = Vec::new();
    for n in 0..5 {
        let account = format!("account-{n}");
        vault
            .put(
                &owner(),
                &account,
                &chart_auth::ProviderId::from("irs"),
                &chart_auth::AccessToken::new(format!("token-{n}")),
            )
            .await
            .unwrap();
        sealed_before.push(store.get(&key(&account)).await.unwrap().unwrap().sealed);
    }

    let mut ring = Keyring::load_with(&keys, old.clone()).unwrap();
    ring.set_key_source(new.clone());
    ring.save(&keys).unwrap();

    let rotated = Vault::new("c", Keyring::load_with(&keys, new).unwrap(), store.clone());
    for (n, before) in sealed_before.iter().enumerate() {
        let account = format!("account-{n}");
        assert_eq!(
            rotated
                .unseal(&owner(), &account)
                .await
                .unwrap()
                .expose_secret(),
            format!("token-{n}")
        );
        let after = store.get(&key(&account)).await.unwrap().unwrap().sealed;
        assert_eq!(&after, before, "the sealed record was not touched");
    }
    // The old KEK no longer opens the keyring.
    assert!(matches!(
        source_error(Keyring::load_with(&keys, old)),
        KeySourceError::UnwrapFailed(KeyId(1))
    ));
}

#[test]
fn another_tokens_kek_and_a_changed_file_do_not_unwrap() {
    let ours = fresh_token();
    let theirs = fresh_token();
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let mut ring = known_ring();
    ring.set_key_source(Arc::new(ours.kek("kek")));
    ring.save(&keys).unwrap();

    // A KEK of the same label in another token.
    let foreign = Arc::new(theirs.kek("kek"));
    assert!(matches!(
        source_error(Keyring::load_with(&keys, foreign)),
        KeySourceError::UnwrapFailed(KeyId(1))
    ));

    // One changed character in key 2's wrapped bytes.
    let text = std::fs::read_to_string(&keys).unwrap();
    let line = text.lines().find(|l| l.starts_with("2 ")).unwrap();
    let mut changed_line = line.to_owned().into_bytes();
    let at = changed_line.len() - 6;
    changed_line[at] = if changed_line[at] == b'A' { b'B' } else { b'A' };
    let changed = text.replace(line, &String::from_utf8(changed_line).unwrap());
    std::fs::write(&keys, changed).unwrap();
    let ours_again = Arc::new(ours.config("kek").open().unwrap());
    assert!(matches!(
        source_error(Keyring::load_with(&keys, ours_again)),
        KeySourceError::UnwrapFailed(KeyId(2))
    ));
}

#[test]
fn each_way_the_hsm_refuses_has_its_own_error() {
    let token = fresh_token();
    token.kek("kek");
    let open = |config: Pkcs11Config| config.open().map(|_| ()).unwrap_err();

    let e = open(Pkcs11Config::new("/nonexistent/libpkcs11.so", &token.label, "kek").pin(PIN));
    assert!(matches!(e, KeySourceError::ModuleNotLoaded { .. }), "{e:?}");
    // A file that is not a PKCS#11 module at all.
    let e = open(Pkcs11Config::new("/etc/hostname", &token.label, "kek").pin(PIN));
    assert!(matches!(e, KeySourceError::ModuleNotLoaded { .. }), "{e:?}");

    let e = open(Pkcs11Config::new(MODULE, "no-such-token", "kek").pin(PIN));
    assert!(matches!(e, KeySourceError::TokenNotFound { ref label } if label == "no-such-token"));

    let e = open(Pkcs11Config::new(MODULE, &token.label, "kek").pin("wrong-pin-1"));
    assert!(matches!(e, KeySourceError::PinRefused), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("wrong-pin-1"));

    let e = open(Pkcs11Config::new(MODULE, &token.label, "kek"));
    assert!(matches!(e, KeySourceError::PinMissing(_)), "{e:?}");

    let e = open(token.config("no-such-kek"));
    assert!(matches!(e, KeySourceError::KekMissing { ref label } if label == "no-such-kek"));

    // A KEK that could leave the token is refused, as is one that may not wrap.
    make_bad_key(&token.label, "extractable", true, true);
    let e = open(token.config("extractable"));
    assert!(
        matches!(e, KeySourceError::KekUnusable { reason, .. } if reason.contains("extractable")),
        "{e:?}"
    );
    make_bad_key(&token.label, "no-wrap", false, false);
    let e = open(token.config("no-wrap"));
    assert!(
        matches!(e, KeySourceError::KekUnusable { reason, .. } if reason.contains("wrap")),
        "{e:?}"
    );
    // Two keys under one label: which one wraps would be a guess.
    token.config("twice").create_kek().unwrap();
    make_bad_key(&token.label, "twice", false, true);
    let e = open(token.config("twice"));
    assert!(
        matches!(e, KeySourceError::KekUnusable { reason, .. } if reason.contains("more than one")),
        "{e:?}"
    );
    // `create_kek` never makes a second key under a taken label.
    assert!(matches!(
        token.config("kek").create_kek(),
        Err(KeySourceError::KekUnusable { .. })
    )); // A KEK must be an AES key, and the GCM mechanism needs one that may encrypt and
    // decrypt. (Raw cryptoki sessions stay in this one test: a second context in a
    // test running alongside would finalize the module under the others.)
    make_key(
        &token.label,
        Mechanism::GenericSecretKeyGen,
        &[
            Attribute::Label(b"generic".to_vec()),
            Attribute::Extractable(false),
        ],
    );
    make_key(
        &token.label,
        Mechanism::AesKeyGen,
        &[
            Attribute::Label(b"no-encrypt".to_vec()),
            Attribute::Extractable(false),
            Attribute::Encrypt(false),
            Attribute::Decrypt(false),
        ],
    );
    let e = open(token.config("generic"));
    assert!(
        matches!(e, KeySourceError::KekUnusable { reason, .. } if reason.contains("not an AES key")),
        "{e:?}"
    );
    let e = open(token.config("no-encrypt").mechanism(WrapMechanism::AesGcm));
    assert!(
        matches!(e, KeySourceError::KekUnusable { reason, .. } if reason.contains("encrypt and decrypt")),
        "{e:?}"
    );
}

/// An AES key made straight through cryptoki, with the attributes a KEK must not have.
fn make_bad_key(token_label: &str, label: &str, extractable: bool, wrap: bool) {
    let context = Pkcs11::new(MODULE).unwrap();
    let _ = context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = context
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| context.get_token_info(*s).unwrap().label() == token_label)
        .unwrap();
    let session = context.open_rw_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::new(PIN.into())));
    session
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::ValueLen(32u64.into()),
                Attribute::Extractable(extractable),
                Attribute::Wrap(wrap),
                Attribute::Unwrap(wrap),
            ],
        )
        .unwrap();
}

#[test]
fn aes_gcm_wraps_where_key_wrap_is_not_wanted() {
    let token = fresh_token();
    token.config("kek").create_kek().unwrap();
    let gcm: Arc<dyn KeySource> = Arc::new(
        token
            .config("kek")
            .mechanism(WrapMechanism::AesGcm)
            .open()
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let mut ring = known_ring();
    ring.set_key_source(gcm.clone());
    ring.save(&keys).unwrap();
    let text = std::fs::read(&keys).unwrap();
    assert!(String::from_utf8_lossy(&text).contains("\nkek pkcs11 aes-gcm\n"));
    assert!(!holds_any(&text, &KEY_1) && !holds_any(&text, &KEY_2));
    // Two saves draw fresh IVs: the wrapped keys differ, and both load.
    ring.save(&keys).unwrap();
    assert_ne!(std::fs::read(&keys).unwrap(), text);
    // The file names its mechanism, so a source that prefers key wrap still opens it.
    let default = Arc::new(token.config("kek").open().unwrap());
    assert_eq!(default.mechanism(), WrapMechanism::AesKeyWrapPad);
    let ring = Keyring::load_with(&keys, default).unwrap();
    assert_eq!(ring.keys().count(), 2);
}

#[test]
fn plaintext_and_wrapped_keyrings_are_never_confused() {
    let token = fresh_token();
    let hsm: Arc<dyn KeySource> = Arc::new(token.kek("kek"));
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    known_ring().save(&keys).unwrap();
    assert!(matches!(
        source_error(Keyring::load_with(&keys, hsm.clone())),
        KeySourceError::Mismatch { .. }
    ));
    let mut ring = known_ring();
    ring.set_key_source(hsm);
    ring.save(&keys).unwrap();
    let e = source_error(Keyring::load(&keys));
    assert!(matches!(e, KeySourceError::Mismatch { .. }));
    assert!(e.to_string().contains("--pkcs11-module"), "{e}");
    assert!(matches!(
        source_error(Keyring::load_with(&keys, Arc::new(Plaintext))),
        KeySourceError::Mismatch { .. }
    ));
}

#[test]
fn the_pin_comes_from_a_private_file_and_never_shows() {
    let token = fresh_token();
    token.kek("kek");
    let dir = tempfile::tempdir().unwrap();
    let pin_file = dir.path().join("pin");
    std::fs::write(&pin_file, format!("{PIN}\n")).unwrap();
    std::fs::set_permissions(&pin_file, PermissionsExt::from_mode(0o644)).unwrap();
    let config = Pkcs11Config::new(MODULE, &token.label, "kek");
    let e = config.pin_file(&pin_file).unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");

    std::fs::set_permissions(&pin_file, PermissionsExt::from_mode(0o600)).unwrap();
    let config = Pkcs11Config::new(MODULE, &token.label, "kek")
        .pin_file(&pin_file)
        .unwrap();
    assert!(!format!("{config:?}").contains(PIN));
    let source = config.open().unwrap();
    let ring_debug = {
        let mut ring = known_ring();
        ring.set_key_source(Arc::new(source));
        format!("{ring:?}")
    };
    assert!(!ring_debug.contains(PIN));
    assert!(!holds_any(ring_debug.as_bytes(), &KEY_1));
    assert!(ring_debug.contains("pkcs11"), "{ring_debug}");
}

/// What an HSM key source shows of itself: where the key is and how it wraps, never
/// the PIN.
#[test]
fn an_hsm_source_describes_its_key_and_token_and_never_the_pin() {
    let token = fresh_token();
    let hsm = token.kek("kek-shown");
    let shown = format!("{hsm:?}");
    assert!(shown.starts_with("Pkcs11KeySource"), "{shown}");
    for part in ["kek-shown", token.label.as_str(), "AesKeyWrapPad"] {
        assert!(shown.contains(part), "{part} is not in {shown}");
    }
    assert!(!shown.contains(PIN), "{shown}");
    assert_eq!(
        hsm.describe(),
        format!(
            "key-encryption key \"kek-shown\" in token {:?} (aes-key-wrap-pad)",
            token.label
        )
    );
    assert!(!hsm.describe().contains(PIN));
}

/// With AES-GCM, each wrapped key is bound to its key id (the AAD): wrapped keys swapped
/// between two lines of the file do not unwrap.
#[test]
fn gcm_wrapped_keys_swapped_between_ids_do_not_unwrap() {
    let token = fresh_token();
    token.config("kek").create_kek().unwrap();
    let gcm: Arc<dyn KeySource> = Arc::new(
        token
            .config("kek")
            .mechanism(WrapMechanism::AesGcm)
            .open()
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    let mut ring = known_ring();
    ring.set_key_source(gcm.clone());
    ring.save(&keys).unwrap();
    let text = std::fs::read_to_string(&keys).unwrap();
    let wrapped = |id: &str| {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{id} ")))
            .unwrap();
        line.rsplit(' ').next().unwrap().to_owned()
    };
    let (one, two) = (wrapped("1"), wrapped("2"));
    let swapped = text
        .replace(&one, "<one>")
        .replace(&two, &one)
        .replace("<one>", &two);
    assert_ne!(swapped, text);
    std::fs::write(&keys, swapped).unwrap();
    assert!(
        Keyring::load_with(&keys, gcm).is_err(),
        "a wrapped key opened under another key id"
    );
}

/// A 32-byte token key made straight through cryptoki with `mechanism` and `attributes`,
/// in a session that ends at once (as `make_bad_key`'s does).
fn make_key(token_label: &str, mechanism: Mechanism<'_>, attributes: &[Attribute]) {
    let context = Pkcs11::new(MODULE).unwrap();
    let _ = context.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK));
    let slot = context
        .get_slots_with_token()
        .unwrap()
        .into_iter()
        .find(|s| context.get_token_info(*s).unwrap().label() == token_label)
        .unwrap();
    let session = context.open_rw_session(slot).unwrap();
    let _ = session.login(UserType::User, Some(&AuthPin::new(PIN.into())));
    let mut all = vec![Attribute::Token(true), Attribute::ValueLen(32u64.into())];
    all.extend_from_slice(attributes);
    session.generate_key(&mechanism, &all).unwrap();
}
