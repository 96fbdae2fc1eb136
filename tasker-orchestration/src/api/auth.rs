//! Bearer-token authentication: with a token configured, every request but `GET /health`
//! must carry `Authorization: Bearer <token>`, or it is answered 401 before any handler runs.

use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;
use tasker_client::{error_codes, ApiToken};

use super::ApiError;

/// The middleware (for `axum::middleware::from_fn_with_state`): passes a request that presents
/// `token`, answers any other 401.
pub async fn require_token(
    State(token): State<ApiToken>,
    request: Request,
    next: Next,
) -> Response {
    match presented(request.headers()) {
        Some(given) if matches(&token, given) => next.run(request).await,
        Some(_) => unauthorized("the bearer token is not this server's"),
        None => unauthorized(
            "this server needs `Authorization: Bearer <token>` (it was started with --auth-token-file; clients take the same file)",
        ),
    }
}

/// The token of an `Authorization: Bearer …` header (the scheme's case does not matter).
fn presented(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compared in constant time, so the time to refuse says nothing about how much of a guess
/// was right (only the length can differ in time, as with any such comparison).
fn matches(token: &ApiToken, given: &str) -> bool {
    token.secret().as_bytes().ct_eq(given.as_bytes()).into()
}

fn unauthorized(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, error_codes::UNAUTHORIZED, message).into_response();
    response
        .headers_mut()
        .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn only_a_bearer_header_presents_a_token() {
        assert_eq!(presented(&headers("Bearer abc")), Some("abc"));
        assert_eq!(presented(&headers("bearer abc")), Some("abc"));
        assert_eq!(presented(&headers("Basic abc")), None);
        assert_eq!(presented(&headers("Bearer")), None);
        assert_eq!(presented(&HeaderMap::new()), None);
    }
}
