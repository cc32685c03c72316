//! [`PostgresStore`]: sealed records in PostgreSQL, shared by several backend instances.
//!
//! Writes are compare-and-swap on the record's version in one statement (never a read
//! then a write), `list` pages by key, and the schema is created or migrated by an
//! explicit, versioned [`PostgresStore::migrate`] whose SQL is embedded here.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use tokio_postgres::config::SslMode;
use tokio_postgres::{NoTls, Row};

use super::{Expect, RecordKey, StoredRecord, TokenStore};
use crate::error::StoreError;

/// How long a caller waits for a pooled connection, or for a new one to open.
const POOL_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections in a pool unless the caller says otherwise.
const DEFAULT_POOL_SIZE: usize = 8;
/// Serializes concurrent `migrate` calls across instances (an arbitrary constant).
const MIGRATION_LOCK: i64 = 0x6368_6172_745f_6d67;
/// The records' table, as errors name it.
const TABLE: &str = "chart_auth_tokens";
/// Account ids read per page when listing.
const PAGE: usize = 1000;

/// The token store's migrations, in order; each runs once, in a transaction.
const STORE_MIGRATIONS: &[&str] = &[
    r#"CREATE TABLE chart_auth_tokens (
        account_id  TEXT COLLATE "C" PRIMARY KEY,
        version     BIGINT NOT NULL CHECK (version > 0),
        client_id   TEXT NOT NULL,
        provider_id TEXT NOT NULL,
        stored_at   BIGINT NOT NULL,
        sealed      BYTEA NOT NULL
    )"#,
    // Owners (sealed format v2): records are keyed by (owner, account). Rows from
    // before have the empty (legacy) owner. The key's index, owner first, serves the
    // listing of one owner's accounts.
    r#"ALTER TABLE chart_auth_tokens ADD COLUMN owner BYTEA NOT NULL DEFAULT ''::BYTEA;
    ALTER TABLE chart_auth_tokens DROP CONSTRAINT chart_auth_tokens_pkey;
    ALTER TABLE chart_auth_tokens ADD PRIMARY KEY (owner, account_id)"#,
];

/// A pool of PostgreSQL connections, shared by a [`PostgresStore`] and a
/// [`PostgresReplayGuard`](crate::PostgresReplayGuard). Cheap to clone.
#[derive(Clone)]
pub struct PostgresPool {
    pool: Pool,
}

impl fmt::Debug for PostgresPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a password: show the pool's shape only.
        f.debug_struct("PostgresPool")
            .field("status", &self.pool.status())
            .finish()
    }
}

fn unavailable(e: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable {
        source: Box::new(e),
    }
}

fn backend(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
    move |e| StoreError::Backend {
        op,
        source: Box::new(e),
    }
}

