//! The vault: Wycheproof vectors, frozen golden blobs, tamper and swap tests, Tink's
//! four-phase rotation, the file store's guarantees, and a model-based property test.

mod support;
use support::{key, owner};

use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use chart_auth::fuzzing::{decrypt_detached, encrypt_detached};
use chart_auth::vault::{
    Expect, FileStore, KeyId, KeyStatus, Keyring, MemoryStore, RecordIdentity, RecordKey,
    StoredRecord, TokenStore, Vault,
};
use chart_auth::{AccessToken, Error, ProviderId, StoreError, VaultError};
use proptest::prelude::*;
use sha2::Digest;
use support::golden::{GOLDEN_7, GOLDEN_8, GOLDEN_V2_7, GOLDEN_V2_8, ID, ID_V2, golden_ring, hex};

#[test]
fn wycheproof_aes_256_gcm_96_bit_iv_vectors() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/wycheproof/");
    let json = std::fs::read(format!("{dir}aes_gcm_test.json")).unwrap();
    let pinned = std::fs::read_to_string(format!("{dir}aes_gcm_test.json.sha256")).unwrap();
    let digest: String = sha2::Sha256::digest(&json)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(
        pinned.split_whitespace().next(),
        Some(digest.as_str()),
        "the vendored vectors changed"
    );

    let doc: serde_json::Value = serde_json::from_slice(&json).unwrap();
    let (mut valid, mut invalid) = (0, 0);
    for group in doc["testGroups"].as_array().unwrap() {
        if group["keySize"] != 256 || group["ivSize"] != 96 || group["tagSize"] != 128 {
            continue;
        }
        for t in group["tests"].as_array().unwrap() {
            let field = |k: &str| hex(t[k].as_str().unwrap());
            let cipher = Aes256Gcm::new_from_slice(&field("key")).unwrap();
            let nonce: [u8; 12] = field("iv").try_into().unwrap();
            let (aad, msg, ct, tag) = (field("aad"), field("msg"), field("ct"), field("tag"));
            let tag: [u8; 16] = tag.try_into().unwrap();
            let mut buf = ct.clone();
            let opened = decrypt_detached(&cipher, &nonce, &aad, &mut buf, &tag);
            match t["result"].as_str().unwrap() {
                "valid" | "acceptable" => {
                    opened.unwrap_or_else(|e| panic!("tcId {}: {e}", t["tcId"]));
                    assert_eq!(buf, msg, "tcId {}", t["tcId"]);
                    let mut enc = msg.clone();
                    let got = encrypt_detached(&cipher, &nonce, &aad, &mut enc).unwrap();
                    assert_eq!((enc, got), (ct, tag), "tcId {}", t["tcId"]);
                    valid += 1;
                }
                _ => {
                    assert!(
                        matches!(opened, Err(VaultError::Tampered)),
                        "tcId {} opened",
                        t["tcId"]
                    );
                    invalid += 1;
                }
            }
        }
    }
    assert!(
        valid >= 20 && invalid >= 10,
        "{valid} valid, {invalid} invalid cases ran"
    );
}

#[test]
fn golden_blobs_keep_opening() {
    let ring = golden_ring();
    assert_eq!(
        &ring.unseal(&ID, &hex(GOLDEN_7)).unwrap()[..],
        b"golden-token-under-key-7"
    );
    assert_eq!(
        &ring.unseal(&ID, &hex(GOLDEN_8)).unwrap()[..],
        b"golden-token-under-key-8"
    );
    assert_eq!(
        &ring.unseal(&ID_V2, &hex(GOLDEN_V2_7)).unwrap()[..],
        b"golden-v2-token-under-key-7"
    );
    assert_eq!(
        &ring.unseal(&ID_V2, &hex(GOLDEN_V2_8)).unwrap()[..],
        b"golden-v2-token-under-key-8"
    );
    // New seals are v2, 24-byte nonce: 1 + 4 + 24 + plaintext + 16 bytes.
    let sealed = ring.seal(&ID_V2, b"t").unwrap();
    assert_eq!((sealed[0], sealed.len()), (2, 1 + 4 + 24 + 1 + 16));
    // The keyring text format is frozen too.
    let text = "7 primary ERERERERERERERERERERERERERERERERERERERERERE=\n8 active IiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiIiI=\n";
    let parsed = Keyring::parse(text).unwrap();
    assert_eq!(
        &parsed.unseal(&ID, &hex(GOLDEN_8)).unwrap()[..],
        b"golden-token-under-key-8"
    );
}

