//! Unit tests of the model: what the contract and behaviour tests reach only through HTTP.

use std::borrow::Cow;

use super::*;

fn chart() -> Chart {
    Chart::new(&MockConfig::default())
}

fn mint(chart: &Chart, scenario: Scenario) -> String {
    chart
        .mint(&MintRequest {
            client_id: crate::config::SANDBOX_CLIENT_ID.into(),
            scenario: Some(scenario),
            ..MintRequest::default()
        })
        .unwrap()
        .code
}

#[test]
fn authenticate_takes_the_right_secret_of_a_known_client_only() {
    let chart = chart();
    let (id, secret) = (
        crate::config::SANDBOX_CLIENT_ID,
        crate::config::SANDBOX_CLIENT_SECRET,
    );
    assert!(chart.authenticate(id, secret));
    assert!(!chart.authenticate(id, "wrong"));
    assert!(!chart.authenticate("nobody", secret));
    assert!(secret_eq(secret, secret) && !secret_eq(secret, "wrong"));
}

#[test]
fn sandbox_only_means_the_one_documented_client() {
    assert!(chart().sandbox_only());
    let mut two = MockConfig::default();
    two.clients.push(two.clients[0].clone());
    two.clients[1].client_id = "other".into();
    assert!(!Chart::new(&two).sandbox_only());
    for change in [0, 1] {
        let mut config = MockConfig::default();
        if change == 0 {
            config.clients[0].client_id = "mine".into();
        } else {
            config.clients[0].client_secret = "mine".into();
        }
        assert!(!Chart::new(&config).sandbox_only(), "{change}");
    }
}

#[test]
fn the_slow_scenario_and_only_it_answers_slowly() {
    let config = MockConfig {
        slow_ms: 1234,
        ..MockConfig::default()
    };
    let chart = Chart::new(&config);
    assert_eq!(chart.slow_delay(), Duration::from_millis(1234));
    for (scenario, want) in [(Scenario::Slow, true), (Scenario::Success, false)] {
        let code = mint(&chart, scenario);
        match chart.redeem_for(0, &code, None).0 {
            GrantOutcome::Issued { slow, .. } => assert_eq!(slow, want, "{scenario:?}"),
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_provider_id_is_one_to_64_bytes() {
    let chart = chart();
    let with = |p: String| {
        chart.mint(&MintRequest {
            client_id: crate::config::SANDBOX_CLIENT_ID.into(),
            provider_id: Some(p),
            ..MintRequest::default()
        })
    };
    assert!(with("p".repeat(64)).is_ok());
    assert!(matches!(with("p".repeat(65)), Err(MintError::BadProvider)));
    assert!(matches!(with(String::new()), Err(MintError::BadProvider)));
}

#[test]
fn known_secrets_are_client_secrets_codes_and_live_tokens() {
    let chart = chart();
    let code = mint(&chart, Scenario::Success);
    assert!(chart.is_known_secret(crate::config::SANDBOX_CLIENT_SECRET));
    assert!(chart.is_known_secret(&code));
    let GrantOutcome::Issued { access_token, .. } = chart.redeem_for(0, &code, None).0 else {
        panic!("issued");
    };
    assert!(chart.is_known_secret(&access_token.to_string()));
    assert_eq!(chart.owner_of(&code), Some(0));
    for unknown in ["", "nothing", &mint(&chart, Scenario::Success)[..5]] {
        assert!(!chart.is_known_secret(unknown), "{unknown:?}");
    }
}

#[test]
fn the_clock_in_ms_moves_with_advance() {
    let chart = chart();
    let before = chart.now_ms();
    assert!(
        before > 1_600_000_000_000,
        "milliseconds since the epoch: {before}"
    );
    chart.advance_clock(Duration::from_secs(10));
    assert!(chart.now_ms() >= before + 10_000);
}

fn request(path: String, metadata: Option<&str>) -> Record {
    Record {
        request_id: Uuid::nil(),
        at: 0,
        method: http::Method::GET,
        path: Cow::Owned(path),
        status: 200,
        outcome: Cow::Borrowed("ok"),
        client: None,
        code_id: None,
        fault: None,
        metadata: metadata.map(Arc::from),
    }
}

#[test]
fn the_journal_keeps_metadata_up_to_its_field_cap_and_counts_its_bytes() {
    let chart = chart();
    let at_cap = "m".repeat(JOURNAL_FIELD_MAX);
    chart.record(request("/a".into(), Some(&at_cap)), None);
    chart.record(request("/b".into(), Some(&format!("{at_cap}x"))), None);
    let journal = chart.journal();
    assert_eq!(journal[0].metadata.as_deref(), Some(at_cap.as_str()));
    let cut = journal[1].metadata.as_deref().unwrap();
    assert!(
        cut.len() <= JOURNAL_FIELD_MAX && cut.ends_with('…'),
        "{cut}"
    );
    let records = lock(&chart.records);
    let sum: usize = records.journal.iter().map(Record::size).sum();
    assert_eq!(records.bytes, sum);
}

/// The journal holds records up to exactly its byte cap; one byte more evicts the
/// oldest, and the count of bytes follows.
#[test]
fn the_journal_evicts_past_its_byte_cap_not_at_it() {
    let chart = Chart::new(&MockConfig {
        journal_len: 1 << 20,
        ..MockConfig::default()
    });
    // Records of exactly 256 bytes: the cap is a multiple of it.
    let fixed = request(String::new(), None).size();
    let path = "p".repeat(256 - fixed);
    assert_eq!(request(path.clone(), None).size(), 256);
    let fit = JOURNAL_MAX_BYTES / 256;
    for _ in 0..fit {
        chart.record(request(path.clone(), None), None);
    }
    assert_eq!(
        chart.journal().len(),
        fit,
        "a full journal at its cap evicts nothing"
    );
    chart.record(request(path.clone(), None), None);
    assert_eq!(
        chart.journal().len(),
        fit,
        "one over the cap evicts the oldest"
    );
    assert_eq!(lock(&chart.records).bytes, JOURNAL_MAX_BYTES);
}

#[test]
fn clearing_the_report_forgets_its_observations() {
    let chart = chart();
    chart.record(
        request("/auth/token".into(), None),
        Some(Observation::default()),
    );
    assert_eq!(lock(&chart.records).observations.len(), 1);
    chart.clear_report();
    assert_eq!(lock(&chart.records).observations.len(), 0);
}

#[test]
fn only_the_issued_spellings_parse() {
    let id = random_id();
    assert_eq!(parse_code(&code_text(id)), Some(id));
    assert_eq!(parse_uuid(&id.to_string()), Some(id));
    for other in [
        code_text(id).to_uppercase().replace("CODE_", "code_"),
        format!("code_{}", id.hyphenated()),
        format!("code_+{}", &id.simple().to_string()[1..]),
        id.simple().to_string(),
    ] {
        assert_eq!(parse_code(&other), None, "{other}");
    }
    for other in [
        id.to_string().to_uppercase(),
        id.simple().to_string(),
        id.braced().to_string(),
        id.urn().to_string(),
    ] {
        assert_eq!(parse_uuid(&other), None, "{other}");
    }
}