impl PostgresPool {
    /// A pool of up to 8 connections to `url` (`postgres://user@host:port/db`), without
    /// TLS: for a database on the same host or a private network.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        let config = parse_url(url)?;
        Self::build(Manager::from_config(config, NoTls, manager_config()))
    }

    /// Like [`PostgresPool::connect`], over TLS with the caller's rustls configuration
    /// (roots, client certificate, crypto provider). TLS is required: a server, or
    /// someone in the path, that declines it gets no plaintext fallback (the driver's
    /// default, `sslmode=prefer`, would fall back), and a URL that asks for
    /// `sslmode=disable` or `sslmode=prefer` is refused.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// use chart_auth::StoreError;
    /// use chart_auth::vault::PostgresPool;
    /// let tls = Arc::new(
    ///     rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
    ///         .with_safe_default_protocol_versions()?
    ///         .with_root_certificates(rustls::RootCertStore::empty())
    ///         .with_no_client_auth(),
    /// );
    /// let refused = PostgresPool::connect_tls("postgres://app@db.internal/app?sslmode=prefer", tls);
    /// assert!(matches!(refused, Err(StoreError::DatabaseUrl { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn connect_tls(url: &str, tls: Arc<rustls::ClientConfig>) -> Result<Self, StoreError> {
        let mut config = parse_url(url)?;
        if config.get_ssl_mode() == SslMode::Disable || says_sslmode_prefer(url) {
            return Err(StoreError::DatabaseUrl {
                reason: "connect_tls requires TLS, and the URL says sslmode=disable or \
                         sslmode=prefer (which falls back to plaintext); remove it or say \
                         sslmode=require",
            });
        }
        config.ssl_mode(SslMode::Require);
        let tls = tokio_postgres_rustls::MakeRustlsConnect::new(rustls::ClientConfig::clone(&tls));
        Self::build(Manager::from_config(config, tls, manager_config()))
    }

    fn build(manager: Manager) -> Result<Self, StoreError> {
        let pool = Pool::builder(manager)
            .max_size(DEFAULT_POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_TIMEOUT))
            .create_timeout(Some(POOL_TIMEOUT))
            .recycle_timeout(Some(POOL_TIMEOUT))
            .build()
            .map_err(unavailable)?;
        Ok(Self { pool })
    }

    /// Sets the most connections the pool keeps.
    pub fn resize(&self, max_size: usize) {
        self.pool.resize(max_size);
    }

    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(unavailable)
    }

    /// Applies `component`'s migrations that have not run yet, each once, under a lock
    /// that serializes instances migrating at the same time.
    pub(crate) async fn migrate(
        &self,
        component: &str,
        steps: &[&str],
    ) -> Result<usize, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(backend("begin"))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(backend("lock"))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS chart_auth_schema (
                component  TEXT NOT NULL,
                version    INT NOT NULL,
                applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
                PRIMARY KEY (component, version)
            )",
        )
        .await
        .map_err(backend("create the schema table"))?;
        let done: i32 = tx
            .query_one(
                "SELECT COALESCE(MAX(version), 0) FROM chart_auth_schema WHERE component = $1",
                &[&component],
            )
            .await
            .map_err(backend("read the schema version"))?
            .get(0);
        let mut applied = 0;
        for (i, step) in steps.iter().enumerate() {
            let version = i32::try_from(i + 1).unwrap_or(i32::MAX);
            if version <= done {
                continue;
            }
            tx.batch_execute(step).await.map_err(backend("migrate"))?;
            tx.execute(
                "INSERT INTO chart_auth_schema (component, version) VALUES ($1, $2)",
                &[&component, &version],
            )
            .await
            .map_err(backend("record the migration"))?;
            applied += 1;
        }
        tx.commit().await.map_err(backend("commit"))?;
        Ok(applied)
    }
}

fn parse_url(url: &str) -> Result<tokio_postgres::Config, StoreError> {
    // Never echo the URL: it may hold a password.
    let mut config: tokio_postgres::Config = url.parse().map_err(|_| StoreError::DatabaseUrl {
        reason: "not a valid postgres:// URL or key=value connection string",
    })?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(POOL_TIMEOUT);
    }
    Ok(config)
}

/// Whether the URL (either form) says `sslmode=prefer`, which the driver cannot tell
/// apart from its default once parsed.
fn says_sslmode_prefer(url: &str) -> bool {
    let text: String = url
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    text.contains("sslmode=prefer")
}

fn manager_config() -> ManagerConfig {
    ManagerConfig {
        recycling_method: RecyclingMethod::Fast,
    }
}

/// Sealed records in PostgreSQL (feature `postgres`), for several backend instances.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use chart_auth::vault::{Keyring, PostgresPool, PostgresStore, Vault};
/// let pool = PostgresPool::connect("postgres://app@127.0.0.1:5432/app")?;
/// let store = PostgresStore::new(&pool);
/// store.migrate().await?; // once per deploy; safe to run from every instance
/// let vault = Vault::new("my-client", Keyring::from_env()?, store);
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct PostgresStore {
    pool: PostgresPool,
}

fn corrupt(account_id: &str, reason: impl Into<String>) -> StoreError {
    StoreError::Corrupt {
        path: PathBuf::from(format!("{TABLE}/{account_id:?}")),
        reason: reason.into(),
    }
}