#[test]
fn every_flipped_bit_and_truncation_is_refused() {
    let ring = golden_ring();
    for (id, blob) in [(ID, hex(GOLDEN_7)), (ID_V2, hex(GOLDEN_V2_7))] {
        for bit in 0..blob.len() * 8 {
            let mut bad = blob.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let err = ring.unseal(&id, &bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    VaultError::Tampered
                        | VaultError::UnknownVersion(_)
                        | VaultError::UnknownKey(_)
                        | VaultError::Truncated(_)
                ),
                "bit {bit}: {err:?}"
            );
        }
        for len in 0..blob.len() {
            assert!(
                ring.unseal(&id, &blob[..len]).is_err(),
                "length {len} opened"
            );
        }
    }
}

/// The owner is bound: a v2 record moved under another owner does not open, and a v1
/// record (which binds no owner) opens for no owner at all, only as a legacy record.
#[test]
fn owners_are_bound_and_v1_records_belong_to_none() {
    let ring = golden_ring();
    for owner in [
        &b"another-owner"[..],
        b"",
        b"golden-owne",
        b"golden-owner\0",
    ] {
        let moved = RecordIdentity { owner, ..ID_V2 };
        assert!(
            matches!(
                ring.unseal(&moved, &hex(GOLDEN_V2_7)),
                Err(VaultError::Tampered)
            ),
            "{moved:?}"
        );
    }
    let claimed = RecordIdentity {
        owner: b"golden-owner",
        ..ID
    };
    assert!(matches!(
        ring.unseal(&claimed, &hex(GOLDEN_7)),
        Err(VaultError::Tampered)
    ));
}

#[test]
fn swapped_key_ids_and_moved_records_fail() {
    let ring = golden_ring();
    let mut swapped = hex(GOLDEN_7);
    swapped[1..5].copy_from_slice(&8u32.to_be_bytes());
    assert!(matches!(
        ring.unseal(&ID, &swapped),
        Err(VaultError::Tampered)
    ));
    let blob = hex(GOLDEN_7);
    for moved in [
        RecordIdentity {
            account_id: "another-account",
            ..ID
        },
        RecordIdentity {
            client_id: "another-client",
            ..ID
        },
        RecordIdentity {
            provider_id: "irs",
            ..ID
        },
    ] {
        assert!(
            matches!(ring.unseal(&moved, &blob), Err(VaultError::Tampered)),
            "{moved:?}"
        );
    }
    let mut unknown_version = blob.clone();
    unknown_version[0] = 3;
    assert!(matches!(
        ring.unseal(&ID, &unknown_version),
        Err(VaultError::UnknownVersion(3))
    ));
    // A v1 blob relabelled v2 is read as v2 and fails authentication.
    let mut relabelled = blob.clone();
    relabelled[0] = 2;
    assert!(matches!(
        ring.unseal(&ID, &relabelled),
        Err(VaultError::Tampered)
    ));
    let mut unknown_key = blob;
    unknown_key[1..5].copy_from_slice(&99u32.to_be_bytes());
    assert!(matches!(
        ring.unseal(&ID, &unknown_key),
        Err(VaultError::UnknownKey(KeyId(99)))
    ));
}

