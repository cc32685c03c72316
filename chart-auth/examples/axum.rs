//! The callback in an axum backend: `route_service` mounts [`CallbackService`], a
//! handler serves `begin_connect`, and the session comes from a cookie.
//!
//! ```sh
//! cargo run -p chart-auth --example axum    # then open http://localhost:3000/login
//! ```
//!
//! It runs the mock Chart server in-process. `/login` sets a session cookie, `/connect`
//! sends the browser to Chart Connect with a Connect state bound to that session, and
//! Chart Connect redirects back to `/api/chart/callback`, which exchanges the code and
//! seals the token. `chart-auth/tests/axum.rs` drives this same router.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chart_auth::vault::{Keyring, MemoryStore, TokenStore, Vault};
use chart_auth::{
    CallbackService, ChartClient, ChartConnect, ClientSecret, Config, ConnectStateSigner, Flow,
};
use chart_mock_server::{
    MockConfig, MockServer, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, SANDBOX_REDIRECT_URIS,
};

/// The session cookie's name.
const SESSION_COOKIE: &str = "sid";

/// What the handlers share.
struct App<S> {
    chart: ChartConnect<S>,
    redirect_uri: String,
}

/// The backend's routes: `/login`, `/connect` and the callback.
pub fn router<S: TokenStore + 'static>(chart: ChartConnect<S>, redirect_uri: String) -> Router {
    let callback = CallbackService::builder(chart.clone())
        .session(|parts| session_of(&parts.headers))
        .build();
    Router::new()
        .route("/login", get(login))
        .route("/connect", get(begin_connect::<S>))
        .route_service("/api/chart/callback", callback)
        .with_state(Arc::new(App {
            chart,
            redirect_uri,
        }))
}

/// The session binding: the session cookie's value. A real app would use its session
/// middleware's id, or a hash of it.
fn session_of(headers: &HeaderMap) -> Option<Vec<u8>> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .filter(|v| !v.is_empty())
        .map(|v| v.as_bytes().to_vec())
}

/// Logs the visitor in: a fresh random session id in an HttpOnly cookie.
async fn login() -> Response {
    let mut id = [0u8; 16];
    if getrandom::fill(&mut id).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let sid: String = id.iter().map(|b| format!("{b:02x}")).collect();
    (
        [(
            header::SET_COOKIE,
            format!("{SESSION_COOKIE}={sid}; HttpOnly; SameSite=Lax; Path=/"),
        )],
        Redirect::to("/connect"),
    )
        .into_response()
}

/// Starts Chart Connect (Redirect flow) for the logged-in visitor.
async fn begin_connect<S: TokenStore + 'static>(
    State(app): State<Arc<App<S>>>,
    headers: HeaderMap,
) -> Response {
    let Some(session) = session_of(&headers) else {
        return Redirect::to("/login").into_response();
    };
    let flow = Flow::Redirect {
        redirect_uri: app.redirect_uri.clone(),
    };
    match app.chart.begin_connect(flow, &session) {
        Ok(start) => match start.connect_url {
            Some(url) => Redirect::to(&url).into_response(),
            None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        },
        Err(e) => (e.http_status(), e.user_message()).into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mock = MockServer::start(MockConfig::default()).await?;
    let config = Config::builder(SANDBOX_CLIENT_ID, ClientSecret::new(SANDBOX_CLIENT_SECRET))
        .api_base(mock.url())
        .connect_base(format!("{}/connect", mock.url()))
        .build()?;
    let chart = ChartConnect::new(
        ChartClient::new(config)?,
        ConnectStateSigner::generate(),
        Arc::new(Vault::new(
            SANDBOX_CLIENT_ID,
            Keyring::generate(),
            MemoryStore::default(),
        )),
    );
    let app = router(chart, SANDBOX_REDIRECT_URIS[0].to_owned());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("mock Chart server at {}", mock.url());
    println!("ready: open http://localhost:3000/login (Ctrl-C stops)");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
