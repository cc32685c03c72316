//! The axum example's router, driven as axum would: a code goes in through
//! `route_service` and comes out as a stored account.

#[allow(dead_code)]
#[path = "../examples/axum.rs"]
mod example;

use std::future::poll_fn;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use chart_auth::vault::{Keyring, MemoryStore, Vault};
use chart_auth::{ChartClient, ChartConnect, ClientSecret, Config, ConnectStateSigner};
use chart_mock_server::{
    MintRequest, MockConfig, MockServer, SANDBOX_CLIENT_ID, SANDBOX_CLIENT_SECRET,
    SANDBOX_REDIRECT_URIS,
};
use http_body_util::BodyExt;
use tower_service::Service;

async fn send(router: &mut axum::Router, req: Request<Body>) -> Response {
    poll_fn(|cx| Service::<Request<Body>>::poll_ready(router, cx))
        .await
        .unwrap();
    router.call(req).await.unwrap()
}

fn get(uri: &str, cookie: &str) -> Request<Body> {
    Request::get(uri)
        .header(header::COOKIE, cookie)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_code_goes_through_route_service_and_comes_out_stored() {
    let mock = MockServer::start(MockConfig::default()).await.unwrap();
    let config = Config::builder(SANDBOX_CLIENT_ID, ClientSecret::new(SANDBOX_CLIENT_SECRET))
        .api_base(mock.url())
        .connect_base(format!("{}/connect", mock.url()))
        .build()
        .unwrap();
    let vault = Arc::new(Vault::new(
        SANDBOX_CLIENT_ID,
        Keyring::generate(),
        MemoryStore::default(),
    ));
    let chart = ChartConnect::new(
        ChartClient::new(config).unwrap(),
        ConnectStateSigner::generate(),
        vault.clone(),
    );
    let redirect_uri = SANDBOX_REDIRECT_URIS[0];
    let mut router = example::router(chart, redirect_uri.to_owned());

    // Logging in sets the session cookie.
    let login = send(
        &mut router,
        Request::get("/login").body(Body::empty()).unwrap(),
    )
    .await;
    let cookie = login.headers()[header::SET_COOKIE].to_str().unwrap();
    let cookie = cookie.split(';').next().unwrap().to_owned();
    assert!(cookie.starts_with("sid="), "{cookie}");

    // `/connect` sends the browser to Chart Connect with a state bound to the session.
    let start = send(&mut router, get("/connect", &cookie)).await;
    assert_eq!(start.status(), StatusCode::SEE_OTHER);
    let location = start.headers()[header::LOCATION].to_str().unwrap();
    let query = location.split_once('?').unwrap().1;
    let state = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();

    // Chart Connect redirects back with a code.
    let code = mock
        .mint_code(&MintRequest {
            client_id: SANDBOX_CLIENT_ID.into(),
            redirect_uri: Some(redirect_uri.into()),
            ..MintRequest::default()
        })
        .unwrap()
        .code;
    let callback_uri = format!(
        "/api/chart/callback?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("code", &code)
            .append_pair("state", &state)
            .finish()
    );

    // From another session, the callback is refused and the code is not spent.
    let other = send(&mut router, get(&callback_uri, "sid=someone-else")).await;
    assert_eq!(other.status(), StatusCode::FORBIDDEN);

    let done = send(&mut router, get(&callback_uri, &cookie)).await;
    assert_eq!(done.status(), StatusCode::OK);
    let body = done.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["status"], "connected");
    let account = body["account_id"].as_str().unwrap();
    assert!(!String::from_utf8_lossy(&serde_json::to_vec(&body).unwrap()).contains("access_token"));

    // Stored as the signed-in visitor's, whom the server's session table names.
    let all = vault.list_all().await.unwrap();
    assert_eq!(all.len(), 1);
    let owner = all[0].owner().clone();
    assert!(owner.as_bytes().starts_with(b"visitor-"), "{owner:?}");
    let stored = vault
        .get(&owner, account)
        .await
        .unwrap()
        .expect("a stored account");
    assert_eq!(stored.provider_id().as_str(), "chart-sandbox");
    let token = vault.unseal(&owner, account).await.unwrap();
    assert_eq!(
        mock.chart()
            .introspect(token.expose_secret())
            .unwrap()
            .account_id,
        account
    );
}
