//! The typed Connect flow, and [`ChartConnect`], which joins the client, the Connect
//! state signer and the vault.
//!
//! ```text
//! Connection<CodeReceived> --exchange(&client)--> Connection<Exchanged> --store(&vault)--> Connection<Stored>
//! ```
//!
//! Each stage consumes the one before it, so exchanging twice, storing before
//! exchanging or reading a token from a stored connection does not compile. A
//! `Connection<CodeReceived>` can only be made by [`ChartConnect::receive_code`], which
//! verifies the callback against a Connect state this SDK signed.
//!
//! Every exchange first claims its Connect state in the [`ReplayGuard`] of the
//! [`ChartConnect`] that verified it, so no path through the SDK sends one state's code
//! twice: a reload of the callback, the back button or a copied URL is refused with
//! [`ConnectStateError::Replayed`] before anything reaches Chart (which would revoke the
//! token it issued the first time). Once the code is sent, the rest runs in a task of
//! its own: if the caller's future is dropped (a client gone, a tower timeout, a
//! shutdown), [`ChartConnect::complete`] still stores the token (or revokes it when
//! storing fails), and a bare [`Connection::exchange`] revokes the token nobody will
//! receive.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::client::ChartClient;
use crate::config::check_base_url;
use crate::connect_state::{
    ConnectStateId, ConnectStateSigner, Flow, FlowKind, VerifiedConnectState,
};
use crate::error::{ConnectStateError, Error, VaultError};
use crate::ids::{KeyId, Owner, ProviderId};
use crate::replay::{Claim, MemoryReplayGuard, ReplayGuard};
use crate::secret::{AccessToken, AuthorizationCode};

/// The longest authorization code accepted from a callback. Chart's codes are far
/// shorter; its token endpoint refuses fields over 4 KiB.
pub const MAX_CODE_LEN: usize = 2048;
use crate::vault::{ReplacedRecord, StoredAccount, TokenStore, Vault};
use crate::wire::Introspection;

/// What [`ChartConnect::begin_connect`] gives: the signed Connect state and, for the
/// Redirect flow, the URL to send the browser to.
#[derive(Clone, Debug)]
pub struct ConnectStart {
    /// The signed `state`. It is not secret, but it is bound to the session.
    pub state: String,
    /// The Chart Connect URL, for the Redirect flow.
    pub connect_url: Option<String>,
    /// The flow this state is for.
    pub flow: FlowKind,
}

mod sealed {
    pub trait Sealed {}
}

/// A stage of the flow: [`CodeReceived`], [`Exchanged`] or [`Stored`]. Sealed: no
/// other stage can exist.
pub trait Stage: sealed::Sealed + fmt::Debug {}

/// One account connection moving through the flow, at stage `S`.
#[derive(Debug)]
pub struct Connection<S: Stage> {
    stage: S,
}

/// A verified code, ready to be exchanged once, for the owner its Connect state was
/// begun for.
#[derive(Debug)]
pub struct CodeReceived {
    code: AuthorizationCode,
    verified: VerifiedConnectState,
    owner: Owner,
    /// SHA-256 of the session binding: the guard's per-session quota needs only a
    /// stable name for the session, and a session id is itself a credential.
    session: [u8; 32],
    guard: Arc<dyn ReplayGuard>,
}

/// An exchanged code: the account and its live access token.
#[derive(Debug)]
pub struct Exchanged {
    client_id: String,
    owner: Owner,
    account_id: String,
    provider_id: ProviderId,
    token: AccessToken,
}

/// A connection whose token is sealed in the vault. It holds no plaintext token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stored {
    account: StoredAccount,
    replaced: Option<Replaced>,
}

/// What became of the token that a reconnect replaced, when
/// [`ChartConnect::complete`] stored a new token over an earlier record of the same
/// owner and account ([`Connection::replaced`]).
///
/// A replaced token for another provider is revoked at Chart. One for the same provider
/// is left alone: Chart's `/disconnect` revokes every token of a taxpayer and provider,
/// so revoking the old token would revoke the new one too. The old one shares the new
/// one's grant, and the new one's disconnect ends both.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Replaced {
    /// The replaced token (of another provider) was revoked at Chart, or Chart no
    /// longer knew it.
    Revoked {
        /// The replaced record's provider.
        provider_id: ProviderId,
    },
    /// Revoking the replaced token failed (the error is logged): it may still be live
    /// at Chart until the taxpayer disconnects that provider.
    RevokeFailed {
        /// The replaced record's provider.
        provider_id: ProviderId,
    },
    /// The replaced token was for the same provider: not revoked (see above).
    SameGrant,
    /// The replaced record no longer unsealed (corrupt, or under a retired key), so its
    /// token could not be revoked.
    Unreadable {
        /// The replaced record's provider.
        provider_id: ProviderId,
    },
}

