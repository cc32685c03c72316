//! The replay check: each Connect state id is claimed once, across every instance that
//! shares the guard, so a replayed callback never resends its code (Chart answers a
//! resent code by revoking the token it issued the first time).
//!
//! [`MemoryReplayGuard`] serves one process; with several instances behind a load
//! balancer use a shared guard, such as [`PostgresReplayGuard`] (feature `postgres`).

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::SystemTime;

use sha2::{Digest, Sha256};

use crate::connect_state::ConnectStateId;
use crate::error::StoreError;

/// A boxed future, so that guards can be chosen at run time (`Arc<dyn ReplayGuard>`).
pub type GuardFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// One claim on a Connect state id.
#[derive(Clone, Copy, Debug)]
pub struct Claim<'a> {
    /// The state's id.
    pub id: ConnectStateId,
    /// When the state expires; the claim may be forgotten after that.
    pub expires_at: SystemTime,
    /// Names the caller's session, for per-session quotas: `ChartConnect` passes the
    /// SHA-256 of the session binding, never the binding itself.
    pub session: &'a [u8],
}

/// Claims each Connect state id once, until it expires.
///
/// A claim is made only after the state verified, so forged states take no slot. It is
/// released when the code was never sent to Chart, so the user can retry the callback.
pub trait ReplayGuard: Send + Sync + fmt::Debug {
    /// Claims the id: `true` if this is the first claim, `false` if it was claimed
    /// before (a replay).
    fn claim<'a>(&'a self, claim: Claim<'a>) -> GuardFuture<'a, bool>;

    /// Forgets a claim (its code never reached Chart).
    fn release(&self, id: ConnectStateId) -> GuardFuture<'_, ()>;
}

/// The claims live per session binding at most, in [`MemoryReplayGuard`].
pub const SESSION_QUOTA: usize = 32;
/// The claims [`MemoryReplayGuard`] keeps in all.
pub const MAX_CLAIMS: usize = 100_000;

/// Claims in this process's memory: the default, for a single instance.
///
/// It cannot be filled by one user: each session binding holds at most
/// [`SESSION_QUOTA`] claims, and when the guard is full (or a session is at its quota)
/// the claims that expire soonest are forgotten first. A forgotten claim is one whose
/// state is nearly expired, which Chart's short-lived codes outlive only briefly.
#[derive(Debug, Default)]
pub struct MemoryReplayGuard {
    claims: Mutex<Claims>,
}

#[derive(Debug, Default)]
struct Claims {
    by_id: HashMap<ConnectStateId, (SystemTime, SessionKey)>,
    by_expiry: BTreeSet<(SystemTime, ConnectStateId)>,
    per_session: HashMap<SessionKey, BTreeSet<(SystemTime, ConnectStateId)>>,
}

/// A session binding, hashed so the guard never keeps session ids.
type SessionKey = [u8; 32];

impl Claims {
    fn forget(&mut self, id: ConnectStateId) {
        if let Some((expires, session)) = self.by_id.remove(&id) {
            self.by_expiry.remove(&(expires, id));
            if let Some(set) = self.per_session.get_mut(&session) {
                set.remove(&(expires, id));
                if set.is_empty() {
                    self.per_session.remove(&session);
                }
            }
        }
    }

    fn forget_expired(&mut self, now: SystemTime) {
        while let Some(&(expires, id)) = self.by_expiry.first() {
            if expires > now {
                break;
            }
            self.forget(id);
        }
    }
}

impl MemoryReplayGuard {
    /// An empty guard.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many claims the guard holds.
    pub fn len(&self) -> usize {
        self.lock().by_id.len()
    }

    /// Whether the guard holds no claim.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Claims> {
        self.claims
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn claim_now(&self, claim: Claim<'_>, now: SystemTime) -> bool {
        let mut claims = self.lock();
        claims.forget_expired(now);
        if claims.by_id.contains_key(&claim.id) {
            return false;
        }
        let session: SessionKey = Sha256::digest(claim.session).into();
        let held = claims.per_session.get(&session).map_or(0, BTreeSet::len);
        if held >= SESSION_QUOTA {
            let soonest = claims.per_session[&session].first().map(|&(_, id)| id);
            if let Some(id) = soonest {
                claims.forget(id);
            }
        }
        if claims.by_id.len() >= MAX_CLAIMS
            && let Some(&(_, id)) = claims.by_expiry.first()
        {
            claims.forget(id);
        }
        claims.by_id.insert(claim.id, (claim.expires_at, session));
        claims.by_expiry.insert((claim.expires_at, claim.id));
        claims
            .per_session
            .entry(session)
            .or_default()
            .insert((claim.expires_at, claim.id));
        true
    }
}

impl ReplayGuard for MemoryReplayGuard {
    fn claim<'a>(&'a self, claim: Claim<'a>) -> GuardFuture<'a, bool> {
        let first = self.claim_now(claim, SystemTime::now());
        Box::pin(async move { Ok(first) })
    }

    fn release(&self, id: ConnectStateId) -> GuardFuture<'_, ()> {
        self.lock().forget(id);
        Box::pin(async { Ok(()) })
    }
}

#[cfg(feature = "postgres")]
pub use postgres::{CLOCK_SKEW_MARGIN, PostgresReplayGuard};

#[cfg(feature = "postgres")]
mod postgres {
    use std::time::{Duration, SystemTime};

    use super::{Claim, GuardFuture, ReplayGuard};
    use crate::connect_state::ConnectStateId;
    use crate::error::StoreError;
    use crate::vault::PostgresPool;

    const GUARD_MIGRATIONS: &[&str] = &["CREATE TABLE chart_auth_replay (
            state_id   BYTEA PRIMARY KEY,
            expires_at TIMESTAMPTZ NOT NULL
        );
        CREATE INDEX chart_auth_replay_expiry ON chart_auth_replay (expires_at)"];

