//! What every store must give the vault's owners: one user never reaches another's
//! account through any public call, and records from before owners existed move to
//! format v2 only under the owner an operator names.
#![allow(dead_code)]

use std::sync::Arc;

use chart_auth::vault::{
    Expect, FORMAT_VERSION, KeyId, Keyring, RecordKey, StoredRecord, TokenStore, Vault,
    sealed_version,
};
use chart_auth::{ChartConnect, ConnectStateSigner, Error, Flow, Owner, VaultError};
use chart_mock_server::{SANDBOX_CLIENT_ID, Scenario};

use super::golden::{GOLDEN_7, GOLDEN_8, golden_ring, hex};
use super::{Env, other_owner, owner};

fn not_found<T: std::fmt::Debug>(result: Result<T, Error>, what: &str) {
    match result {
        Err(e @ Error::Vault(VaultError::NotFound)) => {
            // What a backend answers its frontend with: not an internal error.
            assert_eq!((e.label(), e.http_status().as_u16()), ("not_found", 404));
            assert_eq!(e.user_message(), "This account is not connected.");
        }
        other => panic!("{what}: expected NotFound, got {other:?}"),
    }
}

/// Connects an account for the test user through a vault on `store`, then tries every
/// public call as another user: none finds it, none sends anything to Chart, and the
/// account stays the test user's, alive.
pub async fn another_owner_reaches_nothing<S: TokenStore + 'static>(env: &Env, store: S) {
    let vault = Arc::new(Vault::new(SANDBOX_CLIENT_ID, Keyring::generate(), store));
    let chart = ChartConnect::new(
        env.client.clone(),
        ConnectStateSigner::from_key(&super::STATE_KEY).unwrap(),
        vault.clone(),
    );
    let stored = chart
        .complete(env.receive(&env.mint(false, Scenario::Success), Flow::Embedded))
        .await
        .unwrap();
    assert_eq!(stored.owner(), &owner());
    let account = stored.account_id().to_owned();
    let (me, them) = (owner(), other_owner());
    let sent_before = env.mock.journal().len();

    not_found(chart.introspect(&them, &account).await, "introspect");
    not_found(chart.disconnect(&them, &account).await, "disconnect");
    not_found(vault.unseal(&them, &account).await, "unseal");
    not_found(
        vault.unseal_versioned(&them, &account).await,
        "unseal_versioned",
    );
    assert!(chart.accounts(&them).await.unwrap().is_empty(), "accounts");
    assert!(vault.get(&them, &account).await.unwrap().is_none(), "get");
    assert!(!vault.delete(&them, &account).await.unwrap(), "delete");
    assert!(
        !vault.delete_version(&them, &account, 1).await.unwrap(),
        "delete_version"
    );
    assert_eq!(
        env.mock.journal().len(),
        sent_before,
        "a refused call reached Chart"
    );

    // Still the test user's, and alive.
    let mine = chart.accounts(&me).await.unwrap();
    assert_eq!(mine.len(), 1);
    assert_eq!(
        (mine[0].owner(), mine[0].account_id()),
        (&me, account.as_str())
    );
    chart.introspect(&me, &account).await.unwrap();
}

/// A record whose file or row was moved under another owner (its key and its owner
/// field changed, the sealed token kept) does not unseal for that owner: the AAD binds
/// the owner it was sealed for.
pub async fn a_record_moved_under_another_owner_does_not_unseal<S: TokenStore>(store: S) {
    let vault = Vault::new("c", Keyring::generate(), store);
    vault
        .put(
            &owner(),
            "acct",
            &"irs".into(),
            &chart_auth::AccessToken::new("t"),
        )
        .await
        .unwrap();
    let mut record = vault
        .store()
        .get(&RecordKey::new(owner().as_bytes(), "acct"))
        .await
        .unwrap()
        .unwrap();
    record.owner = other_owner().as_bytes().to_vec();
    record.version = 0;
    vault.store().put(&record, Expect::Absent).await.unwrap();
    match vault.unseal(&other_owner(), "acct").await {
        Err(Error::Vault(VaultError::Tampered)) => {}
        other => panic!("a moved record opened, or failed otherwise: {other:?}"),
    }
    assert_eq!(
        vault
            .unseal(&owner(), "acct")
            .await
            .unwrap()
            .expose_secret(),
        "t"
    );
}