#[tokio::test]
async fn tinks_four_phase_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::new(
        "c",
        Keyring::generate(),
        FileStore::open(dir.path()).unwrap(),
    );
    let old = vault.with_keyring(|k| k.primary());
    let provider = ProviderId::Irs;
    // A blob sealed under the old key and kept aside, as a backup would keep it.
    let kept_aside = vault.with_keyring(|k| k.seal(&ID, b"backup")).unwrap();
    vault
        .put(&owner(), "a1", &provider, &AccessToken::new("t1"))
        .await
        .unwrap();

    // 1. Add a key: it does not seal yet, and old records open.
    let new = vault.update_keyring(|k| k.add_key()).unwrap();
    let s2 = vault
        .put(&owner(), "a2", &provider, &AccessToken::new("t2"))
        .await
        .unwrap();
    assert_eq!(s2.key_id(), old);
    // 2. Promote it: new records use it.
    vault.update_keyring(|k| k.promote(new)).unwrap();
    let s3 = vault
        .put(&owner(), "a3", &provider, &AccessToken::new("t3"))
        .await
        .unwrap();
    assert_eq!(s3.key_id(), new);
    // 3. Both keys open.
    for (a, t) in [("a1", "t1"), ("a2", "t2"), ("a3", "t3")] {
        assert_eq!(vault.unseal(&owner(), a).await.unwrap().expose_secret(), t);
    }
    let report = vault.rewrap(|_, _| {}).await.unwrap();
    assert_eq!(
        (report.rewrapped, report.unchanged, report.raced),
        (2, 1, 0)
    );
    // 4. Retire the old key: everything still opens, because everything was rewrapped.
    vault.update_keyring(|k| k.retire(old)).unwrap();
    for (a, t) in [("a1", "t1"), ("a2", "t2"), ("a3", "t3")] {
        assert_eq!(vault.unseal(&owner(), a).await.unwrap().expose_secret(), t);
        assert_eq!(vault.get(&owner(), a).await.unwrap().unwrap().key_id(), new);
    }
    // A blob still under the retired key is refused, before any decryption; it opens
    // again once the key is activated.
    assert!(matches!(
        vault.with_keyring(|k| k.unseal(&ID, &kept_aside)),
        Err(VaultError::KeyRetired(k)) if k == old
    ));
    let ring_text = vault.with_keyring(|k| k.to_text().unwrap());
    let mut ring = Keyring::parse(&ring_text).unwrap();
    assert!(
        matches!(ring.retire(new), Err(VaultError::RetirePrimary(k)) if k == new),
        "the primary cannot retire"
    );
    assert!(matches!(
        ring.promote(old),
        Err(VaultError::PromoteRetired(k)) if k == old
    ));
    ring.activate(old).unwrap();
    assert_eq!(&ring.unseal(&ID, &kept_aside).unwrap()[..], b"backup");
    ring.retire(old).unwrap();
    assert_eq!(
        ring.keys().collect::<Vec<_>>(),
        [(old, KeyStatus::Retired), (new, KeyStatus::Primary)]
    );
}

#[tokio::test]
async fn file_store_is_private_durable_and_reports_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path().join("tokens")).unwrap();
    let vault = Vault::new("c", Keyring::generate(), store.clone());
    let token = "plaintext-token-4f1c9a";
    vault
        .put(
            &owner(),
            "acct/../1",
            &ProviderId::TurboTax,
            &AccessToken::new(token),
        )
        .await
        .unwrap();
    let path = store.record_path(&key("acct/../1"));
    assert_eq!(
        path.parent(),
        Some(store.dir()),
        "account ids cannot escape the directory"
    );
    assert_eq!(
        std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::metadata(store.dir()).unwrap().permissions().mode() & 0o777,
        0o700
    );
    for entry in std::fs::read_dir(store.dir()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(token),
            "plaintext on disk"
        );
    }
    assert_eq!(store.list().await.unwrap(), [key("acct/../1")]);

    // A torn or corrupt file is reported, never dropped silently.
    std::fs::write(store.record_path(&key("broken")), b"{\"version\": 1, \"acc").unwrap();
    assert!(matches!(
        store.get(&key("broken")).await,
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        vault.list(&owner()).await,
        Err(Error::Vault(VaultError::Store(StoreError::Corrupt { .. })))
    ));

    // Stale temp files from a killed writer are cleaned when the store opens.
    std::fs::write(store.dir().join(".tmp-deadbeef"), b"half a record").unwrap();
    FileStore::open(store.dir()).unwrap();
    assert!(!store.dir().join(".tmp-deadbeef").exists());
}

#[tokio::test]
async fn compare_and_swap_refuses_stale_writes() {
    for store in [Box::new(MemoryStore::default()) as Box<dyn std::any::Any>] {
        let store = store.downcast::<MemoryStore>().unwrap();
        let vault = Vault::new("c", Keyring::generate(), *store);
        vault
            .put(&owner(), "a", &ProviderId::Irs, &AccessToken::new("t"))
            .await
            .unwrap();
        let mut record = vault.store().get(&key("a")).await.unwrap().unwrap();
        assert_eq!(record.version, 1);
        record.version = 0;
        assert_eq!(
            vault
                .store()
                .put(&record, Expect::Version(1))
                .await
                .unwrap(),
            2
        );
        assert!(matches!(
            vault.store().put(&record, Expect::Version(1)).await,
            Err(StoreError::Conflict)
        ));
        assert!(matches!(
            vault.store().put(&record, Expect::Absent).await,
            Err(StoreError::Conflict)
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let vault = Vault::new("c", Keyring::generate(), store.clone());
    vault
        .put(&owner(), "a", &ProviderId::Irs, &AccessToken::new("t"))
        .await
        .unwrap();
    let record = store.get(&key("a")).await.unwrap().unwrap();
    // Many concurrent writers expecting version 1: exactly one wins.
    let results = futures_join(16, |_| {
        let (store, record) = (store.clone(), record.clone());
        async move { store.put(&record, Expect::Version(1)).await }
    })
    .await;
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(StoreError::Conflict)))
    );
}

