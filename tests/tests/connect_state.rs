//! The signed Connect `state`, the callback verification and the parsers.

mod support;
use support::owner;

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use std::sync::Arc;

use chart_auth::fuzzing::TokenResponse;
use chart_auth::vault::{Keyring, MemoryStore, Vault};
use chart_auth::{
    AuthorizationCode, ChartClient, ChartConnect, ClientSecret, Config, ConfigError,
    ConnectStateError, ConnectStateSigner, Error, Flow, FlowKind, ProviderId,
};
use proptest::prelude::*;

/// A client's Connect flow with a fresh signer and an in-memory vault.
fn connect(config: Config) -> ChartConnect<MemoryStore> {
    let vault = Vault::new(
        config.client_id(),
        Keyring::generate(),
        MemoryStore::default(),
    );
    ChartConnect::new(
        ChartClient::new(config).unwrap(),
        ConnectStateSigner::generate(),
        Arc::new(vault),
    )
}

fn redirect() -> Flow {
    Flow::Redirect {
        redirect_uri: "https://app.example.com/api/chart/callback".into(),
    }
}

#[test]
fn verification_refuses_each_kind_of_bad_state() {
    let signer = ConnectStateSigner::generate();
    let now = SystemTime::now();
    let state = signer.issue_at(&redirect(), b"alice", &owner(), now);
    let ok = signer
        .verify_at(&state, b"alice", &owner(), FlowKind::Redirect, now)
        .unwrap();
    assert_eq!(ok.flow(), &redirect());

    // Forged: another key, or garbage.
    let other = ConnectStateSigner::generate().issue_at(&redirect(), b"alice", &owner(), now);
    assert_eq!(
        signer
            .verify_at(&other, b"alice", &owner(), FlowKind::Redirect, now)
            .unwrap_err(),
        ConnectStateError::Forged
    );
    for junk in ["", "x", "%%%", &"A".repeat(5000)] {
        assert_eq!(
            signer
                .verify_at(junk, b"alice", &owner(), FlowKind::Redirect, now)
                .unwrap_err(),
            ConnectStateError::Forged
        );
    }
    // Expired.
    let later = now + ConnectStateSigner::DEFAULT_TTL + Duration::from_secs(1);
    assert_eq!(
        signer
            .verify_at(&state, b"alice", &owner(), FlowKind::Redirect, later)
            .unwrap_err(),
        ConnectStateError::Expired
    );
    // Another session.
    assert_eq!(
        signer
            .verify_at(&state, b"mallory", &owner(), FlowKind::Redirect, now)
            .unwrap_err(),
        ConnectStateError::SessionMismatch
    );
    // The other flow.
    assert_eq!(
        signer
            .verify_at(&state, b"alice", &owner(), FlowKind::Embedded, now)
            .unwrap_err(),
        ConnectStateError::FlowMismatch
    );
    // Each state is unique, and its id is stable through verification.
    let again = signer.issue_at(&redirect(), b"alice", &owner(), now);
    assert_ne!(state, again);
    assert_ne!(
        ok.id(),
        signer
            .verify_at(&again, b"alice", &owner(), FlowKind::Redirect, now)
            .unwrap()
            .id()
    );
}

#[test]
fn shared_keys_verify_across_instances_and_short_keys_are_refused() {
    let key = [7u8; 32];
    let a = ConnectStateSigner::from_key(&key).unwrap();
    let b = ConnectStateSigner::from_key(&key).unwrap();
    let state = a.issue(&Flow::Embedded, b"s", &owner());
    b.verify(&state, b"s", &owner(), FlowKind::Embedded)
        .unwrap();
    assert!(matches!(
        ConnectStateSigner::from_key(&[1; 16]),
        Err(ConfigError::StateKeyTooShort)
    ));
    // The signer keeps a key derived from the shared one (HMAC-SHA256 of a fixed label);
    // neither may show in any form.
    let derived = {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
        mac.update(b"chart-auth/state-key/v1");
        mac.finalize().into_bytes().to_vec()
    };
    let debug = format!("{a:?}");
    support::leaks::assert_no_leak(debug.as_bytes(), &[key.to_vec(), derived], "Debug");
}

