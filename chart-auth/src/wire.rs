//! What goes over the wire: Chart's request and response bodies, its error bodies,
//! and the scrubbing that keeps secrets out of what an error remembers.
//!
//! Response bodies are parsed borrowed from the zeroizing buffer they arrived in, so a
//! token is copied once, into its [`AccessToken`].

use std::borrow::Cow;
use std::time::Duration;

use http::StatusCode;
use http::header::{self, HeaderMap};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorDetail};
use crate::ids::ProviderId;
use crate::secret::{AccessToken, AuthorizationCode, ClientSecret, SecretBuf};

/// The longest `Chart-Request-Id` kept.
const REQUEST_ID_LIMIT: usize = 128;
/// The longest error `name` kept.
const NAME_LIMIT: usize = 64;
/// The longest error `message` kept.
const MESSAGE_LIMIT: usize = 512;

/// The body of `POST /auth/token`, serialized straight into a zeroizing buffer.
#[derive(Serialize)]
struct TokenRequest<'a> {
    client_id: &'a str,
    client_secret: &'a str,
    code: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    redirect_uri: Option<&'a str>,
}

/// Encodes the `/auth/token` request body into a buffer that zeroizes on drop.
pub(crate) fn token_request(
    client_id: &str,
    client_secret: &ClientSecret,
    code: &AuthorizationCode,
    redirect_uri: Option<&str>,
) -> Result<SecretBuf, Error> {
    let body = TokenRequest {
        client_id,
        client_secret: client_secret.expose_secret(),
        code: code.expose_secret(),
        redirect_uri,
    };
    // Worst case JSON escaping is 6 bytes a char; size for it so the Vec never grows
    // (growing would leave an unzeroized copy behind).
    let raw = client_id.len()
        + client_secret.expose_secret().len()
        + code.expose_secret().len()
        + redirect_uri.map_or(0, str::len);
    let mut buf = SecretBuf::with_capacity(6 * raw + 96);
    serde_json::to_writer(buf.as_mut_vec(), &body)
        .map_err(|_| Error::Internal("could not encode the token request"))?;
    Ok(buf)
}

/// The `Chart-Request-Id` header, cut to a sane length.
pub(crate) fn request_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("chart-request-id")
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(REQUEST_ID_LIMIT).collect())
}

/// Chart's `Retry-After`, in whole seconds.
pub(crate) fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let secs: u64 = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs))
}

/// The bodies of Chart's JSON answers, borrowed from the zeroizing response buffer.
#[derive(Deserialize)]
pub(crate) struct ErrorBody<'a> {
    #[serde(borrow, default)]
    pub(crate) name: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub(crate) message: Option<Cow<'a, str>>,
}

/// Whether a body is Chart's own error body (`{"name": ..}`), as opposed to a proxy's
/// page: only Chart's errors say for sure what became of the request.
pub(crate) fn is_chart_error(body: &[u8]) -> bool {
    serde_json::from_slice::<ErrorBody<'_>>(body).is_ok_and(|b| b.name.is_some())
}

/// `text` with every secret replaced, then cut to `limit` characters; `None` if a
/// secret would still show (e.g. one that the replacement itself spells).
fn scrub(text: &str, limit: usize, secrets: &[&str]) -> Option<String> {
    let secrets: Vec<&str> = secrets.iter().copied().filter(|s| !s.is_empty()).collect();
    let mut out = text.to_owned();
    for s in &secrets {
        out = out.replace(s, "<redacted>");
    }
    let out: String = out.chars().take(limit).collect();
    (!secrets.iter().any(|s| out.contains(s))).then_some(out)
}

/// Builds the error for a non-success Chart answer from its status, headers and body
/// (`{"code", "name", "message"}`). Every string in `secrets` (e.g. the code and client
/// secret that were sent) is scrubbed from what the error keeps.
///
/// ```
/// use chart_auth::Error;
/// use chart_auth::fuzzing::error_from_response;
/// let body = br#"{"code":400,"name":"invalid_grant_error","message":"code abc123 expired"}"#;
/// let err = error_from_response(http::StatusCode::BAD_REQUEST, &http::HeaderMap::new(), body, &["abc123"]);
/// assert!(matches!(err, Error::InvalidGrant(_)));
/// assert_eq!(err.detail().unwrap().message.as_deref(), Some("code <redacted> expired"));
/// ```
pub fn error_from_response(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    secrets: &[&str],
) -> Error {
    let mut detail = ErrorDetail {
        status: Some(status),
        request_id: request_id(headers).and_then(|id| scrub(&id, REQUEST_ID_LIMIT, secrets)),
        ..ErrorDetail::default()
    };
    // The error is classified by the name as Chart sent it: scrubbing first would let a
    // secret that happens to occur in a name (a code `_` in `invalid_grant_error`) change
    // the class. Only what the error keeps is scrubbed.
    let mut name = None;
    if let Ok(body) = serde_json::from_slice::<ErrorBody<'_>>(body) {
        detail.name = body
            .name
            .as_deref()
            .and_then(|n| scrub(n, NAME_LIMIT, secrets));
        detail.message = body.message.and_then(|m| scrub(&m, MESSAGE_LIMIT, secrets));
        name = body.name;
    }
    match (name.as_deref(), status) {
        (Some("invalid_grant_error"), _) => Error::InvalidGrant(detail),
        (Some("invalid_client_error"), _) => Error::InvalidClient(detail),
        (Some("invalid_token_error"), _) => Error::InvalidToken(detail),
        (Some("rate_limit_exceeded_error"), _) | (_, StatusCode::TOO_MANY_REQUESTS) => {
            Error::RateLimited {
                retry_after: parse_retry_after(headers),
                detail,
            }
        }
        (_, StatusCode::UNAUTHORIZED) => Error::InvalidClient(detail),
        (_, s) if s.is_client_error() => Error::InvalidRequest(detail),
        (_, s) => Error::Server { status: s, detail },
    }
}

