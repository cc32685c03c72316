//! Chart's API as the mock serves it: `POST /auth/token` with every error row of the
//! contract, `GET /introspect` and `POST /disconnect`.

// Handlers return the error answer itself as `Err`; it is built once per request and
// boxing it would only add noise.
#![allow(clippy::result_large_err)]

use http::{Method, Request, StatusCode};
use serde::Serialize;

use crate::config::ClientIx;
use crate::model::GrantOutcome;
use crate::request::{Ctx, Note, api_version_error, bearer, is_json, read_body};
use crate::response::{
    Resp, error, error_std, json_response, method_not_allowed, with_retry_after,
};

/// A request field as the contract checks it: absent, null, a string, or another type.
/// Strings are borrowed from the body when they have no escapes.
#[derive(Default)]
enum Field<'a> {
    #[default]
    Absent,
    Null,
    Str(std::borrow::Cow<'a, str>),
    Other,
}

impl<'de: 'a, 'a> serde::Deserialize<'de> for Field<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{IgnoredAny, MapAccess, SeqAccess, Visitor};
        struct FieldVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for FieldVisitor<'a> {
            type Value = Field<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Field<'a>, E> {
                Ok(Field::Str(std::borrow::Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Field<'a>, E> {
                Ok(Field::Str(std::borrow::Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E>(self) -> Result<Field<'a>, E> {
                Ok(Field::Null)
            }
            fn visit_none<E>(self) -> Result<Field<'a>, E> {
                Ok(Field::Null)
            }
            fn visit_bool<E>(self, _: bool) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            fn visit_i64<E>(self, _: i64) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            fn visit_u64<E>(self, _: u64) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            fn visit_f64<E>(self, _: f64) -> Result<Field<'a>, E> {
                Ok(Field::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'a>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'a>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::Other)
            }
        }
        d.deserialize_any(FieldVisitor(std::marker::PhantomData))
    }
}

/// The body of `POST /auth/token`, borrowed from the request bytes.
#[derive(serde::Deserialize)]
struct TokenRequest<'a> {
    #[serde(borrow, default)]
    client_id: Field<'a>,
    #[serde(borrow, default)]
    client_secret: Field<'a>,
    #[serde(borrow, default)]
    code: Field<'a>,
    #[serde(borrow, default)]
    redirect_uri: Field<'a>,
}

/// A field's string, or the 400 answer naming it.
fn field<'a>(value: &'a Field<'_>, name: &str, required: bool) -> Result<Option<&'a str>, Resp> {
    let bad = |what: &str| {
        Err(error_std(
            StatusCode::BAD_REQUEST,
            &format!("The field `{name}` {what}."),
        ))
    };
    match value {
        Field::Absent | Field::Null if required => bad("is required"),
        Field::Absent | Field::Null => Ok(None),
        Field::Str(s) if s.is_empty() => bad("must not be empty"),
        Field::Str(s) if s.len() > 4096 => bad("is too long"),
        Field::Str(s) => Ok(Some(s)),
        Field::Other => bad("must be a string"),
    }
}

pub(crate) async fn token(ctx: &Ctx, req: Request<hyper::body::Incoming>, note: &mut Note) -> Resp {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    if let Some(resp) = api_version_error(&req) {
        return resp;
    }
    let json = is_json(&req);
    note.json_body = Some(json);
    if !json {
        // Read only to tell the conformance report whose request this was.
        if let Ok(body) = read_body(req).await {
            note.client = client_named_in(ctx, &body);
        }
        return error_std(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "The content type must be application/json.",
        );
    }
    match read_body(req).await {
        Ok(body) => token_grant(ctx, &body, note).await,
        Err(resp) => resp,
    }
}

/// The known client a body names, as JSON or as a form; the body is not otherwise used.
fn client_named_in(ctx: &Ctx, body: &[u8]) -> Option<ClientIx> {
    match serde_json::from_slice::<TokenRequest<'_>>(body) {
        Ok(TokenRequest {
            client_id: Field::Str(id),
            ..
        }) => ctx.chart.client_index(&id),
        _ => form_urlencoded::parse(body)
            .find(|(name, _)| name == "client_id")
            .and_then(|(_, id)| ctx.chart.client_index(&id)),
    }
}

