//! A store whose deletes or puts wait at a gate, and the races it sets up: a reconnect
//! that writes a new token while a disconnect of the same account is between its
//! revoke and its delete, and two reconnects of one account at once.
#![allow(dead_code)]

use std::sync::Arc;

use chart_auth::vault::{Expect, KeyId, Keyring, RecordKey, StoredRecord, TokenStore, Vault};
use chart_auth::{AccessToken, ChartConnect, ConnectStateSigner, Flow, ProviderId, StoreError};
use chart_mock_server::{SANDBOX_CLIENT_ID, Scenario};
use tokio::sync::Notify;

use super::{Env, owner};

/// The store operation a [`Gate`] holds back.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Put,
    Delete,
}

/// Wraps a store; each call of the gated operation signals that it began, then waits
/// to be let through.
pub struct Gate<S>(Arc<Inner<S>>);

struct Inner<S> {
    store: S,
    op: Op,
    entered: Notify,
    open: Notify,
}

impl<S> Clone for Gate<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S> Gate<S> {
    pub fn new(op: Op, store: S) -> Self {
        Self(Arc::new(Inner {
            store,
            op,
            entered: Notify::new(),
            open: Notify::new(),
        }))
    }

    async fn pass(&self, op: Op) {
        if self.0.op == op {
            self.0.entered.notify_one();
            self.0.open.notified().await;
        }
    }
}

impl<S: TokenStore> TokenStore for Gate<S> {
    async fn get(&self, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError> {
        self.0.store.get(key).await
    }
    async fn put(&self, record: &StoredRecord, expect: Expect) -> Result<u64, StoreError> {
        self.pass(Op::Put).await;
        self.0.store.put(record, expect).await
    }
    async fn delete(&self, key: &RecordKey, expect: Expect) -> Result<bool, StoreError> {
        self.pass(Op::Delete).await;
        self.0.store.delete(key, expect).await
    }
    async fn list(&self) -> Result<Vec<RecordKey>, StoreError> {
        self.0.store.list().await
    }
}

/// Replaces the test user's token of the raced account with `token` of `provider`; the
/// replaced record's provider and token, if any.
async fn replace<S: TokenStore>(
    vault: &Vault<S>,
    provider: &str,
    token: &str,
) -> Option<(String, String)> {
    let (stored, old) = vault
        .replace(
            &owner(),
            "acct-raced",
            &ProviderId::from(provider),
            &AccessToken::new(token),
        )
        .await
        .unwrap();
    assert_eq!(stored.provider_id().as_str(), provider);
    old.map(|old| {
        let token = old.token().unwrap().expose_secret().to_owned();
        (old.provider_id().as_str().to_owned(), token)
    })
}

fn was(provider: &str, token: &str) -> Option<(String, String)> {
    Some((provider.to_owned(), token.to_owned()))
}

/// Two instances (a vault on `store`, whose puts are gated, and one on `other`, sharing
/// its records) replace the same account's token at once: the first reads the record,
/// and before it writes, the second replaces it. Every token must end up either stored
/// or handed back to exactly one of them for revoking: the first must see that it lost
/// the race, read again, and hand back the second's token rather than the original.
pub async fn concurrent_replaces_lose_no_token<S, W>(store: S, other: W)
where
    S: TokenStore + 'static,
    W: TokenStore,
{
    const KEY: [u8; 32] = [0x45; 32];
    let keyring = || Keyring::from_key(KeyId(1), &KEY).unwrap();
    let gate = Gate::new(Op::Put, store);
    let first = Vault::new(SANDBOX_CLIENT_ID, keyring(), gate.clone());
    let second = Vault::new(SANDBOX_CLIENT_ID, keyring(), other);
    let (me, account) = (owner(), "acct-raced");
    assert_eq!(
        replace(&second, "irs", "t0").await,
        None,
        "nothing to replace yet"
    );

    let mut racing = std::pin::pin!(replace(&first, "turbotax", "t1"));
    tokio::select! {
        done = &mut racing => panic!("the put is gated: {done:?}"),
        () = gate.0.entered.notified() => {}
    }
    // The first has read t0; the second replaces it before the first writes.
    assert_eq!(replace(&second, "hr", "t2").await, was("irs", "t0"));
    gate.0.open.notify_one();
    tokio::select! {
        done = &mut racing => panic!("the first overwrote t2 unseen, handing back {done:?}"),
        () = gate.0.entered.notified() => {}
    }
    gate.0.open.notify_one();
    assert_eq!(racing.await, was("hr", "t2"), "t2 was handed back");
    let stored = second.unseal(&me, account).await.unwrap();
    assert_eq!(stored.expose_secret(), "t1");
    assert_eq!(replace(&second, "irs", "t3").await, was("turbotax", "t1"));
}

/// Connects an account through a vault on `store` (gated on delete), then disconnects
/// it while, between Chart's revoke and the delete, a reconnect writes a new live token
/// for the same account through another vault on `other` (another instance on the same
/// files or database). The new token must survive: stored, and alive at Chart.
pub async fn a_reconnect_during_a_disconnect_keeps_its_token<S, W>(env: &Env, store: S, other: W)
where
    S: TokenStore + 'static,
    W: TokenStore,
{
    const KEY: [u8; 32] = [0x44; 32];
    let keyring = || Keyring::from_key(KeyId(1), &KEY).unwrap();
    let gate = Gate::new(Op::Delete, store);
    let chart = ChartConnect::new(
        env.client.clone(),
        ConnectStateSigner::from_key(&super::STATE_KEY).unwrap(),
        Arc::new(Vault::new(SANDBOX_CLIENT_ID, keyring(), gate.clone())),
    );
    let writer = Vault::new(SANDBOX_CLIENT_ID, keyring(), other);
    // Without a race, a disconnect deletes the record.
    let lone = chart
        .complete(env.receive(&env.mint(false, Scenario::Success), Flow::Embedded))
        .await
        .unwrap();
    gate.0.open.notify_one();
    chart.disconnect(&owner(), lone.account_id()).await.unwrap();
    assert!(
        writer
            .get(&owner(), lone.account_id())
            .await
            .unwrap()
            .is_none()
    );
    // Take the permit that delete left, so that the race below waits for its own.
    tokio::time::timeout(
        std::time::Duration::from_secs(10),
        gate.0.entered.notified(),
    )
    .await
    .expect("the disconnect went through the store's delete");

    let first = chart
        .complete(env.receive(&env.mint(false, Scenario::Success), Flow::Embedded))
        .await
        .unwrap();
    let account = first.account_id().to_owned();
    let second = env
        .receive(&env.mint(false, Scenario::Success), Flow::Embedded)
        .exchange(&env.client)
        .await
        .unwrap();

    let me = owner();
    let mut disconnect = std::pin::pin!(chart.disconnect(&me, &account));
    tokio::select! {
        done = &mut disconnect => panic!("the delete is gated: {done:?}"),
        () = gate.0.entered.notified() => {}
    }
    // The reconnect, on another instance, while the disconnect waits to delete.
    writer
        .put(
            &owner(),
            &account,
            second.provider_id(),
            second.access_token(),
        )
        .await
        .unwrap();
    gate.0.open.notify_one();
    disconnect.await.unwrap();

    let kept = writer
        .unseal(&owner(), &account)
        .await
        .expect("the new token is still stored");
    assert_eq!(kept.expose_secret(), second.access_token().expose_secret());
    env.client.introspect_token(&kept).await.unwrap();
}
