//! The paths users write themselves: the README's own handlers, and callers that go
//! away mid-exchange. No path through `ChartConnect` sends one Connect state's code
//! twice, and once a code is sent its token is stored or revoked, never lost.

mod support;
use support::owner;

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use chart_auth::vault::{Expect, MemoryStore, RecordKey, StoredRecord, TokenStore, Vault};
use chart_auth::{ChartConnect, ConnectStateSigner, Flow, StoreError};
use chart_mock_server::{SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, Scenario};
use tokio::sync::{Notify, mpsc};

const README_HANDLERS: &str = include_str!("readme/handlers.rs");

#[test]
fn the_readme_block_is_this_file() {
    let readme = include_str!("../../README.md");
    let after = readme
        .split_once("A backend has two handlers")
        .expect("the README's handlers paragraph")
        .1;
    let block = after
        .split_once("```rust\n")
        .and_then(|(_, rest)| rest.split_once("```\n"))
        .expect("a rust block after it")
        .0;
    assert_eq!(block, README_HANDLERS);
}

/// The README's two handlers ("Using the SDK"), as the README has them
/// (`the_readme_block_is_this_file` keeps the two the same), and the test that drives
/// them. Its items are private to the block, so the test lives beside them.
#[allow(dead_code)]
mod readme {
    include!("readme/handlers.rs");

    use std::io::Write;

    use chart_auth::ClientSecret;
    use chart_mock_server::{
        MintRequest, MockConfig, MockServer, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET,
    };

    /// A mock that knows the README's callback URL, and the README's `ChartConnect<FileStore>`
    /// against it.
    async fn readme_setup() -> (
        MockServer,
        ChartConnect<chart_auth::vault::FileStore>,
        tempfile::TempDir,
    ) {
        let mut config = MockConfig::default();
        config.clients[0].redirect_uris.push(CALLBACK.into());
        let mock = MockServer::start(config).await.unwrap();
        let config = Config::builder(SANDBOX_CLIENT_ID, ClientSecret::new(SANDBOX_CLIENT_SECRET))
            .api_base(mock.url())
            .build()
            .unwrap();
        let client = ChartClient::new(config).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let vault = Vault::new(
            client.config().client_id(),
            chart_auth::vault::Keyring::generate(),
            chart_auth::vault::FileStore::open(dir.path()).unwrap(),
        );
        let chart = ChartConnect::new(client, ConnectStateSigner::generate(), Arc::new(vault));
        (mock, chart, dir)
    }

    // Multi-threaded: the report is read with a blocking socket from the mock in this
    // process.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_reload_of_the_readme_callback_sends_nothing_and_keeps_the_account() {
        let (mock, chart, _dir) = readme_setup().await;
        let url = start(&chart, "sid-1", "user-1").unwrap();
        let query = url.split_once('?').unwrap().1;
        let state = form_urlencoded::parse(query.as_bytes())
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        let code = mock
            .mint_code(&MintRequest {
                client_id: SANDBOX_CLIENT_ID.into(),
                redirect_uri: Some(CALLBACK.into()),
                ..Default::default()
            })
            .unwrap()
            .code;

        // Another signed-in user who gets hold of the callback URL (same browser, or a
        // link passed on) cannot complete it: the state was begun for user-1. Nothing is
        // sent, so the code stays good for its owner.
        let err = callback(&chart, "sid-1", "user-2", code.clone(), &state)
            .await
            .unwrap_err();
        assert_eq!(
            (err.label(), err.http_status().as_u16()),
            ("invalid_state", 403)
        );
        assert_eq!(
            mock.journal()
                .iter()
                .filter(|e| e.path == "/auth/token")
                .count(),
            0
        );

        let account = callback(&chart, "sid-1", "user-1", code.clone(), &state)
            .await
            .unwrap();
        // The reload: the same URL, the same session.
        let err = callback(&chart, "sid-1", "user-1", code.clone(), &state)
            .await
            .unwrap_err();
        assert_eq!(
            (err.label(), err.http_status().as_u16()),
            ("already_used", 409)
        );
        assert!(err.user_message().contains("already completed"), "{err}");