impl sealed::Sealed for CodeReceived {}
impl sealed::Sealed for Exchanged {}
impl sealed::Sealed for Stored {}
impl Stage for CodeReceived {}
impl Stage for Exchanged {}
impl Stage for Stored {}

impl Connection<CodeReceived> {
    /// The flow the code came from.
    pub fn flow(&self) -> &Flow {
        self.stage.verified.flow()
    }

    /// Whose account this code will connect: the owner the Connect state was begun for.
    pub fn owner(&self) -> &Owner {
        &self.stage.owner
    }

    /// The id of the Connect state this code arrived with (for replay protection).
    pub fn connect_state_id(&self) -> ConnectStateId {
        self.stage.verified.id()
    }

    /// When the Connect state this code arrived with expires.
    pub fn connect_state_expires_at(&self) -> SystemTime {
        self.stage.verified.expires_at()
    }

    /// Claims the Connect state, then exchanges the code for an access token at
    /// `POST /auth/token`.
    ///
    /// The code is consumed whatever happens: it is single use. A state claimed before
    /// (a replay) is [`ConnectStateError::Replayed`] and sends nothing. The claim is
    /// released only when the code surely never reached Chart
    /// ([`Error::code_may_be_spent`] is false), so that the user can retry.
    ///
    /// Once the code is sent, the exchange runs in a task: if this future is dropped
    /// before Chart answers, the task revokes the token that nobody will receive.
    pub async fn exchange(self, client: &ChartClient) -> Result<Connection<Exchanged>, Error> {
        let CodeReceived {
            code,
            verified,
            owner,
            session,
            guard,
        } = self.stage;
        let id = verified.id();
        let claim = Claim {
            id,
            expires_at: verified.expires_at(),
            session: &session,
        };
        if !guard.claim(claim).await.map_err(Error::ReplayGuard)? {
            return Err(Error::InvalidConnectState(ConnectStateError::Replayed));
        }
        let client = client.clone();
        let (answer, answered) = tokio::sync::oneshot::channel();
        let exchange = async move {
            let result = send_code(&client, &code, &verified, owner).await;
            let unsent = result.as_ref().is_err_and(|e| !e.code_may_be_spent());
            if unsent && let Err(release) = guard.release(id).await {
                tracing::warn!(error = %release, "could not release a replay claim");
            }
            if let Err(Ok(orphan)) = answer.send(result) {
                // The caller is gone: nobody will store this token, so it must not live.
                let revoked = client.disconnect_token(&orphan.stage.token).await.is_ok();
                tracing::warn!(
                    revoked,
                    "the caller left before Chart answered; the token nobody will receive was revoked (best effort)"
                );
            }
        };
        tokio::spawn(exchange.in_current_span());
        answered
            .await
            .unwrap_or(Err(Error::Internal("the exchange task was stopped")))
    }
}

/// Sends the code to `POST /auth/token`, once, in a span of its own.
async fn send_code(
    client: &ChartClient,
    code: &AuthorizationCode,
    verified: &VerifiedConnectState,
    owner: Owner,
) -> Result<Connection<Exchanged>, Error> {
    let flow = verified.flow();
    let span = tracing::info_span!(
        "chart.exchange",
        flow = flow.kind().as_str(),
        provider = tracing::field::Empty,
        status = tracing::field::Empty,
        attempt = tracing::field::Empty,
        duration_ms = tracing::field::Empty,
    );
    let started = std::time::Instant::now();
    let result = client
        .exchange_code(code, flow.redirect_uri())
        .instrument(span.clone())
        .await;
    span.record("duration_ms", started.elapsed().as_millis() as u64);
    match result {
        Ok(token) => {
            span.record("provider", token.provider_id.as_str());
            span.in_scope(|| tracing::info!("code exchanged"));
            Ok(Connection {
                stage: Exchanged {
                    client_id: client.config().client_id().to_owned(),
                    owner,
                    account_id: token.account_id,
                    provider_id: token.provider_id,
                    token: token.access_token,
                },
            })
        }
        Err(err) => {
            span.in_scope(|| tracing::warn!(error = %err, "exchange failed"));
            Err(err)
        }
    }
}