/// A legacy record: a v1 golden blob, filed under `account` with no owner.
fn legacy(account: &str, golden: &str) -> StoredRecord {
    StoredRecord {
        version: 0,
        client_id: "golden-client".into(),
        owner: Vec::new(),
        account_id: account.into(),
        provider_id: "turbotax".into(),
        stored_at: 1_700_000_000,
        sealed: hex(golden),
    }
}

/// Two v1 records from before owners existed: no user sees them; `rewrap_with` moves
/// the one the operator's map names to format v2 under that owner, and leaves the
/// other as it is, counted.
pub async fn legacy_records_move_to_v2_under_the_named_owner<S: TokenStore>(store: S) {
    // Key 8 is primary, so the record the map names moves from key 7 and from v1. The
    // unnamed record is never opened, so that its blob is bound to another account
    // does not matter: it must simply stay as it is.
    let mut ring = golden_ring();
    ring.promote(KeyId(8)).unwrap();
    let vault = Vault::new("golden-client", ring, store);
    vault
        .store()
        .put(&legacy("golden-account", GOLDEN_7), Expect::Absent)
        .await
        .unwrap();
    let unnamed = legacy("golden-account", GOLDEN_8);
    let unnamed = StoredRecord {
        owner: Vec::new(),
        account_id: "unnamed-account".into(),
        ..unnamed
    };
    vault.store().put(&unnamed, Expect::Absent).await.unwrap();
    let legacy_key = RecordKey::new(b"", "golden-account");
    vault.check_record(&legacy_key).await.unwrap();
    let alice = Owner::new("golden-owner").unwrap();
    assert!(
        vault.list(&alice).await.unwrap().is_empty(),
        "a legacy record has no owner"
    );
    assert_eq!(vault.list_all().await.unwrap().len(), 2);

    let report = vault
        .rewrap_with(
            |account| (account == "golden-account").then(|| alice.clone()),
            |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!((report.rewrapped, report.unowned), (1, 1), "{report:?}");
    assert_eq!(
        vault
            .unseal(&alice, "golden-account")
            .await
            .unwrap()
            .expose_secret(),
        "golden-token-under-key-7"
    );
    let moved = vault
        .store()
        .get(&RecordKey::new(alice.as_bytes(), "golden-account"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sealed_version(&moved.sealed).unwrap(), FORMAT_VERSION);
    assert_eq!(
        vault
            .get(&alice, "golden-account")
            .await
            .unwrap()
            .unwrap()
            .key_id(),
        KeyId(8)
    );
    assert!(
        vault.store().get(&legacy_key).await.unwrap().is_none(),
        "the legacy copy stayed"
    );
    // The unnamed one is where it was: still legacy, still v1.
    let left = vault
        .store()
        .get(&RecordKey::new(b"", "unnamed-account"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(left.sealed, hex(GOLDEN_8));
    // A second run has nothing left to move but still counts the unnamed record.
    let again = vault.rewrap_with(|_| None, |_, _| {}).await.unwrap();
    assert_eq!(
        (again.rewrapped, again.unchanged, again.unowned),
        (0, 1, 1),
        "{again:?}"
    );

    // A run that stopped between writing the owned copy and deleting the legacy record
    // left both: the next run keeps the owned copy and finishes the move.
    vault
        .store()
        .put(&legacy("golden-account", GOLDEN_7), Expect::Absent)
        .await
        .unwrap();
    let resumed = vault
        .rewrap_with(
            |account| (account == "golden-account").then(|| alice.clone()),
            |_, _| {},
        )
        .await
        .unwrap();
    assert_eq!(
        (resumed.rewrapped, resumed.unchanged, resumed.unowned),
        (1, 1, 1),
        "{resumed:?}"
    );
    assert!(vault.store().get(&legacy_key).await.unwrap().is_none());
    assert_eq!(
        vault
            .unseal(&alice, "golden-account")
            .await
            .unwrap()
            .expose_secret(),
        "golden-token-under-key-7"
    );
}