async fn futures_join<F, T>(n: usize, f: impl Fn(usize) -> F) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|i| tokio::spawn(f(i))).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[test]
fn the_nonce_budget_is_enforced() {
    let mut ring = Keyring::generate();
    ring.set_seal_limit(3);
    for _ in 0..3 {
        ring.seal(&ID, b"t").unwrap();
    }
    let primary = ring.primary();
    assert!(
        matches!(ring.seal(&ID, b"t"), Err(VaultError::NonceBudgetExhausted(k)) if k == primary)
    );
    assert_eq!(
        ring.seals(primary),
        Some(3),
        "a refused seal is not counted"
    );
    assert!(matches!(
        ring.seal(&ID, b"t"),
        Err(VaultError::NonceBudgetExhausted(_))
    ));
    assert_eq!(ring.seals(primary), Some(3));
    let fresh = ring.add_key().unwrap();
    ring.promote(fresh).unwrap();
    ring.seal(&ID, b"t").expect("a rotated key seals again");
}

#[test]
fn keyring_errors_and_debug_never_show_key_material() {
    let ring = golden_ring();
    let debug = format!("{ring:?}");
    assert!(
        !debug.contains("ERER") && !debug.contains("IiIi"),
        "{debug}"
    );
    // Keys of distinct bytes, searched for in every form (bytes, hex, base64, a byte
    // list); the Debug output names ids and statuses only.
    let key_a: Vec<u8> = (1..=32).collect();
    let key_b: Vec<u8> = (101..=132).collect();
    let mut ring = Keyring::from_key(KeyId(41), &key_a).unwrap();
    ring.add_key_bytes(KeyId(42), &key_b).unwrap();
    let debug = format!("{ring:?} {ring:#?}");
    support::leaks::assert_no_leak(debug.as_bytes(), &[key_a, key_b], "Keyring's Debug");
    assert!(
        debug.contains("41") && debug.contains("primary") && debug.contains("active"),
        "the Debug output still names the keys: {debug}"
    );
    // A vault's Debug names its client and its keyring's ids, and no key.
    let key_c: Vec<u8> = (201..=232).collect();
    let vault = Vault::new(
        "debugged-client",
        Keyring::from_key(KeyId(77), &key_c).unwrap(),
        MemoryStore::default(),
    );
    let debug = format!("{vault:?}");
    support::leaks::assert_no_leak(debug.as_bytes(), &[key_c], "Vault's Debug");
    assert!(
        debug.contains("debugged-client") && debug.contains("77") && debug.contains("primary"),
        "{debug}"
    );
    let secret_looking = "c2VjcmV0LWtleS1tYXRlcmlhbC10aGF0LWlzLXRvby1sb25nLXRvLWJlLWEta2V5";
    for text in [
        format!("1 primary {secret_looking}"),
        format!("1 primry {secret_looking}"),
        format!("x primary {secret_looking}"),
        secret_looking.to_owned(),
        "1 active ERERERERERERERERERERERERERERERERERERERERERE=".to_owned(),
    ] {
        let err = Keyring::parse(&text).unwrap_err().to_string();
        assert!(
            !err.contains(secret_looking) && !err.contains("ERER"),
            "{err}"
        );
    }
}

#[derive(Clone, Debug)]
enum Op {
    Put(u8, u8),
    Open(u8),
    Delete(u8),
    AddKey,
    Promote(u8),
    Retire(u8),
    Rewrap,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        // Weighted so that opens under a retired key and failed rewraps come often.
        4 => (0..4u8, 0..8u8).prop_map(|(a, t)| Op::Put(a, t)),
        4 => (0..4u8).prop_map(Op::Open),
        1 => (0..4u8).prop_map(Op::Delete),
        3 => Just(Op::AddKey),
        3 => (0..4u8).prop_map(Op::Promote),
        3 => (0..4u8).prop_map(Op::Retire),
        3 => Just(Op::Rewrap),
        1 => Just(Op::Reopen),
    ]
}