        let id = mock.chart().code_id(&code).unwrap();
        let sent = mock
            .journal()
            .iter()
            .filter(|e| e.path == "/auth/token" && e.code_id.as_deref() == Some(id.as_str()))
            .count();
        assert_eq!(sent, 1, "the reload resent the code");
        // The account is alive, and the mock's report over HTTP agrees.
        chart
            .introspect(&owner_of("user-1"), &account)
            .await
            .unwrap();
        // Each user lists their own accounts: user-1 has this one, user-2 none.
        let mine = accounts(&chart, "user-1").await.unwrap();
        assert_eq!(
            mine.iter().map(|a| a.account_id()).collect::<Vec<_>>(),
            [account.as_str()]
        );
        assert!(accounts(&chart, "user-2").await.unwrap().is_empty());
        let err = chart
            .introspect(&owner_of("user-2"), &account)
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                chart_auth::Error::Vault(chart_auth::VaultError::NotFound)
            ),
            "{err:?}"
        );
        // Over HTTP, as the contract serves it.
        let addr = mock
            .url()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let mut http = std::net::TcpStream::connect(&addr).unwrap();
        write!(
            http,
            "GET /__chart/report HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        std::io::Read::read_to_string(&mut http, &mut answer).unwrap();
        let report = answer.split_once("\r\n\r\n").unwrap().1;
        let report: serde_json::Value = serde_json::from_str(report).unwrap();
        let ours = report["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["client_id"] == SANDBOX_CLIENT_ID)
            .unwrap();
        let verdict = ours["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "no_code_reuse")
            .unwrap()["verdict"]
            .clone();
        assert_eq!(verdict, "pass");
    }
}

/// A store whose writes wait at a gate, so that a test can drop the caller's future
/// while one is under way, and which says when a write has ended.
#[derive(Clone, Default)]
struct GatedStore(Arc<Gate>);

#[derive(Default)]
struct Gate {
    inner: MemoryStore,
    entered: Notify,
    open: Notify,
    ended: Notify,
    fail: bool,
}

impl std::ops::Deref for GatedStore {
    type Target = Gate;
    fn deref(&self) -> &Gate {
        &self.0
    }
}

impl TokenStore for GatedStore {
    async fn get(&self, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, record: &StoredRecord, expect: Expect) -> Result<u64, StoreError> {
        self.entered.notify_one();
        self.open.notified().await;
        let result = if self.fail {
            Err(StoreError::Io {
                op: "writing",
                path: "gated".into(),
                source: std::io::Error::other("the disk is full"),
            })
        } else {
            self.inner.put(record, expect).await
        };
        self.ended.notify_one();
        result
    }
    async fn delete(&self, key: &RecordKey, expect: Expect) -> Result<bool, StoreError> {
        self.inner.delete(key, expect).await
    }
    async fn list(&self) -> Result<Vec<RecordKey>, StoreError> {
        self.inner.list().await
    }
}

/// Each line the SDK logs, as it is written (to wait for what a detached task did).
#[derive(Clone)]
struct Lines(mpsc::UnboundedSender<String>);

impl Write for Lines {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let _ = self.0.send(String::from_utf8_lossy(buf).into_owned());
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines() -> (
    tracing::subscriber::DefaultGuard,
    mpsc::UnboundedReceiver<String>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || Lines(tx.clone()))
        .with_ansi(false)
        .finish();
    (tracing::subscriber::set_default(subscriber), rx)
}

async fn line_with(rx: &mut mpsc::UnboundedReceiver<String>, words: &str) -> String {
    within(async {
        loop {
            let line = rx.recv().await.expect("the log ended");
            if line.contains(words) {
                return line;
            }
        }
    })
    .await
}

/// What a detached task does, awaited with a bound so that a regression fails the test
/// instead of hanging it. (A bound on an event, not a sleep: it passes the moment the
/// event happens.)
async fn within<T>(event: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(30), event)
        .await
        .expect("the detached exchange never got there")
}

struct Gated {
    env: support::Env,
    store: GatedStore,
    chart: ChartConnect<GatedStore>,
}

async fn gated(fail: bool) -> Gated {
    let env = support::env().await;
    let store = GatedStore(Arc::new(Gate {
        fail,
        ..Gate::default()
    }));
    let vault = Arc::new(Vault::new(
        SANDBOX_CLIENT_ID,
        chart_auth::vault::Keyring::generate(),
        store.clone(),
    ));
    let chart = ChartConnect::new(
        env.client.clone(),
        ConnectStateSigner::from_key(&support::STATE_KEY).unwrap(),
        vault,
    );
    Gated { env, store, chart }
}

impl Gated {
    /// Drives `complete` until its write is at the store's gate, then drops it.
    async fn drop_while_storing<F: std::future::Future>(&self, complete: F) {
        let mut complete = std::pin::pin!(complete);
        tokio::select! {
            _ = &mut complete => panic!("the store is gated"),
            () = within(self.store.entered.notified()) => {}
        }
    }