impl Connection<Exchanged> {
    /// Whose account it is.
    pub fn owner(&self) -> &Owner {
        &self.stage.owner
    }

    /// The connected account.
    pub fn account_id(&self) -> &str {
        &self.stage.account_id
    }

    /// The tax provider.
    pub fn provider_id(&self) -> &ProviderId {
        &self.stage.provider_id
    }

    /// The access token, for calls made before it is stored.
    pub fn access_token(&self) -> &AccessToken {
        &self.stage.token
    }

    /// Seals the access token in the vault. The stored connection holds no plaintext.
    ///
    /// This bare path replaces an earlier record of the same owner and account without
    /// revoking its token, since it has no client to revoke with:
    /// [`ChartConnect::complete`] does revoke it ([`Replaced`]).
    pub async fn store<S: TokenStore>(self, vault: &Vault<S>) -> Result<Connection<Stored>, Error> {
        check_client(vault, &self.stage)?;
        let stage = &self.stage;
        let account = vault
            .put(
                &stage.owner,
                &stage.account_id,
                &stage.provider_id,
                &stage.token,
            )
            .await?;
        Ok(Connection {
            stage: Stored {
                account,
                replaced: None,
            },
        })
    }
}

/// Refuses to seal a token in the vault of another client.
fn check_client<S>(vault: &Vault<S>, exchanged: &Exchanged) -> Result<(), VaultError> {
    if exchanged.client_id == vault.client_id() {
        Ok(())
    } else {
        Err(VaultError::WrongClient)
    }
}

impl Connection<Stored> {
    /// Whose account it is.
    pub fn owner(&self) -> &Owner {
        self.stage.account.owner()
    }

    /// The stored account's metadata.
    pub fn account(&self) -> &StoredAccount {
        &self.stage.account
    }

    /// The connected account.
    pub fn account_id(&self) -> &str {
        self.stage.account.account_id()
    }

    /// The tax provider.
    pub fn provider_id(&self) -> &ProviderId {
        self.stage.account.provider_id()
    }

    /// The id of the vault key that sealed the token.
    pub fn key_id(&self) -> KeyId {
        self.stage.account.key_id()
    }

    /// When the token was stored.
    pub fn stored_at(&self) -> SystemTime {
        self.stage.account.stored_at()
    }

    /// What became of the token of the record this connection replaced (a reconnect
    /// of an account the owner already had); `None` if there was none.
    pub fn replaced(&self) -> Option<&Replaced> {
        self.stage.replaced.as_ref()
    }
}

/// The Connect flow of one application: its [`ChartClient`], the
/// [`ConnectStateSigner`] that signs its Connect states, and its [`Vault`]. Cheap to
/// clone: clones share all three.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use chart_auth::vault::{Keyring, MemoryStore, Vault};
/// use chart_auth::{ChartClient, ChartConnect, ClientSecret, Config, ConnectStateSigner, Flow};
///
/// let client = ChartClient::new(Config::builder("my-client", ClientSecret::new("my-secret")).build()?)?;
/// let vault = Arc::new(Vault::new("my-client", Keyring::generate(), MemoryStore::default()));
/// let chart = ChartConnect::new(client, ConnectStateSigner::generate(), vault);
/// let start = chart.begin_connect(
///     Flow::Redirect { redirect_uri: "https://app.example.com/api/chart/callback".into() },
///     b"session-42",
///     &chart_auth::Owner::new("user-7")?,
/// )?;
/// assert!(start.connect_url.unwrap().starts_with("https://connect.trychart.com?client_id=my-client"));
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
pub struct ChartConnect<S> {
    client: ChartClient,
    signer: Arc<ConnectStateSigner>,
    vault: Arc<Vault<S>>,
    guard: Arc<dyn ReplayGuard>,
}

impl<S> Clone for ChartConnect<S> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            signer: self.signer.clone(),
            vault: self.vault.clone(),
            guard: self.guard.clone(),
        }
    }
}

impl<S> fmt::Debug for ChartConnect<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChartConnect")
            .field("client", &self.client)
            .field("signer", &self.signer)
            .field("vault", &self.vault)
            .field("replay_guard", &self.guard)
            .finish()
    }
}

