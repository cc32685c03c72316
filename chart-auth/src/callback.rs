//! The callback endpoint: a hyper `Service` and a tower `Service` that verifies the
//! Connect state, exchanges the code and seals the token, for both flows.
//!
//! - Redirect flow: `GET <route>?code=..&state=..` (or `?error=..&state=..`).
//! - Embedded flow: `POST <route>` with JSON `{"code": "..", "state": ".."}` from Chart
//!   Connect's `onSuccess` (or `{"error": "..", "state": ".."}`).
//!
//! It answers `{"status": "connected", "account_id": .., "provider_id": ..}`, or a 303
//! to the configured success page. It never answers with the token. Errors answer
//! `{"error": <Error::label>, "message": <Error::user_message>}` with
//! [`Error::http_status`], or a 303 to the configured error page with
//! `?error=<label>&message=<user message>`
//! (redirect flow). `error=access_denied` is a clean "you cancelled" outcome.
//!
//! # Mounting it safely
//! Mount it behind your app's session middleware and give [`CallbackBuilder::session`]
//! a function that reads the caller's [`Session`] from the request: its binding (e.g.
//! the session id, or a hash of it) and its [`Owner`] (your user or tenant id), both
//! from your server-side session. The state signed by [`ChartConnect::begin_connect`]
//! is bound to both, so a callback completes only for the owner who began it, and the
//! account is stored as that owner's. The browser never says whose account it is.
//! [`CallbackBuilder::on_connected`] tells your code which account was connected for
//! which owner.
//!
//! What the Connect state stops: a callback that this application did not start for
//! this session (login CSRF: an attacker's own code and state planted in a victim's
//! browser), a state that expired, one meant for the other flow, and a replay of a state
//! already used. What it does not stop: Chart Connect has no PKCE, so an attacker who
//! steals a victim's *code* (from a log or a Referer header, say) can send it with a
//! state from their own session, and the exchange succeeds for the attacker. Keep codes
//! out of logs and referrers (this endpoint answers `Referrer-Policy: no-referrer`).
//!
//! The `POST` form requires `Content-Type: application/json`, which browsers cannot send
//! cross-site without a CORS preflight; do not enable CORS on this route.
//!
//! Each state is accepted once: the [`ChartConnect`]'s replay guard claims its id before
//! the code is sent, so a replayed callback (a refresh, the back button) is refused with
//! 409 `already_used` and never resends the code, which would make Chart revoke the
//! token it issued. The default guard lives in this process; with several instances,
//! give every one the same shared guard ([`ChartConnect::with_replay_guard`], e.g. a
//! `PostgresReplayGuard`).
//!
//! If storing fails after a good exchange, the new token is revoked at Chart (best
//! effort) and the error says whether that worked ([`Error::NotStored`]).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use serde::Deserialize;

use crate::connect_state::FlowKind;
use crate::error::{ConnectStateError, Error};
use crate::flow::{ChartConnect, Connection, Stored};
use crate::ids::Owner;
use crate::secret::AuthorizationCode;
use crate::vault::TokenStore;

/// The largest embedded-flow body accepted.
pub const MAX_CALLBACK_BODY: usize = 8 * 1024;
/// The most characters of a `?error=` value kept (before escaping).
const MAX_DENIED_ERROR_CHARS: usize = 64;

type SessionFn = dyn Fn(&http::request::Parts) -> Option<Session> + Send + Sync;
type ConnectedFn = dyn Fn(&Connection<Stored>) + Send + Sync;

/// Who is calling back, as your server-side session knows it. Its `Debug` shows the
/// owner, never the binding (a session id is a credential).
///
/// ```
/// use chart_auth::{Owner, Session};
/// let session = Session { binding: b"sid-secret".to_vec(), owner: Owner::new("user-1")? };
/// assert_eq!(
///     format!("{session:?}"),
///     r#"Session { binding: "<redacted>", owner: Owner("user-1") }"#
/// );
/// # Ok::<(), chart_auth::OwnerError>(())
/// ```
#[derive(Clone)]
pub struct Session {
    /// What the Connect state is bound to: the session id, or a hash of it.
    pub binding: Vec<u8>,
    /// Whose account the callback connects: your user or tenant.
    pub owner: Owner,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("binding", &"<redacted>")
            .field("owner", &self.owner)
            .finish()
    }
}

/// Builds a [`CallbackService`].
#[must_use]
pub struct CallbackBuilder<S> {
    chart: ChartConnect<S>,
    session: Option<Box<SessionFn>>,
    on_connected: Option<Box<ConnectedFn>>,
    success_page: Option<String>,
    error_page: Option<String>,
}

impl<S> fmt::Debug for CallbackBuilder<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackBuilder")
            .field("chart", &self.chart)
            .field("success_page", &self.success_page)
            .field("error_page", &self.error_page)
            .finish_non_exhaustive()
    }
}