    /// Waits for the gated write to end, then checks that it left one live account.
    async fn one_live_account(&self) {
        within(self.store.ended.notified()).await;
        let accounts = self.chart.vault().list(&owner()).await.unwrap();
        assert_eq!(accounts.len(), 1);
        self.chart
            .introspect(&owner(), accounts[0].account_id())
            .await
            .unwrap();
    }

    fn paths(&self) -> Vec<(String, u16)> {
        self.env
            .mock
            .journal()
            .iter()
            .map(|e| (e.path.clone(), e.status))
            .collect()
    }
}

/// Polls `future` once and drops it: the caller went away at its first await point.
async fn poll_once_and_drop<F: std::future::Future>(future: F) {
    assert!(
        tokio::time::timeout(Duration::ZERO, future).await.is_err(),
        "it ended at its first poll"
    );
}

#[tokio::test]
async fn a_caller_dropped_while_chart_answers_still_gets_the_token_stored() {
    let g = gated(false).await;
    let received = g
        .env
        .receive(&g.env.mint(false, Scenario::Success), Flow::Embedded);
    poll_once_and_drop(g.chart.complete(received)).await;
    // The detached task goes on: Chart answers, the write reaches the store.
    within(g.store.entered.notified()).await;
    g.store.open.notify_one();
    g.one_live_account().await;
}

#[tokio::test]
async fn a_caller_dropped_while_the_token_is_stored_still_gets_it_stored() {
    let g = gated(false).await;
    let received = g.env.receive(
        &g.env.mint(true, Scenario::Success),
        Flow::Redirect {
            redirect_uri: support::redirect_uri(),
        },
    );
    g.drop_while_storing(g.chart.complete(received)).await;
    g.store.open.notify_one();
    g.one_live_account().await;
}

