//! Shared helpers: a TLS mock, an SDK client that trusts only the mock's CA, and codes
//! that arrive through a verified callback.
#![allow(dead_code)]

pub mod capture;
pub mod gate;
pub mod golden;
pub mod leaks;
pub mod owners;
#[cfg(feature = "pkcs11")]
pub mod softhsm;
pub mod tls;

use std::sync::Arc;
use std::time::Duration;

use chart_auth::vault::{Keyring, MemoryStore, TokenStore, Vault};
use chart_auth::{
    AuthorizationCode, ChartClient, ChartConnect, ClientSecret, CodeReceived, Config,
    ConfigBuilder, ConnectStateSigner, Connection, Flow, FlowKind, Owner, Session,
};
use chart_mock_server::{
    ClientConfig, Fault, FaultKind, MintRequest, MockConfig, MockServer, SANDBOX_CLIENT_ID,
    SANDBOX_CLIENT_SECRET, SANDBOX_REDIRECT_URIS, Scenario,
};

pub const SESSION: &[u8] = b"session-of-the-test-user";
/// The owner id of the test user (whose session is [`SESSION`]).
pub const OWNER: &str = "owner-test-user";

/// The test user, as the vault and the Connect flow name them.
pub fn owner() -> Owner {
    Owner::new(OWNER).expect("a valid owner")
}

/// Another user, who must never see the test user's accounts.
pub fn other_owner() -> Owner {
    Owner::new("owner-someone-else").expect("a valid owner")
}

/// Where a store files the test user's record of `account`.
pub fn key(account: &str) -> chart_auth::vault::RecordKey {
    chart_auth::vault::RecordKey::new(OWNER.as_bytes(), account)
}

/// The test user's server-side session, as a callback's session function returns it.
pub fn session() -> Session {
    Session {
        binding: SESSION.to_vec(),
        owner: owner(),
    }
}
pub const OTHER_CLIENT: &str = "other-client";
/// The key every test's Connect states are signed with.
pub const STATE_KEY: [u8; 32] = [9; 32];

pub fn redirect_uri() -> String {
    SANDBOX_REDIRECT_URIS[0].to_owned()
}

pub struct Env {
    pub mock: MockServer,
    pub client: ChartClient,
    pub vault: Arc<Vault<MemoryStore>>,
    /// The client, a signer keyed with [`STATE_KEY`] and the vault, joined.
    pub chart: ChartConnect<MemoryStore>,
}

pub fn mock_config() -> MockConfig {
    let mut config = MockConfig {
        tls: true,
        slow_ms: 300,
        ..MockConfig::default()
    };
    config.clients.push(ClientConfig {
        client_id: OTHER_CLIENT.into(),
        client_secret: "other-secret".into(),
        redirect_uris: vec![redirect_uri()],
        allowed_origins: Vec::new(),
    });
    config
}

/// The SDK's configuration against this mock: trusts only the mock's CA, short timeouts.
pub fn sdk_config(mock: &MockServer) -> ConfigBuilder {
    Config::builder(SANDBOX_CLIENT_ID, ClientSecret::new(SANDBOX_CLIENT_SECRET))
        .api_base(mock.url())
        .webpki_roots(false)
        .add_root_certificates_pem(mock.ca_pem().expect("TLS mock").as_bytes())
        .connect_timeout(Duration::from_secs(2))
        .request_timeout(Duration::from_secs(3))
        .deadline(Duration::from_secs(6))
}

pub async fn env() -> Env {
    env_with(|b| b).await
}

pub async fn env_with(adjust: impl FnOnce(ConfigBuilder) -> ConfigBuilder) -> Env {
    let mock = MockServer::start(mock_config()).await.expect("mock starts");
    let client =
        ChartClient::new(adjust(sdk_config(&mock)).build().expect("config")).expect("client");
    let vault = Arc::new(Vault::new(
        client.config().client_id(),
        Keyring::generate(),
        MemoryStore::default(),
    ));
    let signer = ConnectStateSigner::from_key(&STATE_KEY).expect("state key");
    let chart = ChartConnect::new(client.clone(), signer, vault.clone());
    Env {
        mock,
        client,
        vault,
        chart,
    }
}

impl Env {
    pub fn mint(&self, redirect: bool, scenario: Scenario) -> String {
        self.mock
            .mint_code(&MintRequest {
                client_id: SANDBOX_CLIENT_ID.into(),
                provider_id: Some("turbotax".into()),
                redirect_uri: redirect.then(redirect_uri),
                scenario: Some(scenario),
                ..Default::default()
            })
            .expect("mint")
            .code
    }

    /// A code as it arrives at the callback, with a state this client signed.
    pub fn receive(&self, code: &str, flow: Flow) -> Connection<CodeReceived> {
        receive_on(&self.chart, code, flow)
    }

    pub fn redirect_code(&self, scenario: Scenario) -> Connection<CodeReceived> {
        let code = self.mint(true, scenario);
        self.receive(
            &code,
            Flow::Redirect {
                redirect_uri: redirect_uri(),
            },
        )
    }

    pub fn embedded_code(&self, scenario: Scenario) -> Connection<CodeReceived> {
        let code = self.mint(false, scenario);
        self.receive(&code, Flow::Embedded)
    }

    /// How many `/auth/token` requests the mock saw for this code.
    pub fn token_requests_for(&self, code: &str) -> usize {
        let id = self.mock.chart().code_id(code).expect("known code");
        self.mock
            .journal()
            .iter()
            .filter(|e| e.path == "/auth/token" && e.code_id.as_deref() == Some(id.as_str()))
            .count()
    }
}

/// A code as it arrives at `client`'s callback, in the embedded flow, through a
/// throwaway signer and vault (for clients other than the environment's).
pub fn receive_with(client: &ChartClient, code: &str) -> Connection<CodeReceived> {
    receive_via(client, code, Flow::Embedded)
}

/// Like [`receive_with`], in either flow.
pub fn receive_via(client: &ChartClient, code: &str, flow: Flow) -> Connection<CodeReceived> {
    let chart = ChartConnect::new(
        client.clone(),
        ConnectStateSigner::generate(),
        Arc::new(Vault::new(
            client.config().client_id(),
            Keyring::generate(),
            MemoryStore::default(),
        )),
    );
    receive_on(&chart, code, flow)
}

/// A code as it arrives at `chart`'s callback: a state begun for the test user's
/// session and owner, then verified.
pub fn receive_on<S: TokenStore>(
    chart: &ChartConnect<S>,
    code: &str,
    flow: Flow,
) -> Connection<CodeReceived> {
    let kind = flow.kind();
    let start = chart.begin_connect(flow, SESSION, &owner()).expect("begin");
    chart
        .receive_code(
            AuthorizationCode::new(code),
            &start.state,
            SESSION,
            &owner(),
            kind,
        )
        .expect("verified")
}

pub fn via(flow: &Flow) -> FlowKind {
    flow.kind()
}

/// A fault on `/auth/token`, once.
pub fn fault(kind: FaultKind) -> Fault {
    Fault {
        kind,
        path: "/auth/token".into(),
        times: 1,
        status: None,
        delay_ms: None,
        retry_after: None,
    }
}

/// A `status` fault on `/auth/token`.
pub fn status_fault(status: u16, times: u32, retry_after: Option<u64>) -> Fault {
    Fault {
        status: Some(status),
        times,
        retry_after,
        ..fault(FaultKind::Status)
    }
}
