//! `PostgresStore` and `PostgresReplayGuard` against the real PostgreSQL of the machine
//! (never a stand-in): the store's model, compare-and-swap races through two pools,
//! killed writers, a restarted database, and two backend processes sharing one
//! database and one mock.
//!
//! Each test makes its own database under `CHART_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`) and drops it at the end.
#![cfg(feature = "postgres")]

mod support;
use support::{key, owner};

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use chart_auth::vault::{
    Expect, KeyId, Keyring, PostgresPool, PostgresStore, RecordKey, StoredRecord, TokenStore, Vault,
};
use chart_auth::{
    AccessToken, CallbackService, ChartClient, ChartConnect, ClientSecret, Config,
    ConnectStateSigner, Error, Flow, PostgresReplayGuard, ProviderId, StoreError,
};
use chart_mock_server::{
    MintRequest, MockConfig, MockServer, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET,
    SANDBOX_REDIRECT_URIS,
};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use proptest::prelude::*;
use tokio_postgres::NoTls;

const VAULT_KEY: [u8; 32] = [0x31; 32];
const STATE_KEY: [u8; 32] = [0x32; 32];
const SESSION: &str = "instance-test-session";

fn admin_url() -> String {
    std::env::var("CHART_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A fresh database, dropped when this is.
struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> TestDb {
        let mut id = [0u8; 6];
        getrandom::fill(&mut id).unwrap();
        let name = format!(
            "chart_t_{}",
            id.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        admin(&format!("CREATE DATABASE {name}")).await;
        let admin = admin_url();
        let base = admin.rsplit_once('/').unwrap().0;
        TestDb {
            url: format!("{base}/{name}"),
            name,
        }
    }

    fn pool(&self) -> PostgresPool {
        PostgresPool::connect(&self.url).unwrap()
    }

    async fn store(&self) -> PostgresStore {
        let store = PostgresStore::new(&self.pool());
        store.migrate().await.unwrap();
        store
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // A runtime of its own: Drop may run inside or outside one.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(admin(&format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )));
        })
        .join();
    }
}

async fn admin(sql: &str) {
    let (client, conn) = tokio_postgres::connect(&admin_url(), NoTls)
        .await
        .expect("PostgreSQL runs on 127.0.0.1:5432 (see .ci/run)");
    let task = tokio::spawn(conn);
    client.batch_execute(sql).await.unwrap();
    drop(client);
    let _ = task.await;
}

fn record(account: &str, payload: &[u8]) -> StoredRecord {
    record_of(&key(account), payload)
}

fn record_of(at: &RecordKey, payload: &[u8]) -> StoredRecord {
    StoredRecord {
        version: 0,
        client_id: "c".into(),
        owner: at.owner.clone(),
        account_id: at.account_id.clone(),
        provider_id: "irs".into(),
        stored_at: 1_700_000_000,
        sealed: payload.to_vec(),
    }
}

#[tokio::test]
async fn migrate_is_versioned_and_runs_once() {
    let db = TestDb::create().await;
    let store = PostgresStore::new(&db.pool());
    // The table, then its owner column and (owner, account) key.
    assert_eq!(store.migrate().await.unwrap(), 2);
    assert_eq!(
        store.migrate().await.unwrap(),
        0,
        "already at the latest version"
    );
    let guard = PostgresReplayGuard::new(&db.pool());
    assert_eq!(guard.migrate().await.unwrap(), 1);
    assert_eq!(guard.migrate().await.unwrap(), 0);
}

#[test]
fn a_pool_shows_its_shape_and_not_its_url_and_resizes() {
    let pool = PostgresPool::connect("postgres://user:hunter2@127.0.0.1:1/none").unwrap();
    pool.resize(3);
    let shown = format!("{pool:?}");
    assert!(shown.starts_with("PostgresPool"), "{shown}");
    assert!(shown.contains("max_size: 3"), "{shown}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("127.0.0.1"),
        "{shown}"
    );
}

#[tokio::test]
async fn bad_conditions_give_typed_errors() {
    // Nothing listens on port 1: the pool gives up in time with a typed error.
    let pool = PostgresPool::connect("postgres://postgres@127.0.0.1:1/none").unwrap();
    let err = PostgresStore::new(&pool).get(&key("a")).await.unwrap_err();
    assert!(matches!(err, StoreError::Unavailable { .. }), "{err}");
    // A bad URL is refused without echoing it (it may hold a password).
    let err = PostgresPool::connect("postgres://user:hunter2@[bad").unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // A row that does not decode is Corrupt.
    let db = TestDb::create().await;
    let store = db.store().await;
    let (client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "INSERT INTO chart_auth_tokens
                 (owner, account_id, version, client_id, provider_id, stored_at, sealed)
             VALUES ($1, 'a', 1, 'c', 'irs', -5, '\\x00')",
            &[&owner().as_bytes()],
        )
        .await
        .unwrap();
    assert!(matches!(
        store.get(&key("a")).await,
        Err(StoreError::Corrupt { .. })
    ));
}