/// Chart's answer to a successful `/auth/token`, borrowed from the zeroizing buffer.
#[derive(Deserialize)]
struct TokenBody<'a> {
    #[serde(borrow, default)]
    account_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    taxpayer_id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    provider_id: Cow<'a, str>,
    #[serde(borrow)]
    access_token: Cow<'a, str>,
}

/// A successful token exchange, parsed from Chart's JSON.
#[derive(Debug)]
pub struct TokenResponse {
    /// The connected account (Chart's `account_id`, or `taxpayer_id` in newer API versions).
    pub account_id: String,
    /// The tax provider the user connected.
    pub provider_id: ProviderId,
    /// The access token.
    pub access_token: AccessToken,
}

impl TokenResponse {
    /// Parses the body of a 200 answer from `/auth/token`.
    ///
    /// ```
    /// let body = br#"{"taxpayer_id":"acc-1","provider_id":"irs","access_token":"tok"}"#;
    /// let parsed = chart_auth::fuzzing::TokenResponse::parse(body)?;
    /// assert_eq!(parsed.account_id, "acc-1");
    /// assert_eq!(parsed.provider_id.as_str(), "irs");
    /// # Ok::<(), chart_auth::Error>(())
    /// ```
    pub fn parse(body: &[u8]) -> Result<Self, Error> {
        let malformed = |reason: String| Error::MalformedResponse {
            reason,
            detail: ErrorDetail::default(),
        };
        let parsed: TokenBody<'_> = serde_json::from_slice(body).map_err(|e| {
            // serde_json's messages describe positions and types, never the input text.
            malformed(format!(
                "token response is not the expected JSON: {}",
                e.classify_name()
            ))
        })?;
        let account_id = parsed
            .account_id
            .or(parsed.taxpayer_id)
            .filter(|a| !a.is_empty())
            .ok_or_else(|| malformed("token response has no account_id or taxpayer_id".into()))?;
        if parsed.access_token.is_empty() {
            return Err(malformed("token response has an empty access_token".into()));
        }
        if parsed.provider_id.is_empty() {
            return Err(malformed("token response has an empty provider_id".into()));
        }
        Ok(Self {
            account_id: account_id.into_owned(),
            provider_id: ProviderId::from(parsed.provider_id.as_ref()),
            access_token: AccessToken::new(parsed.access_token.into_owned()),
        })
    }
}

pub(crate) trait ClassifyName {
    /// A short name for the kind of failure, never quoting the input.
    fn classify_name(&self) -> &'static str;
}

impl ClassifyName for serde_json::Error {
    fn classify_name(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "I/O error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "missing or mistyped field",
            serde_json::error::Category::Eof => "unexpected end of input",
        }
    }
}

/// The answer of `GET /introspect`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
pub struct Introspection {
    /// The connected account.
    pub taxpayer_id: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// The taxpayer's name, as the provider reports it.
    #[serde(default)]
    pub name: Option<String>,
    /// The tax provider.
    pub provider_id: String,
}

#[cfg(test)]
mod tests {
    use super::{TokenResponse, error_from_response, token_request};
    use crate::secret::{AuthorizationCode, ClientSecret};

    #[test]
    fn secrets_are_scrubbed_from_what_an_error_keeps() {
        let body = br#"{"name":"invalid_grant_error","message":"code abc123 and s3cr3t"}"#;
        let err = error_from_response(
            http::StatusCode::BAD_REQUEST,
            &http::HeaderMap::new(),
            body,
            &["", "abc123", "s3cr3t"],
        );
        let detail = err.detail().unwrap();
        assert_eq!(
            detail.message.as_deref(),
            Some("code <redacted> and <redacted>")
        );
        // A secret that the replacement itself spells cannot be scrubbed: nothing is kept.
        let body = br#"{"name":"invalid_grant_error","message":"no <redacted> here"}"#;
        let err = error_from_response(
            http::StatusCode::BAD_REQUEST,
            &http::HeaderMap::new(),
            body,
            &["redacted"],
        );
        assert_eq!(err.detail().unwrap().message, None);
    }

    #[test]
    fn a_malformed_token_response_names_the_kind_of_failure() {
        for (body, kind) in [
            (&b"{"[..], "unexpected end of input"),
            (b"x", "syntax error"),
            (br#"{"account_id":1}"#, "missing or mistyped field"),
        ] {
            let err = TokenResponse::parse(body).err().unwrap();
            assert!(err.to_string().contains(kind), "{err}");
        }
    }

    /// The request buffer is sized once for the worst case (every char escaped as
    /// `\u00XX`), so it never grows and leaves no unzeroized copy behind.
    #[test]
    fn the_token_request_buffer_never_grows() {
        for n in [0, 1, 10, 300] {
            let worst = "\u{1}".repeat(n);
            let uri = format!("https://e.example/{worst}");
            let mut buf = token_request(
                &worst,
                &ClientSecret::new(worst.clone()),
                &AuthorizationCode::new(worst.clone()),
                Some(&uri),
            )
            .unwrap();
            let sized_for = 6 * (3 * n + uri.len()) + 96;
            let vec = buf.as_mut_vec();
            assert!(vec.len() <= vec.capacity());
            assert!(
                vec.capacity() <= sized_for,
                "n = {n}: grew to {} (sized for {sized_for})",
                vec.capacity()
            );
            let body: serde_json::Value = serde_json::from_slice(vec).unwrap();
            assert_eq!(body["code"], worst.as_str());
        }
    }
}
