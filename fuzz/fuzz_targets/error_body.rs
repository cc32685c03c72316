//! The error body parser: never panics, maps the status class, and never keeps a secret
//! it was told to scrub, whatever the server put in its answer.
#![no_main]

use arbitrary::Arbitrary;
use chart_auth::Error;
use chart_auth::fuzzing::error_from_response;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    status: u16,
    secret: &'a str,
    request_id: &'a str,
    body: &'a [u8],
}

fuzz_target!(|input: Input<'_>| {
    let Ok(status) = http::StatusCode::from_u16(input.status.clamp(100, 999)) else {
        return;
    };
    let mut headers = http::HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(input.request_id) {
        headers.insert("chart-request-id", v);
    }
    let err = error_from_response(status, &headers, input.body, &[input.secret]);
    assert_eq!(err.status(), Some(status));
    assert!(!err.user_message().is_empty());
    if !input.secret.is_empty() {
        // Everything the server controls (name, message, request id) is scrubbed.
        let detail = err.detail().expect("a response error has detail");
        for kept in [&detail.name, &detail.message, &detail.request_id]
            .into_iter()
            .flatten()
        {
            assert!(
                !kept.contains(input.secret),
                "a scrubbed secret survived in {kept:?}"
            );
        }
    }
    if status.is_server_error()
        && !matches!(
            err,
            Error::InvalidGrant(_)
                | Error::InvalidClient(_)
                | Error::InvalidToken(_)
                | Error::RateLimited { .. }
        )
    {
        assert!(matches!(err, Error::Server { .. }));
    }
});