#[derive(Clone, Debug)]
enum Op {
    Put(usize, Expect, u8),
    Delete(usize, Expect),
    Get(usize),
    Page(Option<usize>, usize),
    Count,
}

/// Record keys that differ only in the owner, only in the account, in both, and one
/// legacy (ownerless) record: a store that keys by account alone, or mixes owners up,
/// fails the model.
fn keys_of_the_model() -> [RecordKey; 6] {
    [
        RecordKey::new(b"", "a"),
        RecordKey::new(b"u1", "a"),
        RecordKey::new(b"u1", "b"),
        RecordKey::new(b"u1", "ba"),
        RecordKey::new(b"u2", "a"),
        RecordKey::new(b"u1\xff", "\u{e9}"),
    ]
}
const KEYS: usize = 6;

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        Just(Expect::Any),
        Just(Expect::Absent),
        (0u64..4).prop_map(Expect::Version),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..KEYS, expect(), any::<u8>()).prop_map(|(a, e, p)| Op::Put(a, e, p)),
        (0..KEYS, expect()).prop_map(|(a, e)| Op::Delete(a, e)),
        (0..KEYS).prop_map(Op::Get),
        (proptest::option::of(0..KEYS), 1usize..4).prop_map(|(a, n)| Op::Page(a, n)),
        Just(Op::Count),
    ]
}

/// What every store must answer, written from the trait's contract.
#[derive(Default)]
struct Model(BTreeMap<RecordKey, (u64, u8)>);

impl Model {
    fn allows(&self, account: &RecordKey, expect: Expect) -> bool {
        match (expect, self.0.get(account)) {
            (Expect::Any, _) | (Expect::Absent, None) => true,
            (Expect::Version(v), Some((have, _))) => v == *have,
            _ => false,
        }
    }
}

async fn run_model<S: TokenStore>(store: &S, ops: &[Op]) -> Result<(), TestCaseError> {
    let mut model = Model::default();
    let keys = keys_of_the_model();
    for op in ops {
        match op.clone() {
            Op::Put(a, expect, payload) => {
                let account = &keys[a];
                let got = store.put(&record_of(account, &[payload]), expect).await;
                if model.allows(account, expect) {
                    let version = model.0.get(account).map_or(1, |(v, _)| v + 1);
                    prop_assert_eq!(got.unwrap(), version);
                    model.0.insert(account.clone(), (version, payload));
                } else {
                    prop_assert!(matches!(got, Err(StoreError::Conflict)), "{:?}", got);
                }
            }
            Op::Delete(a, expect) => {
                let account = &keys[a];
                let got = store.delete(account, expect).await;
                if model.allows(account, expect) {
                    prop_assert_eq!(got.unwrap(), model.0.remove(account).is_some());
                } else {
                    prop_assert!(matches!(got, Err(StoreError::Conflict)), "{:?}", got);
                }
            }
            Op::Get(a) => {
                let got = store.get(&keys[a]).await.unwrap();
                let want = model.0.get(&keys[a]);
                prop_assert_eq!(got.map(|r| (r.version, r.sealed[0])), want.copied());
            }
            Op::Page(after, limit) => {
                let after = after.map(|a| &keys[a]);
                let got = store.list_page(after, limit).await.unwrap();
                let want: Vec<RecordKey> = model
                    .0
                    .keys()
                    .filter(|k| after.is_none_or(|a| *k > a))
                    .take(limit)
                    .cloned()
                    .collect();
                prop_assert_eq!(got, want);
            }
            Op::Count => prop_assert_eq!(store.count().await.unwrap(), model.0.len()),
        }
    }
    prop_assert_eq!(
        store.list().await.unwrap(),
        model.0.keys().cloned().collect::<Vec<_>>()
    );
    for owner in [&b""[..], b"u1", b"u2", b"u1\xff", b"nobody"] {
        let want: Vec<String> = model
            .0
            .keys()
            .filter(|k| k.owner == owner)
            .map(|k| k.account_id.clone())
            .collect();
        prop_assert_eq!(store.list_owner(owner).await.unwrap(), want);
    }
    Ok(())
}