/// The body of `POST /auth/token`, once the method and headers have passed.
pub(crate) async fn token_grant(ctx: &Ctx, body: &[u8], note: &mut Note) -> Resp {
    // Only an object: serde would also read a struct from a JSON array.
    let is_object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let parsed = if is_object {
        serde_json::from_slice::<TokenRequest<'_>>(body).ok()
    } else {
        None
    };
    let Some(body) = parsed else {
        note.json_body = Some(false);
        return error_std(
            StatusCode::BAD_REQUEST,
            "The request body is not a JSON object.",
        );
    };
    let fields = (|| {
        Ok::<_, Resp>((
            field(&body.client_id, "client_id", true)?.unwrap_or_default(),
            field(&body.client_secret, "client_secret", true)?.unwrap_or_default(),
            field(&body.code, "code", true)?.unwrap_or_default(),
            field(&body.redirect_uri, "redirect_uri", false)?,
        ))
    })();
    let (client_id, secret, code, redirect_uri) = match fields {
        Ok(f) => f,
        Err(resp) => return resp,
    };
    note.redirect_uri_sent = Some(redirect_uri.is_some());
    note.client = ctx.chart.client_index(client_id);
    let Some(client) = ctx.chart.authenticated(client_id, secret) else {
        note.code(ctx.chart.code_facts(code));
        // One message for an unknown client and a wrong secret. On a mock that runs only
        // the documented sandbox client, say which it is: a copied `<your_client_id>`
        // is the usual first mistake.
        let message = if ctx.chart.sandbox_only() {
            "Client authentication failed. This mock runs only the sandbox client: \
             client_id chart-sandbox-client."
        } else {
            "Client authentication failed."
        };
        return error_std(StatusCode::UNAUTHORIZED, message);
    };
    if !ctx.chart.take_rate() {
        note.code(ctx.chart.code_facts(code));
        return with_retry_after(
            error_std(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests; slow down.",
            ),
            60,
        );
    }
    let (outcome, facts) = ctx.chart.redeem_for(client, code, redirect_uri);
    note.code(facts);
    match outcome {
        GrantOutcome::Issued {
            account_id,
            provider_id,
            access_token,
            slow,
        } => {
            if slow {
                tokio::time::sleep(ctx.chart.slow_delay()).await;
            }
            note.issued_account = Some(account_id);
            #[derive(Serialize)]
            struct TokenAnswer<'a> {
                account_id: &'a str,
                taxpayer_id: &'a str,
                provider_id: &'a str,
                access_token: &'a str,
            }
            let mut account_buf = [0; uuid::fmt::Hyphenated::LENGTH];
            let mut token_buf = [0; uuid::fmt::Hyphenated::LENGTH];
            let account_id = &*account_id.hyphenated().encode_lower(&mut account_buf);
            json_response(
                StatusCode::OK,
                &TokenAnswer {
                    account_id,
                    taxpayer_id: account_id,
                    provider_id: &provider_id,
                    access_token: access_token.hyphenated().encode_lower(&mut token_buf),
                },
            )
        }
        GrantOutcome::InvalidGrant(message) => {
            error(StatusCode::BAD_REQUEST, "invalid_grant_error", message)
        }
        GrantOutcome::RateLimited => with_retry_after(
            error_std(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests for this code; retry shortly.",
            ),
            1,
        ),
        GrantOutcome::ServerError => error_std(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Chart had an internal error.",
        ),
    }
}

/// `GET /introspect` and `POST /disconnect`: a Bearer token in, its facts or its end out.
pub(crate) fn bearer_endpoint(
    ctx: &Ctx,
    req: Request<hyper::body::Incoming>,
    allowed: Method,
    note: &mut Note,
) -> Resp {
    if req.method() != allowed {
        return method_not_allowed(if allowed == Method::GET {
            "GET"
        } else {
            "POST"
        });
    }
    if let Some(resp) = api_version_error(&req) {
        return resp;
    }
    let invalid = || {
        error(
            StatusCode::UNAUTHORIZED,
            "invalid_token_error",
            "The access token is invalid or revoked.",
        )
    };
    let Some(token) = bearer(&req) else {
        return error(
            StatusCode::UNAUTHORIZED,
            "invalid_token_error",
            "The access token is missing: send Authorization: Bearer <access_token>.",
        );
    };
    let Some((client, account, provider)) = ctx.chart.token_facts(token) else {
        return invalid();
    };
    note.client = Some(client);
    if allowed == Method::GET {
        json_response(
            StatusCode::OK,
            &serde_json::json!({
                "taxpayer_id": account.to_string(),
                "client_id": ctx.chart.client_at(client).client_id,
                "name": "Sandy Taxpayer",
                "provider_id": &*provider,
            }),
        )
    } else {
        ctx.chart.revoke(token);
        note.disconnected_account = Some(account);
        json_response(StatusCode::OK, &serde_json::json!({"status": "success"}))
    }
}