    /// Expired claims are deleted on about one claim in this many.
    const CLEANUP_EVERY: u8 = 64;

    /// How long a claim's row outlives its state's expiry before cleanup deletes it: the
    /// largest clock difference between instances (or between an instance and the
    /// database) under which a replay still finds the row. Rows are a few dozen bytes.
    pub const CLOCK_SKEW_MARGIN: Duration = Duration::from_secs(3600);

    fn backend(op: &'static str) -> impl FnOnce(tokio_postgres::Error) -> StoreError {
        move |e| StoreError::Backend {
            op,
            source: Box::new(e),
        }
    }

    /// Claims in PostgreSQL, shared by every instance on the database: an atomic insert
    /// that does nothing on conflict, so exactly one instance wins each state id.
    ///
    /// One clock decides: the instance's own, which also verified the state's expiry.
    /// A claim takes over a row only when the row has expired by the claiming instance's
    /// clock (which never holds for a state that instance just found unexpired), and
    /// cleanup keeps rows [`CLOCK_SKEW_MARGIN`] past their expiry. The database's clock
    /// is never used, so an instance behind it by less than the margin accepts no replay.
    ///
    /// ```no_run
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// use chart_auth::PostgresReplayGuard;
    /// use chart_auth::vault::PostgresPool;
    /// let pool = PostgresPool::connect("postgres://app@127.0.0.1:5432/app")?;
    /// let guard = PostgresReplayGuard::new(&pool);
    /// guard.migrate().await?;
    /// # Ok(()) }
    /// ```
    #[derive(Clone, Debug)]
    pub struct PostgresReplayGuard {
        pool: PostgresPool,
    }

    impl PostgresReplayGuard {
        /// A guard on a pool. Call [`PostgresReplayGuard::migrate`] once before use.
        pub fn new(pool: &PostgresPool) -> Self {
            Self { pool: pool.clone() }
        }

        /// Creates or migrates the guard's table; gives how many migrations ran.
        pub async fn migrate(&self) -> Result<usize, StoreError> {
            self.pool.migrate("replay", GUARD_MIGRATIONS).await
        }

        /// Deletes the claims that expired more than [`CLOCK_SKEW_MARGIN`] ago by this
        /// instance's clock; gives how many.
        pub async fn cleanup(&self) -> Result<u64, StoreError> {
            let client = self.pool.client().await?;
            let before = unix_secs(
                SystemTime::now()
                    .checked_sub(CLOCK_SKEW_MARGIN)
                    .unwrap_or(SystemTime::UNIX_EPOCH),
            );
            client
                .execute(
                    "DELETE FROM chart_auth_replay WHERE expires_at <= to_timestamp($1)",
                    &[&before],
                )
                .await
                .map_err(backend("clean up"))
        }
    }

    /// Seconds since the epoch, as PostgreSQL's `to_timestamp` takes them.
    fn unix_secs(t: SystemTime) -> f64 {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
    }

    fn random_byte() -> u8 {
        let mut b = [0u8; 1];
        getrandom::fill(&mut b).map_or(0, |()| b[0])
    }

    impl ReplayGuard for PostgresReplayGuard {
        fn claim<'a>(&'a self, claim: Claim<'a>) -> GuardFuture<'a, bool> {
            Box::pin(async move {
                if random_byte().is_multiple_of(CLEANUP_EVERY) {
                    self.cleanup().await?;
                }
                let client = self.pool.client().await?;
                let id: &[u8] = claim.id.as_bytes();
                let (expires, now) = (unix_secs(claim.expires_at), unix_secs(SystemTime::now()));
                // An expired row left behind by an earlier claim is taken over; expired
                // by this instance's clock, never the database's (see above).
                let won = client
                    .query_opt(
                        "INSERT INTO chart_auth_replay (state_id, expires_at)
                         VALUES ($1, to_timestamp($2))
                         ON CONFLICT (state_id) DO UPDATE SET expires_at = EXCLUDED.expires_at
                            WHERE chart_auth_replay.expires_at <= to_timestamp($3)
                         RETURNING 1",
                        &[&id, &expires, &now],
                    )
                    .await
                    .map_err(backend("claim"))?;
                Ok(won.is_some())
            })
        }

        fn release(&self, id: ConnectStateId) -> GuardFuture<'_, ()> {
            Box::pin(async move {
                let client = self.pool.client().await?;
                let id: &[u8] = id.as_bytes();
                client
                    .execute("DELETE FROM chart_auth_replay WHERE state_id = $1", &[&id])
                    .await
                    .map_err(backend("release"))?;
                Ok(())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::{Claim, MemoryReplayGuard};
    use crate::connect_state::ConnectStateId;

    fn claim(n: u8, expires_at: SystemTime) -> Claim<'static> {
        Claim {
            id: ConnectStateId([n; 16]),
            expires_at,
            session: b"s",
        }
    }

    #[test]
    fn a_claim_is_forgotten_once_its_state_has_expired_and_not_before() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let guard = MemoryReplayGuard::new();
        assert!(guard.is_empty());
        assert!(guard.claim_now(claim(1, t), t - Duration::from_secs(60)));
        assert!(!guard.is_empty());
        // Just before its expiry the claim is held: a replay is refused.
        assert!(!guard.claim_now(claim(1, t), t - Duration::from_nanos(1)));
        // At its expiry instant it is forgotten (the state no longer verifies then).
        assert!(guard.claim_now(claim(2, t + Duration::from_secs(60)), t));
        assert_eq!(guard.len(), 1, "the expired claim was kept");
        assert!(guard.claim_now(claim(1, t + Duration::from_secs(60)), t));
        assert_eq!(guard.len(), 2);
    }
}