impl<S> CallbackBuilder<S> {
    /// How to find the caller's [`Session`] in the request (usually from a cookie, in
    /// your session store): the binding and the owner. `None` refuses the callback, and
    /// without this function every callback is refused.
    pub fn session(
        mut self,
        session: impl Fn(&http::request::Parts) -> Option<Session> + Send + Sync + 'static,
    ) -> Self {
        self.session = Some(Box::new(session));
        self
    }

    /// Called once per connected account, after its token is stored and before the
    /// answer: the server-side place to learn which account was connected for which
    /// owner (`stored.owner()`, `stored.account_id()`). It must not block; spawn a task
    /// for slow work.
    pub fn on_connected(
        mut self,
        hook: impl Fn(&Connection<Stored>) + Send + Sync + 'static,
    ) -> Self {
        self.on_connected = Some(Box::new(hook));
        self
    }

    /// Redirect-flow successes answer 303 to this page instead of JSON.
    pub fn success_page(mut self, url: impl Into<String>) -> Self {
        self.success_page = Some(url.into());
        self
    }

    /// Redirect-flow errors answer 303 to this page with `?error=<label>&message=<user
    /// message>` instead of JSON.
    pub fn error_page(mut self, url: impl Into<String>) -> Self {
        self.error_page = Some(url.into());
        self
    }

    /// Builds the service.
    pub fn build(self) -> CallbackService<S> {
        CallbackService {
            inner: Arc::new(Inner {
                chart: self.chart,
                session: self.session.unwrap_or_else(|| Box::new(|_| None)),
                on_connected: self.on_connected,
                success_page: self.success_page,
                error_page: self.error_page,
            }),
        }
    }
}

/// The callback endpoint. Cheap to clone; clones share state.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// use std::sync::Arc;
/// use chart_auth::{CallbackService, ChartClient, ChartConnect, ClientSecret, Config, ConnectStateSigner, Owner, Session};
/// use chart_auth::vault::{Keyring, MemoryStore, Vault};
///
/// let client = ChartClient::new(Config::builder("id", ClientSecret::new("secret")).build()?)?;
/// let vault = Arc::new(Vault::new("id", Keyring::generate(), MemoryStore::default()));
/// let chart = ChartConnect::new(client, ConnectStateSigner::generate(), vault);
/// let callback = CallbackService::builder(chart)
///     .session(|parts| {
///         let cookie = parts.headers.get("cookie")?.to_str().ok()?;
///         let sid = cookie.split("; ").find_map(|c| c.strip_prefix("sid="))?;
///         // Your session store maps the session id to the signed-in user.
///         let user = if sid == "s-1" { "user-1" } else { return None };
///         Some(Session { binding: sid.as_bytes().to_vec(), owner: Owner::new(user).ok()? })
///     })
///     .on_connected(|stored| tracing::info!(account = stored.account_id(), "connected"))
///     .success_page("/accounts")
///     .build();
/// // A callback without code or state is refused with a message fit for the user.
/// let req = http::Request::get("/api/chart/callback").body(http_body_util::Empty::<bytes::Bytes>::new())?;
/// let resp = callback.handle(req).await;
/// assert_eq!(resp.status(), 400);
/// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
/// ```
pub struct CallbackService<S> {
    inner: Arc<Inner<S>>,
}

impl<S> Clone for CallbackService<S> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<S> fmt::Debug for CallbackService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackService")
            .field("success_page", &self.inner.success_page)
            .field("error_page", &self.inner.error_page)
            .finish_non_exhaustive()
    }
}

struct Inner<S> {
    chart: ChartConnect<S>,
    session: Box<SessionFn>,
    on_connected: Option<Box<ConnectedFn>>,
    success_page: Option<String>,
    error_page: Option<String>,
}

#[derive(Deserialize)]
struct EmbeddedBody {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

/// What a callback request carried, by flow.
struct Callback {
    via: FlowKind,
    code: Option<AuthorizationCode>,
    state: Option<String>,
    error: Option<String>,
}

impl<S: TokenStore + 'static> CallbackService<S> {
    /// Starts building the service around an application's Connect flow.
    pub fn builder(chart: ChartConnect<S>) -> CallbackBuilder<S> {
        CallbackBuilder {
            chart,
            session: None,
            on_connected: None,
            success_page: None,
            error_page: None,
        }
    }