#[test]
fn receive_code_maps_state_errors_and_refuses_empty_codes() {
    let client = connect(
        Config::builder("c", ClientSecret::new("s"))
            .build()
            .unwrap(),
    );
    let start = client
        .begin_connect(Flow::Embedded, b"s1", &owner())
        .unwrap();
    assert!(start.connect_url.is_none());
    let err = client
        .receive_code(
            AuthorizationCode::new("code"),
            &start.state,
            b"s2",
            &owner(),
            FlowKind::Embedded,
        )
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidConnectState(ConnectStateError::SessionMismatch)
    ));
    assert!(!err.user_message().is_empty());
    let err = client
        .receive_code(
            AuthorizationCode::new(""),
            &start.state,
            b"s1",
            &owner(),
            FlowKind::Embedded,
        )
        .unwrap_err();
    assert!(matches!(err, Error::BadCallback(_)));
    let conn = client
        .receive_code(
            AuthorizationCode::new("code"),
            &start.state,
            b"s1",
            &owner(),
            FlowKind::Embedded,
        )
        .unwrap();
    assert_eq!(conn.flow(), &Flow::Embedded);
    assert!(!format!("{conn:?}").contains("code\""), "{conn:?}");
}

#[test]
fn connect_urls_are_encoded_and_redirect_uris_checked() {
    let client = connect(
        Config::builder("my client", ClientSecret::new("s"))
            .connect_base("http://127.0.0.1:4010/connect")
            .build()
            .unwrap(),
    );
    let start = client.begin_connect(redirect(), b"s", &owner()).unwrap();
    let url = start.connect_url.unwrap();
    assert!(url.starts_with("http://127.0.0.1:4010/connect?client_id=my+client&redirect_uri=https%3A%2F%2Fapp.example.com"), "{url}");
    assert!(url.ends_with(&format!("state={}", start.state)));
    let err = client.begin_connect(
        Flow::Redirect {
            redirect_uri: "http://evil.example.com/cb".into(),
        },
        b"s",
        &owner(),
    );
    assert!(matches!(err, Err(Error::Config(_))));
}