impl<S: TokenStore> ChartConnect<S> {
    /// Joins a client, a Connect state signer and a vault, with a [`MemoryReplayGuard`]
    /// for this process. With several instances, give each the same signer key
    /// ([`ConnectStateSigner::from_key`]) and one shared guard
    /// ([`ChartConnect::with_replay_guard`]).
    pub fn new(client: ChartClient, signer: ConnectStateSigner, vault: Arc<Vault<S>>) -> Self {
        Self {
            client,
            signer: Arc::new(signer),
            vault,
            guard: Arc::new(MemoryReplayGuard::new()),
        }
    }

    /// Claims Connect states in `guard` instead of this process's memory. Every
    /// instance behind one load balancer must share one guard (for example a
    /// `PostgresReplayGuard`): with a guard per process, a callback replayed on another
    /// instance resends its code.
    #[must_use]
    pub fn with_replay_guard(mut self, guard: Arc<dyn ReplayGuard>) -> Self {
        self.guard = guard;
        self
    }

    /// The Chart API client.
    pub fn client(&self) -> &ChartClient {
        &self.client
    }

    /// The signer of Connect states.
    pub fn signer(&self) -> &ConnectStateSigner {
        &self.signer
    }

    /// The vault the tokens are sealed in.
    pub fn vault(&self) -> &Vault<S> {
        &self.vault
    }

    /// Starts a Connect session for `owner` (your user or tenant, from your server-side
    /// session): signs a Connect state bound to `session` (e.g. a hash of the user's
    /// session id) and to `owner` and, for the Redirect flow, builds the Connect URL.
    /// The account it connects will be `owner`'s; the state completes for no other.
    pub fn begin_connect(
        &self,
        flow: Flow,
        session: &[u8],
        owner: &Owner,
    ) -> Result<ConnectStart, Error> {
        if let Flow::Redirect { redirect_uri } = &flow {
            check_base_url(redirect_uri, "redirect")?;
        }
        let state = self.signer.issue(&flow, session, owner);
        let connect_url = match &flow {
            Flow::Redirect { redirect_uri } => {
                let cfg = self.client.config();
                let query = form_urlencoded::Serializer::new(String::new())
                    .append_pair("client_id", cfg.client_id())
                    .append_pair("redirect_uri", redirect_uri)
                    .append_pair("state", &state)
                    .finish();
                let base = cfg.connect_base();
                let sep = if base.contains('?') { '&' } else { '?' };
                Some(format!("{base}{sep}{query}"))
            }
            Flow::Embedded => None,
        };
        Ok(ConnectStart {
            state,
            connect_url,
            flow: flow.kind(),
        })
    }

    /// Verifies a Connect callback (`code` and `state`) against the caller's session,
    /// the owner that your server-side session names, and the channel it arrived on,
    /// giving the code that can be exchanged. A state begun for another session or
    /// owner is refused. The state is claimed when the code is exchanged (by
    /// [`ChartConnect::complete`] or [`Connection::exchange`]): a reload of the
    /// callback verifies again and is then refused as [`ConnectStateError::Replayed`].
    pub fn receive_code(
        &self,
        code: AuthorizationCode,
        state: &str,
        session: &[u8],
        owner: &Owner,
        via: FlowKind,
    ) -> Result<Connection<CodeReceived>, Error> {
        if code.expose_secret().is_empty() {
            return Err(Error::BadCallback("the code is empty".into()));
        }
        // Chart refuses a longer code as a malformed request, which would look like our
        // own bug (a 500) instead of the caller's bad input.
        if code.expose_secret().len() > MAX_CODE_LEN {
            return Err(Error::BadCallback("the code is too long".into()));
        }
        let verified = self.verify_state(state, session, owner, via)?;
        Ok(Connection {
            stage: CodeReceived {
                code,
                verified,
                owner: owner.clone(),
                session: Sha256::digest(session).into(),
                guard: self.guard.clone(),
            },
        })
    }

    /// Verifies a Connect state for `session` and `owner` without a code (a callback
    /// that reports a cancelled or failed Connect still proves it was begun here).
    pub(crate) fn verify_state(
        &self,
        state: &str,
        session: &[u8],
        owner: &Owner,
        via: FlowKind,
    ) -> Result<VerifiedConnectState, Error> {
        self.signer
            .verify(state, session, owner, via)
            .map_err(Error::InvalidConnectState)
    }