fn record_of(row: &Row) -> Result<StoredRecord, StoreError> {
    let account_id: String = row
        .try_get("account_id")
        .map_err(|_| corrupt("?", "the account_id does not decode"))?;
    let bad = |what: &str| corrupt(&account_id, format!("the {what} does not decode"));
    let version: i64 = row.try_get("version").map_err(|_| bad("version"))?;
    let stored_at: i64 = row.try_get("stored_at").map_err(|_| bad("stored_at"))?;
    Ok(StoredRecord {
        version: u64::try_from(version).map_err(|_| bad("version"))?,
        client_id: row.try_get("client_id").map_err(|_| bad("client_id"))?,
        provider_id: row.try_get("provider_id").map_err(|_| bad("provider_id"))?,
        stored_at: u64::try_from(stored_at).map_err(|_| bad("stored_at"))?,
        sealed: row.try_get("sealed").map_err(|_| bad("sealed token"))?,
        owner: row.try_get("owner").map_err(|_| bad("owner"))?,
        account_id,
    })
}

impl PostgresStore {
    /// A store on a pool. Call [`PostgresStore::migrate`] once before use.
    pub fn new(pool: &PostgresPool) -> Self {
        Self { pool: pool.clone() }
    }

    /// Creates or migrates the store's table; gives how many migrations ran.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        self.pool.migrate("tokens", STORE_MIGRATIONS).await
    }
}

/// Prepares `sql` once per pooled connection; later calls reuse the statement.
async fn prepared(
    client: &deadpool_postgres::Object,
    sql: &str,
) -> Result<tokio_postgres::Statement, StoreError> {
    client.prepare_cached(sql).await.map_err(backend("prepare"))
}

/// The columns [`record_of`] reads.
const COLUMNS: &str = "owner, account_id, version, client_id, provider_id, stored_at, sealed";

fn key_of(row: &Row) -> Result<RecordKey, StoreError> {
    let bad = || corrupt("?", "a key does not decode");
    Ok(RecordKey {
        owner: row.try_get(0).map_err(|_| bad())?,
        account_id: row.try_get(1).map_err(|_| bad())?,
    })
}