#[test]
fn the_store_model_holds_for_postgres_as_for_files() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(TestDb::create());
    let store = rt.block_on(db.store());
    let pool_url = db.url.clone();
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(64);
    proptest!(ProptestConfig::with_cases(cases), |(ops in proptest::collection::vec(op(), 1..24))| {
        rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(&pool_url, NoTls).await.unwrap();
            tokio::spawn(conn);
            client.batch_execute("TRUNCATE chart_auth_tokens").await.unwrap();
            run_model(&store, &ops).await?;
            let dir = tempfile::tempdir().unwrap();
            let files = chart_auth::vault::FileStore::open(dir.path().join("s")).unwrap();
            run_model(&files, &ops).await
        })?;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_racers_through_two_pools_leave_only_the_winners_writes() {
    let db = TestDb::create().await;
    let stores = [db.store().await, PostgresStore::new(&db.pool())];
    stores[0]
        .put(&record("hot", b"init"), Expect::Absent)
        .await
        .unwrap();
    let mut racers = Vec::new();
    for racer in 0u8..16 {
        let store = stores[usize::from(racer) % 2].clone();
        racers.push(tokio::spawn(async move {
            let mut wins = Vec::new();
            for attempt in 0u8..10 {
                let current = store.get(&key("hot")).await.unwrap().unwrap();
                let mine = record("hot", &[racer, attempt]);
                match store.put(&mine, Expect::Version(current.version)).await {
                    Ok(version) => {
                        // A win is a write on top of exactly what was read.
                        assert_eq!(version, current.version + 1, "a stale write won");
                        wins.push((version, vec![racer, attempt]));
                    }
                    Err(StoreError::Conflict) => {}
                    Err(e) => panic!("{e}"),
                }
            }
            wins
        }));
    }
    let mut wins: Vec<(u64, Vec<u8>)> = Vec::new();
    for r in racers {
        wins.extend(r.await.unwrap());
    }
    let last = stores[1].get(&key("hot")).await.unwrap().unwrap();
    // Every version from 2 to the last was won exactly once, and the row holds the
    // write that won the last one.
    let versions: HashSet<u64> = wins.iter().map(|(v, _)| *v).collect();
    assert_eq!(versions.len(), wins.len(), "no version was won twice");
    assert_eq!(last.version, 1 + wins.len() as u64);
    let winner = wins.iter().find(|(v, _)| *v == last.version).unwrap();
    assert_eq!(last.sealed, winner.1);
    assert!(wins.len() >= 10, "the race made progress: {}", wins.len());
}

/// The child of the kill test: writes records and acknowledges each on stdout.
#[test]
#[ignore = "run by killed_writers_never_lose_acknowledged_records"]
fn postgres_writer_child() {
    let url = std::env::var("CHART_PG_URL").unwrap();
    let start: u64 = std::env::var("CHART_PG_START").unwrap().parse().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let vault = Vault::new(
        "c",
        Keyring::from_key(KeyId(1), &VAULT_KEY).unwrap(),
        PostgresStore::new(&PostgresPool::connect(&url).unwrap()),
    );
    let mut out = std::io::stdout().lock();
    for n in start.. {
        let account = format!("acct-{}", n % 12);
        rt.block_on(vault.put(
            &owner(),
            &account,
            &ProviderId::Irs,
            &AccessToken::new(format!("token-{n}")),
        ))
        .unwrap();
        writeln!(out, "ack {account} {n}").unwrap();
        out.flush().unwrap();
    }
}

#[tokio::test]
async fn killed_writers_never_lose_acknowledged_records() {
    let db = TestDb::create().await;
    let vault = Vault::new(
        "c",
        Keyring::from_key(KeyId(1), &VAULT_KEY).unwrap(),
        db.store().await,
    );
    let mut acked: BTreeMap<String, u64> = BTreeMap::new();
    let mut in_flight = HashSet::new();
    let mut next = 0u64;
    let mut seed = [0u8; 8];
    getrandom::fill(&mut seed).unwrap();
    let seed = u64::from_le_bytes(seed);
    println!("kill points seeded with {seed}");
    for round in 0..20u64 {
        let kill_after = 1 + (seed.rotate_left(round as u32 * 7) ^ round) % 25;
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "postgres_writer_child",
                "--exact",
                "--ignored",
                "--nocapture",
                "-q",
            ])
            .env("CHART_PG_URL", &db.url)
            .env("CHART_PG_START", next.to_string())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let ack = |line: &str, acked: &mut BTreeMap<String, u64>, next: &mut u64| {
            let parts: Vec<&str> = line.split_whitespace().collect();
            if let ["ack", account, n] = parts[..] {
                let n: u64 = n.parse().unwrap();
                acked.insert(account.into(), n);
                *next = n + 1;
                true
            } else {
                false
            }
        };
        let mut seen = 0;
        while seen < kill_after {
            let line = lines.next().expect("the writer exited early").unwrap();
            seen += u64::from(ack(&line, &mut acked, &mut next));
        }
        child.kill().unwrap(); // SIGKILL, during a later write
        child.wait().unwrap();
        for line in lines.map_while(Result::ok) {
            ack(&line, &mut acked, &mut next);
        }
        in_flight.insert(next);
        next += 1;
        for (account, n) in &acked {
            let token = vault
                .unseal(&owner(), account)
                .await
                .expect("an acknowledged write opens");
            let got: u64 = token.expose_secret()["token-".len()..].parse().unwrap();
            assert!(
                got == *n || (got > *n && in_flight.contains(&got)),
                "round {round}: {account} holds token-{got}, acked token-{n}"
            );
        }
        vault.list(&owner()).await.expect("nothing torn");
    }
}

