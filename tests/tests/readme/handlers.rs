use std::sync::Arc;

use chart_auth::vault::{FileStore, Keyring, StoredAccount, Vault};
use chart_auth::{
    AuthorizationCode, ChartClient, ChartConnect, Config, ConnectStateSigner, Error, Flow,
    FlowKind, Owner,
};

const CALLBACK: &str = "https://app.example.com/api/chart/callback";

/// Built once at start, shared by the handlers.
fn chart() -> Result<ChartConnect<FileStore>, Error> {
    let client = ChartClient::new(Config::from_env()?)?; // CHART_CLIENT_ID, CHART_CLIENT_SECRET
    let keyring = Keyring::from_env()?; // the file at CHART_KEYRING_FILE
    let vault = Vault::new(client.config().client_id(), keyring, FileStore::open("/var/lib/app/chart-tokens")?);
    // Several instances: one shared key, ConnectStateSigner::from_key.
    Ok(ChartConnect::new(client, ConnectStateSigner::generate(), Arc::new(vault)))
}

/// Your signed-in user, from your server-side session (never from the browser's input).
fn owner_of(user_id: &str) -> Owner {
    Owner::new(user_id).expect("user ids are 1 to 256 bytes")
}

/// `GET /connect`: send the user's browser to this URL (a 303 from your handler).
fn start(chart: &ChartConnect<FileStore>, session_id: &str, user_id: &str) -> Result<String, Error> {
    let flow = Flow::Redirect { redirect_uri: CALLBACK.into() };
    let start = chart.begin_connect(flow, session_id.as_bytes(), &owner_of(user_id))?;
    Ok(start.connect_url.expect("the Redirect flow has a Connect URL"))
}

/// `GET /api/chart/callback?code=..&state=..`: verify, exchange once, seal as this user's.
/// Answer the browser with the account, never the token; on error, `err.user_message()`.
async fn callback(chart: &ChartConnect<FileStore>, session_id: &str, user_id: &str, code: String, state: &str) -> Result<String, Error> {
    let owner = owner_of(user_id);
    let received = chart.receive_code(AuthorizationCode::new(code), state, session_id.as_bytes(), &owner, FlowKind::Redirect)?;
    let stored = chart.complete(received).await?;
    Ok(stored.account_id().to_owned())
}

/// `GET /api/accounts`: this user's accounts, and no one else's.
async fn accounts(chart: &ChartConnect<FileStore>, user_id: &str) -> Result<Vec<StoredAccount>, Error> {
    chart.accounts(&owner_of(user_id)).await
}