/// The reference model: which token each account holds under which key, and the keys.
#[derive(Default)]
struct Model {
    records: std::collections::BTreeMap<String, (String, u32)>,
    keys: std::collections::BTreeMap<u32, KeyStatus>,
    primary: u32,
}

proptest! {
    // 256 cases by default; PROPTEST_CASES raises it (ProptestConfig::default reads it).
    #![proptest_config(ProptestConfig::default())]

    #[test]
    fn vault_agrees_with_its_model(ops in proptest::collection::vec(op(), 1..30)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let dir = tempfile::tempdir().unwrap();
            let mut vault = Vault::new("c", Keyring::generate(), FileStore::open(dir.path()).unwrap());
            let mut model = Model { primary: 1, ..Model::default() };
            model.keys.insert(1, KeyStatus::Primary);
            let account = |a: u8| format!("acct-{a}");
            for op in ops {
                match op {
                    Op::Put(a, t) => {
                        let token = format!("token-{t}");
                        let stored = vault.put(&owner(), &account(a), &ProviderId::Irs, &AccessToken::new(token.as_str())).await.unwrap();
                        assert_eq!(stored.key_id(), KeyId(model.primary));
                        model.records.insert(account(a), (token, model.primary));
                    }
                    Op::Open(a) => {
                        let got = vault.unseal(&owner(), &account(a)).await;
                        match model.records.get(&account(a)) {
                            None => assert!(matches!(got, Err(Error::Vault(VaultError::NotFound)))),
                            Some((_, k)) if model.keys[k] == KeyStatus::Retired => {
                                assert!(matches!(got, Err(Error::Vault(VaultError::KeyRetired(_)))))
                            }
                            Some((t, _)) => assert_eq!(got.unwrap().expose_secret(), t),
                        }
                    }
                    Op::Delete(a) => {
                        assert_eq!(vault.delete(&owner(), &account(a)).await.unwrap(), model.records.remove(&account(a)).is_some());
                    }
                    Op::AddKey => {
                        let id = vault.update_keyring(|k| k.add_key()).unwrap();
                        let expected = model.keys.keys().next_back().unwrap() + 1;
                        assert_eq!(id, KeyId(expected));
                        model.keys.insert(expected, KeyStatus::Active);
                    }
                    Op::Promote(i) => {
                        let id = 1 + u32::from(i);
                        let got = vault.update_keyring(|k| k.promote(KeyId(id)));
                        match model.keys.get(&id) {
                            Some(KeyStatus::Active | KeyStatus::Primary) => {
                                got.unwrap();
                                model.keys.insert(model.primary, KeyStatus::Active);
                                model.keys.insert(id, KeyStatus::Primary);
                                model.primary = id;
                            }
                            Some(KeyStatus::Retired) => {
                                assert!(matches!(got, Err(VaultError::PromoteRetired(k)) if k == KeyId(id)), "{got:?}")
                            }
                            None => assert!(matches!(got, Err(VaultError::NoSuchKey(k)) if k == KeyId(id)), "{got:?}"),
                        }
                    }
                    Op::Retire(i) => {
                        let id = 1 + u32::from(i);
                        let got = vault.update_keyring(|k| k.retire(KeyId(id)));
                        if !model.keys.contains_key(&id) {
                            assert!(matches!(got, Err(VaultError::NoSuchKey(k)) if k == KeyId(id)), "{got:?}");
                        } else if id == model.primary {
                            assert!(matches!(got, Err(VaultError::RetirePrimary(k)) if k == KeyId(id)), "{got:?}");
                        } else {
                            got.unwrap();
                            model.keys.insert(id, KeyStatus::Retired);
                        }
                    }
                    Op::Rewrap => {
                        let got = vault.rewrap(|_, _| {}).await;
                        let mut failed = None;
                        for (account, (_, key)) in model.records.iter_mut() {
                            if *key == model.primary {
                                continue;
                            }
                            if model.keys[key] == KeyStatus::Retired {
                                failed = Some((account.clone(), *key));
                                break;
                            }
                            *key = model.primary;
                        }
                        match failed {
                            None => { got.unwrap(); }
                            Some((account, key)) => assert!(
                                matches!(
                                    &got,
                                    Err(Error::Vault(VaultError::InRecord { account_id, source }))
                                        if *account_id == account
                                            && matches!(**source, VaultError::KeyRetired(k) if k == KeyId(key))
                                ),
                                "{got:?}"
                            ),
                        }
                    }
                    Op::Reopen => {
                        let text = vault.with_keyring(|k| k.to_text().unwrap());
                        vault = Vault::new("c", Keyring::parse(&text).unwrap(), FileStore::open(dir.path()).unwrap());
                    }
                }
                let listed: Vec<(String, u32)> = vault
                    .list(&owner())
                    .await
                    .unwrap()
                    .iter()
                    .map(|s| (s.account_id().to_owned(), s.key_id().0))
                    .collect();
                let expected: Vec<(String, u32)> = model.records.iter().map(|(a, (_, k))| (a.clone(), *k)).collect();
                assert_eq!(listed, expected);
            }
        });
    }
}

