//! The callback in an axum backend: `route_service` mounts [`CallbackService`], a
//! handler serves `begin_connect`, and the session comes from a cookie.
//!
//! ```sh
//! cargo run -p chart-auth --example axum    # then open http://localhost:3000/login
//! ```
//!
//! It runs the mock Chart server in-process. `/login` signs a new visitor in (a user id
//! in the server's session table, a session cookie in the browser), `/connect` sends
//! the browser to Chart Connect with a Connect state bound to that session and user, and
//! Chart Connect redirects back to `/api/chart/callback`, which exchanges the code and
//! seals the token as that user's. `chart-auth/tests/axum.rs` drives this same router.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use chart_auth::vault::{Keyring, MemoryStore, TokenStore, Vault};
use chart_auth::{
    CallbackService, ChartClient, ChartConnect, ClientSecret, Config, ConnectStateSigner, Flow,
    Owner, Session,
};
use chart_mock_server::{
    MockConfig, MockServer, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET, SANDBOX_REDIRECT_URIS,
};

/// The session cookie's name.
const SESSION_COOKIE: &str = "sid";

/// The server's session table: session id → signed-in user. A real app has its own.
type Sessions = Arc<Mutex<HashMap<String, Owner>>>;

/// What the handlers share.
struct App<S> {
    chart: ChartConnect<S>,
    redirect_uri: String,
    sessions: Sessions,
}

/// The backend's routes: `/login`, `/connect` and the callback.
pub fn router<S: TokenStore + 'static>(chart: ChartConnect<S>, redirect_uri: String) -> Router {
    let sessions = Sessions::default();
    let table = sessions.clone();
    let callback = CallbackService::builder(chart.clone())
        .session(move |parts| session_of(&table, &parts.headers))
        .build();
    Router::new()
        .route("/login", get(login::<S>))
        .route("/connect", get(begin_connect::<S>))
        .route_service("/api/chart/callback", callback)
        .with_state(Arc::new(App {
            chart,
            redirect_uri,
            sessions,
        }))
}

/// The caller's session: the session cookie's value as the binding, and the user the
/// server's table has for it as the owner. Nothing the browser says names the owner.
fn session_of(sessions: &Sessions, headers: &HeaderMap) -> Option<Session> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    let sid = cookies
        .split(';')
        .find_map(|c| c.trim().strip_prefix(SESSION_COOKIE)?.strip_prefix('='))
        .filter(|v| !v.is_empty())?;
    let owner = sessions.lock().ok()?.get(sid)?.clone();
    Some(Session {
        binding: sid.as_bytes().to_vec(),
        owner,
    })
}

fn random_hex() -> Option<String> {
    let mut id = [0u8; 16];
    getrandom::fill(&mut id).ok()?;
    Some(id.iter().map(|b| format!("{b:02x}")).collect())
}

/// Logs a new visitor in: a user id in the session table, and a fresh random session
/// id in an HttpOnly cookie.
async fn login<S: TokenStore + 'static>(State(app): State<Arc<App<S>>>) -> Response {
    let (Some(sid), Some(user)) = (random_hex(), random_hex()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(owner) = Owner::new(format!("visitor-{}", &user[..8])) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    match app.sessions.lock() {
        Ok(mut table) => table.insert(sid.clone(), owner),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
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
    let Some(session) = session_of(&app.sessions, &headers) else {
        return Redirect::to("/login").into_response();
    };
    let flow = Flow::Redirect {
        redirect_uri: app.redirect_uri.clone(),
    };
    match app
        .chart
        .begin_connect(flow, &session.binding, &session.owner)
    {
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