/// A private PostgreSQL cluster, so the test can stop and start it without touching
/// the machine's (other tests use that one).
struct PrivateCluster {
    dir: tempfile::TempDir,
    port: u16,
    settings: String,
    /// Seconds the server's clock runs ahead of the machine's (libfaketime), if any.
    clock_ahead: Option<u32>,
}

/// Debian's libfaketime (package `libfaketime`, with `faketime`).
const FAKETIME_LIB: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

fn pg_bin(name: &str) -> String {
    let versions = std::fs::read_dir("/usr/lib/postgresql").expect("PostgreSQL is installed");
    let mut found: Vec<_> = versions.filter_map(Result::ok).map(|e| e.path()).collect();
    found.sort();
    found
        .last()
        .unwrap()
        .join("bin")
        .join(name)
        .display()
        .to_string()
}

fn as_postgres(args: &[&str]) {
    let status = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "{args:?}");
}

impl PrivateCluster {
    fn start() -> PrivateCluster {
        Self::start_with(&[])
    }

    /// A cluster that requires TLS, with a certificate for 127.0.0.1 signed by a fresh
    /// CA; gives the cluster and the CA's PEM.
    fn start_tls() -> (PrivateCluster, String) {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair, SanType};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let mut leaf_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        leaf_params.subject_alt_names = vec![SanType::IpAddress([127, 0, 0, 1].into())];
        let leaf_key = KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca).unwrap();
        let files = tempfile::tempdir().unwrap();
        let (cert, key) = (
            files.path().join("server.crt"),
            files.path().join("server.key"),
        );
        std::fs::write(&cert, leaf.pem()).unwrap();
        std::fs::write(&key, leaf_key.serialize_pem()).unwrap();
        for f in [&cert, &key] {
            Command::new("chown")
                .args(["postgres:postgres"])
                .arg(f)
                .status()
                .unwrap();
            std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        Command::new("chmod")
            .args(["755"])
            .arg(files.path())
            .status()
            .unwrap();
        let settings = [
            "-c ssl=on".to_owned(),
            format!("-c ssl_cert_file={}", cert.display()),
            format!("-c ssl_key_file={}", key.display()),
        ];
        let cluster = Self::start_with(&settings);
        // Keep the key files as long as the cluster.
        std::mem::forget(files);
        (cluster, ca.pem())
    }

    /// A cluster whose clock runs `secs` ahead of the machine's, through Debian's
    /// libfaketime (`.ci/test` installs it).
    fn start_with_clock_ahead(secs: u32) -> PrivateCluster {
        Self::start_cluster(&[], Some(secs))
    }

    fn start_with(settings: &[String]) -> PrivateCluster {
        Self::start_cluster(settings, None)
    }

    fn start_cluster(settings: &[String], clock_ahead: Option<u32>) -> PrivateCluster {
        let dir = tempfile::tempdir().unwrap();
        Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let data = dir.path().join("data").display().to_string();
        as_postgres(&[
            &pg_bin("initdb"),
            "-D",
            &data,
            "-A",
            "trust",
            "-U",
            "postgres",
        ]);
        let cluster = PrivateCluster {
            dir,
            port,
            settings: settings.join(" "),
            clock_ahead,
        };
        cluster.ctl("start");
        cluster
    }

    fn ctl(&self, action: &str) {
        let data = self.dir.path().join("data").display().to_string();
        let log = self.dir.path().join("log").display().to_string();
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 {}",
            self.port,
            self.dir.path().display(),
            self.settings
        );
        let faked = self.clock_ahead.map(|secs| {
            [
                "env".to_owned(),
                format!("LD_PRELOAD={FAKETIME_LIB}"),
                format!("FAKETIME=+{secs}"),
            ]
        });
        let env: Vec<&str> = faked.iter().flatten().map(String::as_str).collect();
        as_postgres(
            &[
                &env[..],
                &[
                    &pg_bin("pg_ctl"),
                    action,
                    "-D",
                    &data,
                    "-l",
                    &log,
                    "-o",
                    &opts,
                    "-w",
                    "-m",
                    "fast",
                ],
            ]
            .concat(),
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data").display().to_string();
        let _ = Command::new("runuser")
            .args([
                "-u",
                "postgres",
                "--",
                &pg_bin("pg_ctl"),
                "stop",
                "-D",
                &data,
                "-m",
                "immediate",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

#[tokio::test]
async fn a_restarted_database_fails_typed_then_recovers() {
    let cluster = PrivateCluster::start();
    let pool = PostgresPool::connect(&cluster.url()).unwrap();
    let store = PostgresStore::new(&pool);
    store.migrate().await.unwrap();
    store.put(&record("a", b"1"), Expect::Any).await.unwrap();

    cluster.ctl("stop");
    for _ in 0..3 {
        let err = store.get(&key("a")).await.unwrap_err();
        assert!(
            matches!(
                err,
                StoreError::Unavailable { .. } | StoreError::Backend { .. }
            ),
            "{err}"
        );
    }
    cluster.ctl("start");
    // The pool drops the dead connections and opens new ones. Each failed get drops one
    // dead connection; the server may also still be starting, so the attempts are spaced
    // (up to 20 s in all, which holds at any load) rather than counted on.
    let mut back = None;
    for _ in 0..200 {
        match store.get(&key("a")).await {
            Ok(r) => {
                back = r;
                break;
            }
            Err(_) => tokio::time::sleep(std::time::Duration::from_millis(100)).await,
        }
    }
    assert_eq!(back.expect("the record is back").sealed, b"1");
    assert_eq!(
        store
            .put(&record("a", b"2"), Expect::Version(1))
            .await
            .unwrap(),
        2
    );
}

/// One backend instance: a callback on its own port, on the shared database.
#[test]
#[ignore = "run by two_instances_share_one_database_and_refuse_replays"]
fn backend_instance_child() {
    let url = std::env::var("CHART_PG_URL").unwrap();
    let api = std::env::var("CHART_MOCK_URL").unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async move {
        let pool = PostgresPool::connect(&url).unwrap();
        let client = ChartClient::new(
            Config::builder(SANDBOX_CLIENT_ID, ClientSecret::new(SANDBOX_CLIENT_SECRET))
                .api_base(api)
                .build()
                .unwrap(),
        )
        .unwrap();
        let vault = Vault::new(
            SANDBOX_CLIENT_ID,
            Keyring::from_key(KeyId(1), &VAULT_KEY).unwrap(),
            PostgresStore::new(&pool),
        );
        let chart = ChartConnect::new(
            client,
            ConnectStateSigner::from_key(&STATE_KEY).unwrap(),
            Arc::new(vault),
        );
        let chart = chart.with_replay_guard(Arc::new(PostgresReplayGuard::new(&pool)));
        let callback = CallbackService::builder(chart)
            .session(|_| {
                Some(chart_auth::Session {
                    binding: SESSION.as_bytes().to_vec(),
                    owner: owner(),
                })
            })
            .build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("ready {}", listener.local_addr().unwrap());
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let service = callback.clone();
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
}

struct Instance {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn instance(db: &TestDb, mock: &MockServer) -> Instance {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "backend_instance_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "-q",
        ])
        .env("CHART_PG_URL", &db.url)
        .env("CHART_MOCK_URL", mock.url())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the instance started").unwrap();
        if let Some(addr) = line.strip_prefix("ready ") {
            break addr.parse().unwrap();
        }
    };
    Instance { child, addr }
}

async fn deliver(addr: SocketAddr, query: &str) -> (u16, serde_json::Value) {
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = client
        .get(
            format!("http://{addr}/api/chart/callback?{query}")
                .parse()
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_share_one_database_and_refuse_replays() {
    let db = TestDb::create().await;
    let pool = db.pool();
    PostgresStore::new(&pool).migrate().await.unwrap();
    PostgresReplayGuard::new(&pool).migrate().await.unwrap();
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let (a, b) = (instance(&db, &mock), instance(&db, &mock));
    let signer = ConnectStateSigner::from_key(&STATE_KEY).unwrap();
    let redirect = SANDBOX_REDIRECT_URIS[0].to_owned();
    let callback_query = || {
        let code = mock
            .mint_code(&MintRequest {
                client_id: SANDBOX_CLIENT_ID.into(),
                redirect_uri: Some(redirect.clone()),
                ..MintRequest::default()
            })
            .unwrap()
            .code;
        let state = signer.issue(
            &Flow::Redirect {
                redirect_uri: redirect.clone(),
            },
            SESSION.as_bytes(),
            &owner(),
        );
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("code", &code)
            .append_pair("state", &state)
            .finish();
        (code, query)
    };

    // Connected on one instance; the same callback on the other is a replay: 409.
    let (code, query) = callback_query();
    let (status, body) = deliver(a.addr, &query).await;
    assert_eq!(status, 200, "{body}");
    let account = body["account_id"].as_str().unwrap().to_owned();
    let (status, body) = deliver(b.addr, &query).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "already_used");
    assert_eq!(support_token_requests(&mock, &code), 1);
    // So the first account's token is still live at Chart.
    let vault = Vault::new(
        SANDBOX_CLIENT_ID,
        Keyring::from_key(KeyId(1), &VAULT_KEY).unwrap(),
        PostgresStore::new(&pool),
    );
    let token = vault.unseal(&owner(), &account).await.unwrap();
    assert!(
        mock.chart().introspect(token.expose_secret()).is_some(),
        "200 at /introspect"
    );

    // 64 concurrent deliveries of one callback across both instances: one exchange.
    let (code, query) = callback_query();
    let mut deliveries = Vec::new();
    for i in 0..64 {
        let addr = if i % 2 == 0 { a.addr } else { b.addr };
        let query = query.clone();
        deliveries.push(tokio::spawn(async move { deliver(addr, &query).await.0 }));
    }
    let mut statuses = BTreeMap::<u16, usize>::new();
    for d in deliveries {
        *statuses.entry(d.await.unwrap()).or_default() += 1;
    }
    assert_eq!(statuses.get(&200), Some(&1), "{statuses:?}");
    assert_eq!(statuses.get(&409), Some(&63), "{statuses:?}");
    assert_eq!(
        support_token_requests(&mock, &code),
        1,
        "the code reached Chart once"
    );
}

fn support_token_requests(mock: &MockServer, code: &str) -> usize {
    let id = mock.chart().code_id(code).expect("a known code");
    mock.journal()
        .iter()
        .filter(|e| e.path == "/auth/token" && e.code_id.as_deref() == Some(id.as_str()))
        .count()
}

#[tokio::test]
async fn a_vault_on_postgres_seals_and_refuses_misfiled_rows() {
    let db = TestDb::create().await;
    let vault = Vault::new("c", Keyring::generate(), db.store().await);
    for (a, t) in [("alice", "token-a"), ("bob", "token-b")] {
        vault
            .put(&owner(), a, &ProviderId::Irs, &AccessToken::new(t))
            .await
            .unwrap();
    }
    // Copy alice's sealed token onto bob's row: bob never opens as alice.
    let (client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    client
        .execute(
            "UPDATE chart_auth_tokens SET sealed = (SELECT sealed FROM chart_auth_tokens WHERE account_id = 'alice') WHERE account_id = 'bob'",
            &[],
        )
        .await
        .unwrap();
    assert!(matches!(
        vault.unseal(&owner(), "bob").await,
        Err(Error::Vault(chart_auth::VaultError::Tampered))
    ));
    assert_eq!(
        vault
            .unseal(&owner(), "alice")
            .await
            .unwrap()
            .expose_secret(),
        "token-a"
    );
}

#[tokio::test]
async fn tls_to_the_database_goes_through_the_callers_rustls_config() {
    let (cluster, ca_pem) = PrivateCluster::start_tls();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth(),
    );
    let url = format!("{}?sslmode=require", cluster.url());
    let store = PostgresStore::new(&PostgresPool::connect_tls(&url, tls).unwrap());
    store.migrate().await.unwrap();
    store
        .put(&record("a", b"over tls"), Expect::Any)
        .await
        .unwrap();
    assert_eq!(
        store.get(&key("a")).await.unwrap().unwrap().sealed,
        b"over tls"
    );
    let (client, conn) = tokio_postgres::connect(&cluster.url(), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let ssl: bool = client
        .query_one(
            "SELECT bool_or(ssl) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = 'postgres' AND pid <> pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(ssl, "the store's connection is encrypted");

    // A CA the server's certificate does not chain to is refused, with a typed error.
    let other = PostgresStore::new(&PostgresPool::connect_tls(&url, public_roots()).unwrap());
    assert!(matches!(
        other.get(&key("a")).await,
        Err(StoreError::Unavailable { .. })
    ));
}

/// A TLS configuration that trusts the public web roots only.
fn public_roots() -> Arc<rustls::ClientConfig> {
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth(),
    )
}

/// `connect_tls` never falls back to plaintext: a server that declines TLS (here one
/// with `ssl=off`, as someone in the path would answer) is unavailable, not spoken to in
/// the clear, and a URL that asks for `sslmode=disable` or `prefer` is refused at once.
#[tokio::test]
async fn tls_to_the_database_is_required_never_preferred() {
    let cluster = PrivateCluster::start();
    let tls = public_roots();
    // The same server is reachable in plaintext, so only the refusal can fail the store.
    PostgresStore::new(&PostgresPool::connect(&cluster.url()).unwrap())
        .migrate()
        .await
        .unwrap();
    let store =
        PostgresStore::new(&PostgresPool::connect_tls(&cluster.url(), tls.clone()).unwrap());
    match store.get(&key("a")).await {
        Err(e @ StoreError::Unavailable { .. }) => {
            let shown = format!("{e}");
            assert!(shown.contains("TLS"), "{shown}");
        }
        other => panic!("a server without TLS must be refused, got {other:?}"),
    }
    let port = cluster.port;
    for url in [
        format!("{}?sslmode=disable", cluster.url()),
        format!("{}?sslmode=prefer", cluster.url()),
        format!("{}?connect_timeout=5&sslmode=prefer", cluster.url()),
        format!("host=127.0.0.1 port={port} user=postgres sslmode = prefer"),
        format!("host=127.0.0.1 port={port} user=postgres sslmode=disable"),
    ] {
        match PostgresPool::connect_tls(&url, tls.clone()) {
            Err(e @ StoreError::DatabaseUrl { .. }) => {
                let shown = e.to_string();
                assert!(shown.contains("sslmode=require"), "{url}: {shown}");
                assert!(
                    !shown.contains("127.0.0.1"),
                    "the URL is never echoed: {shown}"
                );
            }
            other => panic!("{url}: expected a refusal, got {other:?}"),
        }
    }
}

/// One clock decides a claim: the instance's, which also verified the state. Here the
/// database's clock runs 10 minutes ahead of this instance (libfaketime under a private
/// cluster), as on a drifted host. A state with 5 minutes to live, by the instance's
/// clock, has already expired by the database's: neither its replay nor a cleanup may
/// free its claim.
#[tokio::test]
async fn a_database_clock_ahead_of_the_instance_lets_no_replay_win() {
    use chart_auth::{Claim, FlowKind, ReplayGuard};
    use std::time::{Duration, SystemTime, UNIX_EPOCH};
    let cluster = PrivateCluster::start_with_clock_ahead(600);
    let guard = PostgresReplayGuard::new(&PostgresPool::connect(&cluster.url()).unwrap());
    guard.migrate().await.unwrap();
    let (client, conn) = tokio_postgres::connect(&cluster.url(), NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let database_now: f64 = client
        .query_one("SELECT extract(epoch FROM now())::float8", &[])
        .await
        .unwrap()
        .get(0);
    let instance_now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    assert!(
        database_now - instance_now > 500.0,
        "the premise: the database's clock is ahead ({database_now} vs {instance_now})"
    );

    let signer = ConnectStateSigner::generate();
    let state = signer.issue(&Flow::Embedded, b"s", &owner());
    let id = signer
        .verify(&state, b"s", &owner(), FlowKind::Embedded)
        .unwrap()
        .id();
    let claim = || Claim {
        id,
        expires_at: SystemTime::now() + Duration::from_secs(300),
        session: b"s",
    };
    assert!(guard.claim(claim()).await.unwrap());
    assert!(
        !guard.claim(claim()).await.unwrap(),
        "a replay won the claim"
    );
    assert_eq!(
        guard.cleanup().await.unwrap(),
        0,
        "cleanup freed a live claim"
    );
    assert!(
        !guard.claim(claim()).await.unwrap(),
        "a replay won after cleanup"
    );
}

/// The shared guard's own lifecycle: a release frees a claim, an expired row is taken
/// over by a new claim of its id, and cleanup deletes exactly the expired rows.
#[tokio::test]
async fn the_postgres_guard_releases_takes_over_expired_rows_and_cleans_up() {
    use chart_auth::{Claim, FlowKind, ReplayGuard};
    let db = TestDb::create().await;
    let guard = PostgresReplayGuard::new(&db.pool());
    guard.migrate().await.unwrap();
    let signer = ConnectStateSigner::generate();
    let id = || {
        let state = signer.issue(&Flow::Embedded, b"s", &owner());
        signer
            .verify(&state, b"s", &owner(), FlowKind::Embedded)
            .unwrap()
            .id()
    };
    let now = std::time::SystemTime::now();
    let (past, future) = (
        now - std::time::Duration::from_secs(60),
        now + std::time::Duration::from_secs(600),
    );
    let claim = |id, expires_at| Claim {
        id,
        expires_at,
        session: b"s",
    };
    let (client, conn) = tokio_postgres::connect(&db.url, NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows = async || {
        let row = client
            .query_one("SELECT count(*) FROM chart_auth_replay", &[])
            .await
            .unwrap();
        row.get::<_, i64>(0)
    };

    // Release: the claim is forgotten, so the same id can be claimed again.
    let released = id();
    assert!(guard.claim(claim(released, future)).await.unwrap());
    assert!(!guard.claim(claim(released, future)).await.unwrap());
    guard.release(released).await.unwrap();
    assert!(guard.claim(claim(released, future)).await.unwrap());

    // Takeover: a row whose state expired belongs to nobody; a live one stays held.
    let expired = id();
    assert!(guard.claim(claim(expired, past)).await.unwrap());
    assert!(guard.claim(claim(expired, future)).await.unwrap());
    assert!(!guard.claim(claim(expired, future)).await.unwrap());

    // Cleanup deletes the rows expired for longer than the clock-skew margin (an hour)
    // only, and counts them; a row expired a minute ago stays, for an instance whose
    // clock is behind. The rows are left as an instance that died would leave them,
    // after the last claim: a claim may clean up (about one in 64), which would make the
    // count below depend on chance.
    for (n, age) in [
        (0u8, "61 minutes"),
        (1, "61 minutes"),
        (2, "61 minutes"),
        (3, "1 minute"),
    ] {
        client
            .execute(
                &format!(
                    "INSERT INTO chart_auth_replay (state_id, expires_at) \
                     VALUES ($1, now() - interval '{age}')"
                ),
                &[&vec![n; 16]],
            )
            .await
            .unwrap();
    }
    assert_eq!(chart_auth::CLOCK_SKEW_MARGIN.as_secs(), 3600);
    assert_eq!(rows().await, 6);
    assert_eq!(guard.cleanup().await.unwrap(), 3);
    assert_eq!(rows().await, 3);
    assert_eq!(guard.cleanup().await.unwrap(), 0);
    assert!(!guard.claim(claim(released, future)).await.unwrap());
}

/// `list` walks the table a page (1,000 rows) at a time, in byte order whatever the
/// database's collation; `count`, `list_page` and a vault's rewrap agree across pages.
#[tokio::test]
async fn listing_and_rewrap_page_past_one_page_in_byte_order() {
    let db = TestDb::create().await;
    let store = db.store().await;
    let vault = Vault::new("c", Keyring::generate(), store.clone());
    // Mixed case and non-ASCII: a locale collation would sort these differently.
    let mut accounts: Vec<String> = (0..2_345)
        .map(|n| match n % 3 {
            0 => format!("acct-{n:05}"),
            1 => format!("Acct-{n:05}"),
            _ => format!("äcct-{n:05}"),
        })
        .collect();
    for account in &accounts {
        vault
            .put(&owner(), account, &ProviderId::Irs, &AccessToken::new("t"))
            .await
            .unwrap();
    }
    accounts.sort();
    let keys: Vec<RecordKey> = accounts.iter().map(|a| key(a)).collect();
    assert_eq!(store.list().await.unwrap(), keys);
    assert_eq!(store.count().await.unwrap(), accounts.len());
    let page = store.list_page(Some(&keys[999]), 1_000).await.unwrap();
    assert_eq!(page, keys[1_000..2_000]);
    // One owner's listing is one indexed query, in the same order.
    assert_eq!(
        store.list_owner(owner().as_bytes()).await.unwrap(),
        accounts
    );

    let new = vault.update_keyring(|k| k.add_key()).unwrap();
    vault.update_keyring(|k| k.promote(new)).unwrap();
    let report = vault.rewrap(|_, _| {}).await.unwrap();
    assert_eq!(report.rewrapped, accounts.len());
    assert!(
        vault
            .list(&owner())
            .await
            .unwrap()
            .iter()
            .all(|a| a.key_id() == new)
    );
}

#[tokio::test]
async fn a_disconnect_deletes_only_the_record_it_revoked_across_two_pools() {
    let db = TestDb::create().await;
    let env = support::env().await;
    // Two pools on one database: two instances.
    let other = PostgresStore::new(&db.pool());
    support::gate::a_reconnect_during_a_disconnect_keeps_its_token(&env, db.store().await, other)
        .await;
}

#[tokio::test]
async fn concurrent_reconnects_lose_no_token_across_two_pools() {
    let db = TestDb::create().await;
    let other = PostgresStore::new(&db.pool());
    support::gate::concurrent_replaces_lose_no_token(db.store().await, other).await;
}

#[tokio::test]
async fn another_owner_reaches_nothing_on_postgres() {
    let db = TestDb::create().await;
    let env = support::env().await;
    support::owners::another_owner_reaches_nothing(&env, db.store().await).await;
    let db = TestDb::create().await;
    support::owners::a_record_moved_under_another_owner_does_not_unseal(db.store().await).await;
}

#[tokio::test]
async fn legacy_records_move_to_v2_on_postgres() {
    let db = TestDb::create().await;
    support::owners::legacy_records_move_to_v2_under_the_named_owner(db.store().await).await;
}
