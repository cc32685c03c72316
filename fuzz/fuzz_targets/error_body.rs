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
    // The secrets scrubbed never change the class of the error.
    let unscrubbed = error_from_response(status, &headers, input.body, &[]);
    assert_eq!(
        err.label(),
        unscrubbed.label(),
        "scrubbing changed the class"
    );
    assert_eq!(err.status(), Some(status));
    // The sentence for the end user is ours, never the server's text: the same answer
    // with another `message` gives the same sentence.
    if let Ok(mut json) = serde_json::from_slice::<serde_json::Value>(input.body) {
        if json.get("message").is_some_and(|m| m.is_string()) {
            json["message"] = "a different message from the server".into();
            let other = serde_json::to_vec(&json).unwrap();
            let again = error_from_response(status, &headers, &other, &[input.secret]);
            assert_eq!(
                err.user_message(),
                again.user_message(),
                "the user message depends on the server's text"
            );
        }
    }
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
