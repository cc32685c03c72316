//! A store whose deletes wait at a gate, and the race it sets up: a reconnect that
//! writes a new token while a disconnect of the same account is between its revoke and
//! its delete.
#![allow(dead_code)]

use std::sync::Arc;

use chart_auth::vault::{Expect, KeyId, Keyring, RecordKey, StoredRecord, TokenStore, Vault};
use chart_auth::{ChartConnect, ConnectStateSigner, Flow, StoreError};
use chart_mock_server::{SANDBOX_CLIENT_ID, Scenario};
use tokio::sync::Notify;

use super::{Env, owner};

/// Wraps a store; each `delete` signals that it began, then waits to be let through.
pub struct DeleteGate<S>(Arc<Inner<S>>);

struct Inner<S> {
    store: S,
    entered: Notify,
    open: Notify,
}

impl<S> Clone for DeleteGate<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S> DeleteGate<S> {
    pub fn new(store: S) -> Self {
        Self(Arc::new(Inner {
            store,
            entered: Notify::new(),
            open: Notify::new(),
        }))
    }
}

impl<S: TokenStore> TokenStore for DeleteGate<S> {
    async fn get(&self, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError> {
        self.0.store.get(key).await
    }
    async fn put(&self, record: &StoredRecord, expect: Expect) -> Result<u64, StoreError> {
        self.0.store.put(record, expect).await
    }
    async fn delete(&self, key: &RecordKey, expect: Expect) -> Result<bool, StoreError> {
        self.0.entered.notify_one();
        self.0.open.notified().await;
        self.0.store.delete(key, expect).await
    }
    async fn list(&self) -> Result<Vec<RecordKey>, StoreError> {
        self.0.store.list().await
    }
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
    let gate = DeleteGate::new(store);
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