#[test]
fn token_responses_accept_either_account_name_and_any_provider() {
    let a = TokenResponse::parse(br#"{"account_id":"a","provider_id":"hr","access_token":"t"}"#)
        .unwrap();
    assert_eq!(
        (a.account_id.as_str(), a.provider_id),
        ("a", ProviderId::HrBlock)
    );
    let b = TokenResponse::parse(
        br#"{"taxpayer_id":"b","provider_id":"brand_new","access_token":"t"}"#,
    )
    .unwrap();
    assert_eq!(b.provider_id, ProviderId::Other("brand_new".into()));
    for known in ProviderId::known() {
        assert_eq!(ProviderId::from(known.as_str()), known);
    }
    for bad in [
        &b"{}"[..],
        b"null",
        br#"{"account_id":"a","provider_id":"p"}"#,
        br#"{"account_id":"","provider_id":"p","access_token":"t"}"#,
    ] {
        assert!(matches!(
            TokenResponse::parse(bad),
            Err(Error::MalformedResponse { .. })
        ));
    }
}

#[derive(Clone, Debug)]
enum StateOp {
    /// Issue a state for a flow (embedded or redirect) and a session.
    Issue { embedded: bool, session: u8 },
    /// Move the clock forward.
    Wait(u64),
    /// Verify state `n` (modulo those issued) for a session and a flow, then claim it in
    /// the replay guard if it verified.
    Verify {
        state: usize,
        session: u8,
        embedded: bool,
    },
}

fn state_op() -> impl Strategy<Value = StateOp> {
    prop_oneof![
        2 => (any::<bool>(), 0..3u8).prop_map(|(embedded, session)| StateOp::Issue { embedded, session }),
        1 => (0..1_200u64).prop_map(StateOp::Wait),
        4 => (any::<usize>(), 0..3u8, any::<bool>())
            .prop_map(|(state, session, embedded)| StateOp::Verify { state, session, embedded }),
    ]
}

proptest! {
    /// Verification and the replay guard against a model written from DESIGN §3: a
    /// state verifies only for its own session, before it expires, in its own flow;
    /// and a verified state is claimed once, every later claim being a replay.
    #[test]
    fn verification_and_replay_agree_with_their_model(ops in proptest::collection::vec(state_op(), 1..40)) {
        let signer = ConnectStateSigner::generate().with_ttl(Duration::from_secs(900));
        let guard = chart_auth::MemoryReplayGuard::default();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let start = SystemTime::now();
        let mut now = start;
        // (state, embedded, session, issued at)
        let mut issued: Vec<(String, bool, u8, SystemTime)> = Vec::new();
        let mut claimed = std::collections::HashSet::new();
        let session_bytes = |s: u8| vec![b's', s];
        for op in ops {
            match op {
                StateOp::Issue { embedded, session } => {
                    let flow = if embedded { Flow::Embedded } else { redirect() };
                    issued.push((signer.issue_at(&flow, &session_bytes(session), &owner(), now), embedded, session, now));
                }
                StateOp::Wait(secs) => now += Duration::from_secs(secs),
                StateOp::Verify { state, session, embedded } => {
                    if issued.is_empty() {
                        continue;
                    }
                    let (text, was_embedded, own, at) = issued[state % issued.len()].clone();
                    let via = if embedded { FlowKind::Embedded } else { FlowKind::Redirect };
                    let expected = if session != own {
                        Err(ConnectStateError::SessionMismatch)
                    } else if now >= at + Duration::from_secs(900) {
                        Err(ConnectStateError::Expired)
                    } else if embedded != was_embedded {
                        Err(ConnectStateError::FlowMismatch)
                    } else {
                        Ok(())
                    };
                    let got = signer.verify_at(&text, &session_bytes(session), &owner(), via, now);
                    prop_assert_eq!(got.as_ref().map(|_| ()).map_err(Clone::clone), expected);
                    if let Ok(verified) = got {
                        let first = rt.block_on(chart_auth::ReplayGuard::claim(&guard, chart_auth::Claim {
                            id: verified.id(),
                            expires_at: verified.expires_at(),
                            session: &session_bytes(session),
                        })).unwrap();
                        prop_assert_eq!(first, claimed.insert(text.clone()), "a replay was let through, or a first claim refused");
                    }
                }
            }
        }
    }

    #[test]
    fn states_round_trip(session in proptest::collection::vec(any::<u8>(), 0..64), uri in "https://[a-z]{1,12}\\.example/[a-z/]{0,20}", embedded in any::<bool>()) {
        let signer = ConnectStateSigner::generate();
        let flow = if embedded { Flow::Embedded } else { Flow::Redirect { redirect_uri: uri } };
        let state = signer.issue(&flow, &session, &owner());
        let verified = signer.verify(&state, &session, &owner(), flow.kind()).unwrap();
        prop_assert_eq!(verified.flow(), &flow);
    }

    #[test]
    fn any_mutation_of_a_state_is_rejected(index in any::<prop::sample::Index>(), flip in 1u8..=255) {
        let signer = ConnectStateSigner::generate();
        let state = signer.issue(&redirect(), b"s", &owner());
        let mut raw = URL_SAFE_NO_PAD.decode(&state).unwrap();
        let i = index.index(raw.len());
        raw[i] ^= flip;
        let forged = URL_SAFE_NO_PAD.encode(&raw);
        prop_assert_eq!(signer.verify(&forged, b"s", &owner(), FlowKind::Redirect).unwrap_err(), ConnectStateError::Forged);
        // Truncations and extensions too.
        prop_assert_eq!(
            signer.verify(&state[..i.min(state.len() - 1)], b"s", &owner(), FlowKind::Redirect).unwrap_err(),
            ConnectStateError::Forged
        );
        let extended = format!("{state}A");
        prop_assert_eq!(signer.verify(&extended, b"s", &owner(), FlowKind::Redirect).unwrap_err(), ConnectStateError::Forged);
    }

    #[test]
    fn arbitrary_states_never_panic(state in ".{0,300}", session in proptest::collection::vec(any::<u8>(), 0..16)) {
        let _ = ConnectStateSigner::generate().verify(&state, &session, &owner(), FlowKind::Embedded);
    }

    #[test]
    fn token_parser_never_panics_and_round_trips(account in "[a-z0-9-]{1,40}", provider in "[a-z_-]{1,20}", token in "tok_[A-Za-z0-9._~-]{8,80}", use_taxpayer in any::<bool>()) {
        let key = if use_taxpayer { "taxpayer_id" } else { "account_id" };
        let body = serde_json::json!({ key: account, "provider_id": provider, "access_token": token });
        let parsed = TokenResponse::parse(body.to_string().as_bytes()).unwrap();
        prop_assert_eq!(&parsed.account_id, &account);
        prop_assert_eq!(parsed.provider_id.as_str(), provider.as_str());
        prop_assert_eq!(parsed.access_token.expose_secret(), token.as_str());
        let shown = format!("{parsed:?}");
        prop_assert!(!shown.contains(&token));
    }

    #[test]
    fn token_parser_errors_never_echo_input(body in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Err(e) = TokenResponse::parse(&body) {
            let shown = format!("{e} {e:?}");
            if body.len() >= 8 {
                let text = String::from_utf8_lossy(&body);
                prop_assert!(!shown.contains(text.as_ref()));
            }
        }
    }
}

#[test]
fn scrubbing_never_leaves_a_secret_even_one_the_marker_spells() {
    let headers = http::HeaderMap::new();
    for secret in ["ed>", "<redacted>", "code-123", "a"] {
        let body = serde_json::json!({"name": format!("n {secret}"), "message": format!("bad {secret} and {secret}")});
        let err = chart_auth::fuzzing::error_from_response(
            http::StatusCode::BAD_REQUEST,
            &headers,
            body.to_string().as_bytes(),
            &[secret],
        );
        let d = err.detail().unwrap();
        for kept in [&d.name, &d.message].into_iter().flatten() {
            assert!(!kept.contains(secret), "{secret:?} survived in {kept:?}");
        }
    }
    // A secret cut by the length limit leaves no prefix behind: it is replaced before the cut.
    let secret = "s3cr3t-s3cr3t-s3cr3t";
    let message = format!("{}{secret}", "x".repeat(500));
    let body = serde_json::json!({"name": "x", "message": message});
    let err = chart_auth::fuzzing::error_from_response(
        http::StatusCode::BAD_REQUEST,
        &headers,
        body.to_string().as_bytes(),
        &[secret],
    );
    assert!(
        !err.detail()
            .unwrap()
            .message
            .as_deref()
            .unwrap()
            .contains("s3cr3t")
    );
}

/// The default lifetime is 15 minutes: a state 14 minutes old verifies, one just past 15
/// minutes has expired. The signer's Debug shows the lifetime and never the key.
#[test]
fn the_default_state_lifetime_is_fifteen_minutes_and_debug_hides_the_key() {
    assert_eq!(ConnectStateSigner::DEFAULT_TTL, Duration::from_secs(900));
    let key = [0x5a; 32];
    let signer = ConnectStateSigner::from_key(&key).unwrap();
    let now = SystemTime::now();
    let fresh = signer.issue_at(
        &Flow::Embedded,
        b"s",
        &owner(),
        now - Duration::from_secs(14 * 60),
    );
    assert!(
        signer
            .verify(&fresh, b"s", &owner(), FlowKind::Embedded)
            .is_ok()
    );
    let stale = signer.issue_at(
        &Flow::Embedded,
        b"s",
        &owner(),
        now - Duration::from_secs(15 * 60 + 1),
    );
    assert_eq!(
        signer
            .verify(&stale, b"s", &owner(), FlowKind::Embedded)
            .unwrap_err(),
        ConnectStateError::Expired
    );
    let debug = format!("{signer:?}");
    support::leaks::assert_no_leak(debug.as_bytes(), &[key.to_vec()], "the signer's Debug");
    assert!(
        debug.contains("<redacted>") && debug.contains("900s"),
        "{debug}"
    );
}

/// States are at most 4,096 characters (`MAX_CONNECT_STATE_LEN`), checked before any
/// decoding: a state of exactly that length (a long redirect_uri) verifies, and the
/// same state grown past it is refused even though it is signed.
#[test]
fn a_state_of_the_maximum_length_verifies_and_a_longer_one_is_refused() {
    let signer = ConnectStateSigner::generate();
    let state_for = |len: usize| {
        let uri = format!("https://example.com/{}", "a".repeat(len));
        let flow = Flow::Redirect { redirect_uri: uri };
        signer.issue(&flow, b"s", &owner())
    };
    let at_limit = (0..4096)
        .find(|&len| state_for(len).len() == chart_auth::MAX_CONNECT_STATE_LEN)
        .expect("some redirect_uri gives a state of exactly the limit");
    let state = state_for(at_limit);
    assert_eq!(state.len(), 4096);
    assert!(
        signer
            .verify(&state, b"s", &owner(), FlowKind::Redirect)
            .is_ok()
    );
    let longer = state_for(at_limit + 1);
    assert!(longer.len() > 4096);
    assert_eq!(
        signer
            .verify(&longer, b"s", &owner(), FlowKind::Redirect)
            .unwrap_err(),
        ConnectStateError::Forged
    );
}