#[tokio::test]
async fn a_caller_dropped_while_a_store_fails_still_gets_the_token_revoked() {
    let g = gated(true).await;
    let (_log, mut lines) = log_lines();
    let received = g
        .env
        .receive(&g.env.mint(false, Scenario::Success), Flow::Embedded);
    g.drop_while_storing(g.chart.complete(received)).await;
    g.store.open.notify_one();
    let line = line_with(&mut lines, "token not stored after a good exchange").await;
    assert!(line.contains("revoked=true"), "{line}");
    let paths = g.paths();
    assert!(paths.contains(&("/auth/token".into(), 200)), "{paths:?}");
    assert!(paths.contains(&("/disconnect".into(), 200)), "{paths:?}");
    assert!(g.chart.vault().list(&owner()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_bare_exchange_whose_caller_left_revokes_the_token_nobody_received() {
    let env = support::env().await;
    let (_log, mut lines) = log_lines();
    let received = env.receive(&env.mint(false, Scenario::Success), Flow::Embedded);
    poll_once_and_drop(received.exchange(&env.client)).await;
    let line = line_with(&mut lines, "the caller left before Chart answered").await;
    assert!(line.contains("revoked=true"), "{line}");
    let paths: Vec<_> = env
        .mock
        .journal()
        .iter()
        .map(|e| (e.path.clone(), e.status))
        .collect();
    assert_eq!(
        paths,
        [
            ("/auth/token".to_owned(), 200),
            ("/disconnect".to_owned(), 200)
        ]
    );
}

#[tokio::test]
async fn a_disconnect_deletes_only_the_record_it_revoked_on_a_file_store() {
    let env = support::env().await;
    let dir = tempfile::tempdir().unwrap();
    let open = || chart_auth::vault::FileStore::open(dir.path()).unwrap();
    // Two FileStores on one directory: two instances.
    support::gate::a_reconnect_during_a_disconnect_keeps_its_token(&env, open(), open()).await;
}

#[tokio::test]
async fn concurrent_reconnects_lose_no_token_on_a_file_store() {
    let dir = tempfile::tempdir().unwrap();
    let open = || chart_auth::vault::FileStore::open(dir.path()).unwrap();
    support::gate::concurrent_replaces_lose_no_token(open(), open()).await;
}

/// A reconnect of an account its owner already has (a returning taxpayer) replaces the
/// record. The replaced token is revoked when it was for another provider, and left
/// alone when it shares the new token's provider, because Chart's `/disconnect`
/// revokes every token of a taxpayer and provider (DESIGN §5), the new one included.
#[tokio::test]
async fn a_reconnect_revokes_the_token_it_replaced_for_another_provider() {
    const TAXPAYER: &str = "5f0c2a9e-8b1d-4c3e-a7f6-0d9e8c7b6a51";
    let env = support::env().await;
    let reconnect = |provider: &str| {
        let code = env
            .mock
            .mint_code(&chart_mock_server::MintRequest {
                client_id: SANDBOX_CLIENT_ID.into(),
                provider_id: Some(provider.into()),
                taxpayer_id: Some(TAXPAYER.into()),
                ..Default::default()
            })
            .unwrap()
            .code;
        env.chart.complete(env.receive(&code, Flow::Embedded))
    };
    let disconnects = || {
        env.mock
            .journal()
            .iter()
            .filter(|e| e.path == "/disconnect")
            .count()
    };

    let first = reconnect("irs").await.unwrap();
    assert_eq!((first.account_id(), first.replaced()), (TAXPAYER, None));
    let irs_token = env.vault.unseal(&owner(), TAXPAYER).await.unwrap();

    let second = reconnect("turbotax").await.unwrap();
    assert_eq!(
        second.replaced(),
        Some(&chart_auth::Replaced::Revoked {
            provider_id: "irs".into()
        })
    );
    assert!(matches!(
        env.client.introspect_token(&irs_token).await,
        Err(chart_auth::Error::InvalidToken(_))
    ));
    env.chart.introspect(&owner(), TAXPAYER).await.unwrap();
    assert_eq!(disconnects(), 1);

    let third = reconnect("turbotax").await.unwrap();
    assert_eq!(third.replaced(), Some(&chart_auth::Replaced::SameGrant));
    assert_eq!(disconnects(), 1, "a token of the same grant is not revoked");

    // Chart refusing the revoke is reported, and the new token is stored all the same.
    env.mock.add_fault(chart_mock_server::Fault {
        path: "/disconnect".into(),
        status: Some(500),
        ..support::fault(chart_mock_server::FaultKind::Status)
    });
    let fourth = reconnect("irs").await.unwrap();
    assert_eq!(
        fourth.replaced(),
        Some(&chart_auth::Replaced::RevokeFailed {
            provider_id: "turbotax".into()
        })
    );
    assert_eq!(fourth.provider_id().as_str(), "irs");
    env.chart.introspect(&owner(), TAXPAYER).await.unwrap();
}

#[tokio::test]
async fn chart_connect_debug_names_its_parts_and_no_secret() {
    let env = support::env().await;
    let shown = format!("{:?}", env.chart);
    for part in ["ChartConnect", "client", "signer", "vault", "replay_guard"] {
        assert!(shown.contains(part), "{part} missing from {shown}");
    }
    assert!(!shown.contains(SANDBOX_CLIENT_SECRET), "{shown}");
}

#[tokio::test]
async fn a_code_may_be_as_long_as_the_limit_and_not_a_byte_longer() {
    let env = support::env().await;
    let start = env
        .chart
        .begin_connect(Flow::Embedded, support::SESSION, &owner())
        .unwrap();
    let receive = |len: usize| {
        env.chart.receive_code(
            chart_auth::AuthorizationCode::new("c".repeat(len)),
            &start.state,
            support::SESSION,
            &owner(),
            chart_auth::FlowKind::Embedded,
        )
    };
    // Chart refuses codes over 4 KiB; the SDK's own limit is 2,048 bytes.
    assert!(receive(2048).is_ok());
    let err = receive(2049).unwrap_err();
    assert_eq!(err.label(), "bad_callback", "{err}");
}

/// Owners, on the two stores a single instance uses (PostgreSQL: `tests/postgres.rs`).
#[tokio::test]
async fn another_owner_reaches_nothing_on_memory_and_file_stores() {
    let env = support::env().await;
    support::owners::another_owner_reaches_nothing(&env, MemoryStore::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let files = chart_auth::vault::FileStore::open(dir.path()).unwrap();
    support::owners::another_owner_reaches_nothing(&env, files).await;
}

#[tokio::test]
async fn a_record_moved_under_another_owner_does_not_unseal_on_memory_and_file_stores() {
    support::owners::a_record_moved_under_another_owner_does_not_unseal(MemoryStore::default())
        .await;
    let dir = tempfile::tempdir().unwrap();
    let files = chart_auth::vault::FileStore::open(dir.path()).unwrap();
    support::owners::a_record_moved_under_another_owner_does_not_unseal(files).await;
}

#[tokio::test]
async fn legacy_records_move_to_v2_on_memory_and_file_stores() {
    support::owners::legacy_records_move_to_v2_under_the_named_owner(MemoryStore::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let files = chart_auth::vault::FileStore::open(dir.path()).unwrap();
    support::owners::legacy_records_move_to_v2_under_the_named_owner(files).await;
}