#[test]
fn long_identities_seal_and_stay_bound() {
    let ring = golden_ring();
    let long = "a".repeat(300);
    let id = RecordIdentity {
        account_id: &long,
        ..ID
    };
    let sealed = ring.seal(&id, b"t").unwrap();
    assert_eq!(&ring.unseal(&id, &sealed).unwrap()[..], b"t");
    let longer = "a".repeat(301);
    assert!(matches!(
        ring.unseal(
            &RecordIdentity {
                account_id: &longer,
                ..ID
            },
            &sealed
        ),
        Err(VaultError::Tampered)
    ));
}

/// A store that lets another writer change one record between the rewrap's read and
/// its compare-and-swap write.
#[derive(Clone)]
struct RacingStore {
    inner: MemoryStore,
    victim: &'static str,
    raced: Arc<std::sync::atomic::AtomicBool>,
}

impl TokenStore for RacingStore {
    async fn get(&self, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, record: &StoredRecord, expect: Expect) -> Result<u64, StoreError> {
        if record.account_id == self.victim
            && matches!(expect, Expect::Version(_))
            && !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst)
        {
            // Another instance writes this account first.
            let current = self.inner.get(&record.key()).await?.unwrap();
            self.inner.put(&current, Expect::Any).await?;
        }
        self.inner.put(record, expect).await
    }
    async fn delete(&self, key: &RecordKey, expect: Expect) -> Result<bool, StoreError> {
        self.inner.delete(key, expect).await
    }
    async fn list(&self) -> Result<Vec<RecordKey>, StoreError> {
        self.inner.list().await
    }
}

#[tokio::test]
async fn rewrap_counts_records_that_changed_meanwhile_and_leaves_them() {
    let store = RacingStore {
        inner: MemoryStore::default(),
        victim: "b",
        raced: Arc::default(),
    };
    let vault = Vault::new("c", Keyring::generate(), store.clone());
    for a in ["a", "b", "c"] {
        vault
            .put(
                &owner(),
                a,
                &ProviderId::Irs,
                &AccessToken::new(format!("t-{a}")),
            )
            .await
            .unwrap();
    }
    let new = vault.update_keyring(|k| k.add_key()).unwrap();
    vault.update_keyring(|k| k.promote(new)).unwrap();
    let mut progress = Vec::new();
    let report = vault
        .rewrap(|done, total| progress.push((done, total)))
        .await
        .unwrap();
    assert_eq!(
        (report.rewrapped, report.unchanged, report.raced),
        (2, 0, 1)
    );
    assert_eq!(progress, [(0, 3), (1, 3), (2, 3), (3, 3)]);
    // The raced record is left as the other writer wrote it, and still opens.
    assert_ne!(
        vault.get(&owner(), "b").await.unwrap().unwrap().key_id(),
        new
    );
    assert_eq!(
        vault.unseal(&owner(), "b").await.unwrap().expose_secret(),
        "t-b"
    );
}