impl TokenStore for PostgresStore {
    async fn get(&self, key: &RecordKey) -> Result<Option<StoredRecord>, StoreError> {
        let client = self.pool.client().await?;
        let sql =
            format!("SELECT {COLUMNS} FROM chart_auth_tokens WHERE owner = $1 AND account_id = $2");
        let row = client
            .query_opt(
                &prepared(&client, &sql).await?,
                &[&key.owner, &key.account_id],
            )
            .await
            .map_err(backend("get"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let record = record_of(&row)?;
        if !record.is_filed_under(key) {
            return Err(corrupt(
                &key.account_id,
                "the row holds another account's record",
            ));
        }
        Ok(Some(record))
    }

    async fn put(&self, record: &StoredRecord, expect: Expect) -> Result<u64, StoreError> {
        let stored_at = i64::try_from(record.stored_at)
            .map_err(|_| corrupt(&record.account_id, "stored_at is out of range"))?;
        let client = self.pool.client().await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
            &record.owner,
            &record.account_id,
            &record.client_id,
            &record.provider_id,
            &stored_at,
            &record.sealed,
        ];
        // One statement each: the version check and the write cannot be split.
        let row = match expect {
            Expect::Any => {
                client
                    .query_opt(
                        &prepared(
                            &client,
                            "INSERT INTO chart_auth_tokens AS t
                        (owner, account_id, version, client_id, provider_id, stored_at, sealed)
                     VALUES ($1, $2, 1, $3, $4, $5, $6)
                     ON CONFLICT (owner, account_id) DO UPDATE SET
                        version = t.version + 1, client_id = EXCLUDED.client_id,
                        provider_id = EXCLUDED.provider_id, stored_at = EXCLUDED.stored_at,
                        sealed = EXCLUDED.sealed
                     RETURNING version",
                        )
                        .await?,
                        &params,
                    )
                    .await
            }
            Expect::Absent => {
                client
                    .query_opt(
                        &prepared(
                            &client,
                            "INSERT INTO chart_auth_tokens
                        (owner, account_id, version, client_id, provider_id, stored_at, sealed)
                     VALUES ($1, $2, 1, $3, $4, $5, $6)
                     ON CONFLICT (owner, account_id) DO NOTHING
                     RETURNING version",
                        )
                        .await?,
                        &params,
                    )
                    .await
            }
            Expect::Version(want) => {
                let want = i64::try_from(want).map_err(|_| StoreError::Conflict)?;
                let mut with_version = params.to_vec();
                with_version.push(&want);
                client
                    .query_opt(
                        &prepared(
                            &client,
                            "UPDATE chart_auth_tokens SET
                            version = version + 1, client_id = $3, provider_id = $4,
                            stored_at = $5, sealed = $6
                         WHERE owner = $1 AND account_id = $2 AND version = $7
                         RETURNING version",
                        )
                        .await?,
                        &with_version,
                    )
                    .await
            }
        }
        .map_err(backend("put"))?;
        let row = row.ok_or(StoreError::Conflict)?;
        let version: i64 = row.get(0);
        u64::try_from(version).map_err(|_| corrupt(&record.account_id, "negative version"))
    }

    async fn delete(&self, key: &RecordKey, expect: Expect) -> Result<bool, StoreError> {
        let client = self.pool.client().await?;
        let (owner, account) = (&key.owner, &key.account_id);
        match expect {
            Expect::Any => {
                let n = client
                    .execute(
                        &prepared(
                            &client,
                            "DELETE FROM chart_auth_tokens WHERE owner = $1 AND account_id = $2",
                        )
                        .await?,
                        &[owner, account],
                    )
                    .await
                    .map_err(backend("delete"))?;
                Ok(n > 0)
            }
            Expect::Version(want) => {
                let want = i64::try_from(want).map_err(|_| StoreError::Conflict)?;
                let n = client
                    .execute(
                        &prepared(
                            &client,
                            "DELETE FROM chart_auth_tokens
                             WHERE owner = $1 AND account_id = $2 AND version = $3",
                        )
                        .await?,
                        &[owner, account, &want],
                    )
                    .await
                    .map_err(backend("delete"))?;
                if n == 0 {
                    return Err(StoreError::Conflict);
                }
                Ok(true)
            }
            Expect::Absent => {
                // Deleting "nothing" succeeds only when there is nothing.
                let exists = client
                    .query_opt(
                        &prepared(
                            &client,
                            "SELECT 1 FROM chart_auth_tokens WHERE owner = $1 AND account_id = $2",
                        )
                        .await?,
                        &[owner, account],
                    )
                    .await
                    .map_err(backend("delete"))?
                    .is_some();
                if exists {
                    Err(StoreError::Conflict)
                } else {
                    Ok(false)
                }
            }
        }
    }

    async fn list(&self) -> Result<Vec<RecordKey>, StoreError> {
        let mut out = Vec::new();
        loop {
            let page = self.list_page(out.last(), PAGE).await?;
            let done = page.len() < PAGE;
            out.extend(page);
            if done {
                return Ok(out);
            }
        }
    }

    /// One index range scan of the primary key (owner first).
    async fn list_owner(&self, owner: &[u8]) -> Result<Vec<String>, StoreError> {
        let client = self.pool.client().await?;
        let rows = client
            .query(
                &prepared(
                    &client,
                    "SELECT account_id FROM chart_auth_tokens WHERE owner = $1 ORDER BY account_id",
                )
                .await?,
                &[&owner],
            )
            .await
            .map_err(backend("list"))?;
        rows.iter()
            .map(|r| {
                r.try_get(0)
                    .map_err(|_| corrupt("?", "an account_id does not decode"))
            })
            .collect()
    }

    async fn list_page(
        &self,
        after: Option<&RecordKey>,
        limit: usize,
    ) -> Result<Vec<RecordKey>, StoreError> {
        let client = self.pool.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let (owner, account) = after.map(|k| (&k.owner, &k.account_id)).unzip();
        let rows = client
            .query(
                &prepared(
                    &client,
                    "SELECT owner, account_id FROM chart_auth_tokens
                 WHERE $1::BYTEA IS NULL OR (owner, account_id) > ($1, $2::TEXT)
                 ORDER BY owner, account_id LIMIT $3",
                )
                .await?,
                &[&owner, &account, &limit],
            )
            .await
            .map_err(backend("list"))?;
        rows.iter().map(key_of).collect()
    }

    async fn count(&self) -> Result<usize, StoreError> {
        let client = self.pool.client().await?;
        let n: i64 = client
            .query_one(
                &prepared(&client, "SELECT count(*) FROM chart_auth_tokens").await?,
                &[],
            )
            .await
            .map_err(backend("count"))?
            .get(0);
        Ok(usize::try_from(n).unwrap_or(0))
    }
}