    /// Exchanges a received code and seals its token: the two steps a callback runs.
    /// The Connect state is claimed first, so a replay sends nothing
    /// ([`Connection::exchange`]).
    ///
    /// No live token is dropped: if storing fails after a good exchange, the new token
    /// is revoked at Chart (best effort), and [`Error::NotStored`] says whether it was.
    /// The exchange, the store and that revoke run in a task of their own, so they run
    /// to the end even if this future is dropped.
    pub async fn complete(
        &self,
        received: Connection<CodeReceived>,
    ) -> Result<Connection<Stored>, Error>
    where
        S: 'static,
    {
        let chart = self.clone();
        let task = async move { chart.exchange_and_store(received).await };
        tokio::spawn(task.in_current_span())
            .await
            .unwrap_or(Err(Error::Internal("the exchange task was stopped")))
    }

    async fn exchange_and_store(
        &self,
        received: Connection<CodeReceived>,
    ) -> Result<Connection<Stored>, Error> {
        let exchanged = received.exchange(&self.client).await?;
        let stage = &exchanged.stage;
        let stored = match check_client(&self.vault, stage) {
            Ok(()) => {
                self.vault
                    .replace(
                        &stage.owner,
                        &stage.account_id,
                        &stage.provider_id,
                        &stage.token,
                    )
                    .await
            }
            Err(e) => Err(e.into()),
        };
        match stored {
            Ok((account, old)) => {
                let replaced = match old {
                    Some(old) => Some(self.revoke_replaced(old, &stage.provider_id).await),
                    None => None,
                };
                Ok(Connection {
                    stage: Stored { account, replaced },
                })
            }
            Err(source) => {
                let revoked = self
                    .client
                    .disconnect_token(&exchanged.stage.token)
                    .await
                    .is_ok();
                tracing::error!(error = %source, revoked, "token not stored after a good exchange");
                Err(Error::NotStored {
                    revoked,
                    source: Box::new(source),
                })
            }
        }
    }

    /// Revokes the token of a record that a reconnect replaced, unless it shares the
    /// new token's provider (see [`Replaced`]).
    async fn revoke_replaced(&self, old: ReplacedRecord, provider_id: &ProviderId) -> Replaced {
        let old_provider = old.provider_id().clone();
        let Some(token) = old.token() else {
            return Replaced::Unreadable {
                provider_id: old_provider,
            };
        };
        if old_provider == *provider_id {
            return Replaced::SameGrant;
        }
        match self.client.disconnect_token(token).await {
            Ok(()) | Err(Error::InvalidToken(_)) => Replaced::Revoked {
                provider_id: old_provider,
            },
            Err(e) => {
                tracing::warn!(error = %e, provider = %old_provider, "the replaced token was not revoked");
                Replaced::RevokeFailed {
                    provider_id: old_provider,
                }
            }
        }
    }

    /// `owner`'s connected accounts, from the vault (metadata only; no call to Chart).
    pub async fn accounts(&self, owner: &Owner) -> Result<Vec<StoredAccount>, Error> {
        self.vault.list(owner).await
    }

    /// Unseals `owner`'s token of the account and calls `GET /introspect`. An account
    /// of another owner is [`VaultError::NotFound`].
    pub async fn introspect(
        &self,
        owner: &Owner,
        account_id: &str,
    ) -> Result<Introspection, Error> {
        let token = self.vault.unseal(owner, account_id).await?;
        self.client.introspect_token(&token).await
    }

    /// Calls `POST /disconnect` with `owner`'s token of the account, then deletes its
    /// record once Chart has confirmed. A token Chart no longer knows is deleted too. An
    /// account of another owner is [`VaultError::NotFound`], and nothing is sent.
    ///
    /// Only the record whose token was revoked is deleted: if a reconnect stored a new
    /// token for the account meanwhile (on this instance or another), that record and
    /// its live token stay.
    pub async fn disconnect(&self, owner: &Owner, account_id: &str) -> Result<(), Error> {
        let (token, version) = self.vault.unseal_versioned(owner, account_id).await?;
        match self.client.disconnect_token(&token).await {
            Ok(()) | Err(Error::InvalidToken(_)) => {
                self.vault
                    .delete_version(owner, account_id, version)
                    .await?;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