#[tokio::test]
async fn store_edges_absent_versions_stray_names_and_non_utf8_plaintext() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let ring = Keyring::generate();
    let id = RecordIdentity {
        client_id: "c",
        owner: support::OWNER.as_bytes(),
        account_id: "acct",
        provider_id: "irs",
    };
    let record = StoredRecord {
        version: 0,
        client_id: "c".into(),
        owner: support::OWNER.as_bytes().to_vec(),
        account_id: "acct".into(),
        provider_id: "irs".into(),
        stored_at: 1_700_000_000,
        // A plaintext that is not UTF-8 cannot be a token.
        sealed: ring.seal(&id, &[0xff, 0xfe, 0x00]).unwrap(),
    };
    // Expect::Absent writes only where nothing is.
    assert_eq!(store.put(&record, Expect::Absent).await.unwrap(), 1);
    assert!(matches!(
        store.put(&record, Expect::Absent).await,
        Err(StoreError::Conflict)
    ));
    // Delete with a version check: a stale version is refused, the current one deletes.
    assert!(matches!(
        store.delete(&key("acct"), Expect::Version(7)).await,
        Err(StoreError::Conflict)
    ));
    let vault = Vault::new("c", ring, store.clone());
    let err = vault.unseal(&owner(), "acct").await.unwrap_err();
    assert!(
        matches!(err, Error::Vault(VaultError::Tampered)),
        "a non-UTF-8 token is refused as tampered, never a panic: {err:?}"
    );
    assert!(
        store
            .delete(&key("acct"), Expect::Version(1))
            .await
            .unwrap()
    );
    assert!(!store.delete(&key("acct"), Expect::Any).await.unwrap());

    // Stray names: files that are not records are ignored; a record file whose name
    // is not an encoded account is reported, never skipped in silence.
    vault
        .put(&owner(), "kept", &ProviderId::Irs, &AccessToken::new("t"))
        .await
        .unwrap();
    std::fs::write(dir.path().join("README"), "notes").unwrap();
    std::fs::write(dir.path().join(".hidden.json"), "{}").unwrap();
    assert_eq!(store.list().await.unwrap(), [key("kept")]);
    std::fs::write(dir.path().join("not-hex.json"), "{}").unwrap();
    assert!(matches!(
        store.list().await,
        Err(StoreError::Corrupt { .. })
    ));
}

/// A store with a bug: it answers `get` for one account with another account's record.
/// A store is the user's code, so the vault must not trust what it hands back.
struct MisfilingStore {
    inner: MemoryStore,
    asked: &'static str,
    answered: &'static str,
}

impl TokenStore for MisfilingStore {
    async fn get(&self, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError> {
        let wanted = if key.account_id == self.asked {
            RecordKey::new(&key.owner, self.answered)
        } else {
            key.clone()
        };
        self.inner.get(&wanted).await
    }
    async fn put(&self, record: &StoredRecord, expect: Expect) -> Result<u64, StoreError> {
        self.inner.put(record, expect).await
    }
    async fn delete(&self, key: &RecordKey, expect: Expect) -> Result<bool, StoreError> {
        self.inner.delete(key, expect).await
    }
    async fn list(&self) -> Result<Vec<RecordKey>, StoreError> {
        self.inner.list().await
    }
}

fn corrupt_because(result: Result<impl std::fmt::Debug, Error>, why: &str) {
    match result {
        Err(Error::Vault(VaultError::Store(StoreError::Corrupt { reason, .. })))
            if reason.contains(why) => {}
        other => panic!("expected a corrupt-record error ({why}), got {other:?}"),
    }
}

#[tokio::test]
async fn get_list_and_unseal_refuse_a_record_filed_under_another_account() {
    let store = MisfilingStore {
        inner: MemoryStore::default(),
        asked: "victim",
        answered: "attacker",
    };
    let vault = Vault::new("c", Keyring::generate(), store);
    for account in ["victim", "attacker"] {
        vault
            .put(&owner(), account, &ProviderId::Irs, &AccessToken::new("t"))
            .await
            .unwrap();
    }
    corrupt_because(vault.get(&owner(), "victim").await, "another account");
    corrupt_because(vault.list(&owner()).await, "another account");
    corrupt_because(vault.unseal(&owner(), "victim").await, "another account");
    // The honest answer still reads.
    assert_eq!(
        vault
            .get(&owner(), "attacker")
            .await
            .unwrap()
            .unwrap()
            .account_id(),
        "attacker"
    );
}

#[tokio::test]
async fn a_store_shared_with_another_client_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let ring = golden_ring();
    let mine = Vault::new("client-a", ring, store.clone());
    mine.put(
        &owner(),
        "acct",
        &ProviderId::TurboTax,
        &AccessToken::new("t-a"),
    )
    .await
    .unwrap();
    let theirs = Vault::new("client-b", golden_ring(), store);
    corrupt_because(theirs.get(&owner(), "acct").await, "another client");
    corrupt_because(theirs.list(&owner()).await, "another client");
    corrupt_because(theirs.unseal(&owner(), "acct").await, "another client");
    match theirs.rewrap(|_, _| {}).await {
        Err(Error::Vault(VaultError::InRecord { account_id, source })) => {
            assert_eq!(account_id, "acct");
            corrupt_because(Err::<(), _>(Error::Vault(*source)), "another client");
        }
        other => panic!("rewrap must refuse another client's record: {other:?}"),
    }
    assert_eq!(
        mine.unseal(&owner(), "acct").await.unwrap().expose_secret(),
        "t-a"
    );
}