    /// Handles one callback request.
    pub async fn handle<B>(&self, req: Request<B>) -> Response<Full<Bytes>>
    where
        B: http_body::Body + Send,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let (parts, body) = req.into_parts();
        let via = if parts.method == Method::POST {
            FlowKind::Embedded
        } else {
            FlowKind::Redirect
        };
        if parts.method != Method::GET && parts.method != Method::POST {
            let mut resp = json(
                StatusCode::METHOD_NOT_ALLOWED,
                &serde_json::json!({
                    "error": "method_not_allowed",
                    "message": "Use GET (redirect flow) or POST (embedded flow).",
                }),
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
            return resp;
        }
        let result = match parse(&parts, body).await {
            Ok(callback) => self.complete(&parts, callback).await,
            Err(e) => Err(e),
        };
        match result {
            Ok(stored) => {
                tracing::info!(flow = via.as_str(), provider = %stored.provider_id(), "account connected");
                match (&self.inner.success_page, via) {
                    (Some(page), FlowKind::Redirect) => see_other(page),
                    _ => json(
                        StatusCode::OK,
                        &serde_json::json!({
                            "status": "connected",
                            "account_id": stored.account_id(),
                            "provider_id": stored.provider_id().as_str(),
                        }),
                    ),
                }
            }
            Err(err) => {
                tracing::warn!(flow = via.as_str(), error = %err, "callback refused");
                match (&self.inner.error_page, via) {
                    (Some(page), FlowKind::Redirect) => {
                        let sep = if page.contains('?') { '&' } else { '?' };
                        // The label for code, the sentence for people: the same
                        // words the JSON answer of the embedded flow carries.
                        let query = form_urlencoded::Serializer::new(String::new())
                            .append_pair("error", err.label())
                            .append_pair("message", err.user_message())
                            .finish();
                        see_other(&format!("{page}{sep}{query}"))
                    }
                    _ => {
                        let status = if matches!(err, Error::ConnectDenied { .. }) {
                            "cancelled"
                        } else {
                            "error"
                        };
                        let mut resp = json(
                            err.http_status(),
                            &serde_json::json!({
                                "status": status,
                                "error": err.label(),
                                "message": err.user_message(),
                            }),
                        );
                        if let Error::RateLimited {
                            retry_after: Some(wait),
                            ..
                        } = &err
                        {
                            resp.headers_mut()
                                .insert(header::RETRY_AFTER, HeaderValue::from(wait.as_secs()));
                        }
                        resp
                    }
                }
            }
        }
    }

    async fn complete(
        &self,
        parts: &http::request::Parts,
        cb: Callback,
    ) -> Result<Connection<Stored>, Error> {
        let state = cb
            .state
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Error::BadCallback("the state is missing".into()))?;
        let session = (self.inner.session)(parts).ok_or(Error::InvalidConnectState(
            ConnectStateError::SessionMismatch,
        ))?;
        if let Some(error) = cb.error {
            // Still check the state, so a forged "cancelled" cannot be planted.
            self.inner
                .chart
                .verify_state(&state, &session.binding, &session.owner, cb.via)?;
            // The value comes from the URL: escaped, so it cannot forge log lines.
            return Err(Error::ConnectDenied {
                error: error
                    .chars()
                    .take(MAX_DENIED_ERROR_CHARS)
                    .flat_map(char::escape_default)
                    .collect(),
            });
        }
        let code = cb
            .code
            .ok_or_else(|| Error::BadCallback("the code is missing".into()))?;
        let received = self.inner.chart.receive_code(
            code,
            &state,
            &session.binding,
            &session.owner,
            cb.via,
        )?;
        let stored = self.inner.chart.complete(received).await?;
        if let Some(hook) = &self.inner.on_connected {
            hook(&stored);
        }
        Ok(stored)
    }
}

async fn parse<B>(parts: &http::request::Parts, body: B) -> Result<Callback, Error>
where
    B: http_body::Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if parts.method == Method::GET {
        let mut cb = Callback {
            via: FlowKind::Redirect,
            code: None,
            state: None,
            error: None,
        };
        for (k, v) in form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes()) {
            match k.as_ref() {
                "code" if !v.is_empty() => cb.code = Some(AuthorizationCode::new(v.into_owned())),
                "state" => cb.state = Some(v.into_owned()),
                "error" => cb.error = Some(v.into_owned()),
                _ => {}
            }
        }
        return Ok(cb);
    }
    let is_json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        return Err(Error::BadCallback(
            "the body must be application/json".into(),
        ));
    }
    let bytes = Limited::new(body, MAX_CALLBACK_BODY)
        .collect()
        .await
        .map_err(|_| Error::BadCallback("the body is unreadable or too large".into()))?
        .to_bytes();
    let bad = || Error::BadCallback("the body must be a JSON object with code and state".into());
    // Only an object: serde would also read a struct from a JSON array.
    let object = match serde_json::from_slice::<serde_json::Value>(&bytes) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ => return Err(bad()),
    };
    let body: EmbeddedBody = serde_json::from_value(object).map_err(|_| bad())?;
    Ok(Callback {
        via: FlowKind::Embedded,
        code: body
            .code
            .filter(|c| !c.is_empty())
            .map(AuthorizationCode::new),
        state: body.state,
        error: body.error,
    })
}

fn json(status: StatusCode, body: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    no_store(h);
    resp
}

fn see_other(location: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(v) = HeaderValue::from_str(location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    no_store(resp.headers_mut());
    resp
}

fn no_store(h: &mut http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The callback URL carries the code: never leak it through the Referer header.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

impl<S, B> hyper::service::Service<Request<B>> for CallbackService<S>
where
    S: TokenStore + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, req: Request<B>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.handle(req).await) })
    }
}

/// The same service for tower: axum mounts it with `Router::route_service`.
impl<S, B> tower_service::Service<Request<B>> for CallbackService<S>
where
    S: TokenStore + 'static,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Full<Bytes>>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        hyper::service::Service::call(&*self, req)
    }
}