#[tokio::test]
async fn a_record_remembers_when_it_was_stored() {
    let vault = Vault::new("c", Keyring::generate(), MemoryStore::default());
    let before = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
    let put = vault
        .put(&owner(), "acct", &ProviderId::Irs, &AccessToken::new("t"))
        .await
        .unwrap();
    let after = std::time::SystemTime::now();
    let got = vault.get(&owner(), "acct").await.unwrap().unwrap();
    for at in [put.stored_at(), got.stored_at()] {
        assert!(before <= at && at <= after, "stored_at {at:?}");
    }
    assert_eq!(put, got);
}

/// Rewrap walks the store a page (500 accounts) at a time: every record of several pages
/// moves, once, and the progress counts them all.
#[tokio::test]
async fn rewrap_walks_every_page() {
    const RECORDS: usize = 1_201;
    let vault = Vault::new("c", Keyring::generate(), MemoryStore::default());
    for n in 0..RECORDS {
        vault
            .put(
                &owner(),
                &format!("acct-{n:05}"),
                &ProviderId::Irs,
                &AccessToken::new(format!("t-{n}")),
            )
            .await
            .unwrap();
    }
    let new = vault.update_keyring(|k| k.add_key()).unwrap();
    vault.update_keyring(|k| k.promote(new)).unwrap();
    let mut last = (0, 0);
    let report = vault
        .rewrap(|done, total| last = (done, total))
        .await
        .unwrap();
    assert_eq!(
        (report.rewrapped, report.unchanged, report.raced),
        (RECORDS, 0, 0)
    );
    assert_eq!(last, (RECORDS, RECORDS));
    let listed = vault.list(&owner()).await.unwrap();
    assert_eq!(listed.len(), RECORDS);
    assert!(listed.iter().all(|a| a.key_id() == new));
    assert_eq!(
        vault
            .unseal(&owner(), "acct-01200")
            .await
            .unwrap()
            .expose_secret(),
        "t-1200"
    );
}

/// The shortest sealed blob is a header and a tag around an empty ciphertext: 33 bytes
/// in v1, 45 in v2. Its key id reads; one byte less is truncated.
#[test]
fn the_shortest_blob_reads_and_one_byte_less_is_truncated() {
    for (version, shortest) in [(1u8, 1 + 4 + 12 + 16), (2, 1 + 4 + 24 + 16)] {
        let mut blob = vec![version, 0, 0, 0, 9];
        blob.resize(shortest, 0);
        assert_eq!(chart_auth::vault::sealed_key_id(&blob).unwrap(), KeyId(9));
        blob.pop();
        assert!(matches!(
            chart_auth::vault::sealed_key_id(&blob),
            Err(VaultError::Truncated(n)) if n == shortest - 1
        ));
    }
    assert!(matches!(
        chart_auth::vault::sealed_key_id(&[]),
        Err(VaultError::Truncated(0))
    ));
    let ring = golden_ring();
    let empty = ring.seal(&ID_V2, b"").unwrap();
    assert_eq!(empty.len(), 45);
    assert!(ring.unseal(&ID_V2, &empty).unwrap().is_empty());
}

/// Deleting says whether there was a record, and the record is gone, in every store.
#[tokio::test]
async fn delete_says_whether_a_record_was_there() {
    let dir = tempfile::tempdir().unwrap();
    let file = FileStore::open(dir.path()).unwrap();
    async fn check<S: TokenStore>(store: S) {
        let vault = Vault::new("c", Keyring::generate(), store);
        vault
            .put(&owner(), "acct", &ProviderId::Irs, &AccessToken::new("t"))
            .await
            .unwrap();
        assert!(
            vault.delete(&owner(), "acct").await.unwrap(),
            "there was a record"
        );
        assert!(
            vault.get(&owner(), "acct").await.unwrap().is_none(),
            "and it is gone"
        );
        assert!(
            !vault.delete(&owner(), "acct").await.unwrap(),
            "there is none now"
        );
    }
    check(MemoryStore::default()).await;
    check(file).await;
}
