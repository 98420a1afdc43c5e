//! Who may call the unsafe endpoints (every method but GET, HEAD and OPTIONS), checked in
//! Patroni's order before any handler runs:
//! 1. with TLS and `verify_client: optional` or `required`, a client certificate the CA
//!    signed (403 `client certificate required`; `required` already refused the handshake);
//! 2. with `restapi.authentication`, Basic credentials (401 with `WWW-Authenticate`),
//!    compared in constant time.

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::serve::Peer;
use super::ApiState;
use crate::config::{Credentials, VerifyClient};

/// GET, HEAD and OPTIONS read; everything else changes something.
fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware: unsafe requests pass only with what the configuration asks for.
pub async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    if !is_unsafe(request.method()) {
        return next.run(request).await;
    }
    let restapi = &state.config.restapi;
    let wants_certificate = restapi
        .tls
        .as_ref()
        .is_some_and(|t| t.verify_client != VerifyClient::None);
    let has_certificate = request
        .extensions()
        .get::<Peer>()
        .is_some_and(|p| p.client_certificate);
    if wants_certificate && !has_certificate {
        return (StatusCode::FORBIDDEN, "client certificate required").into_response();
    }
    if let Some(expected) = &restapi.authentication {
        if !credentials_match(request.headers(), expected) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"pgwarden\"")],
                "no or wrong credentials for this endpoint (restapi.authentication)",
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// Whether the request's Basic credentials are `expected`. Both sides are hashed first, so
/// the comparison takes the same time whatever the given value and however much of it is
/// right.
fn credentials_match(headers: &HeaderMap, expected: &Credentials) -> bool {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .unwrap_or_default();
    let wanted = format!(
        "{}:{}",
        expected.username,
        expected.password.as_deref().unwrap_or_default()
    );
    let (a, b) = (Sha256::digest(&given), Sha256::digest(wanted.as_bytes()));
    let differences = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    differences == 0 && headers.contains_key(header::AUTHORIZATION)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_basic(pair: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let token = base64::engine::general_purpose::STANDARD.encode(pair);
        headers.insert(
            header::AUTHORIZATION,
            format!("Basic {token}").parse().expect("header"),
        );
        headers
    }

    #[test]
    fn only_the_configured_pair_matches() {
        let expected = Credentials {
            username: "ops".into(),
            password: Some("s3cret".into()),
        };
        assert!(credentials_match(&with_basic("ops:s3cret"), &expected));
        assert!(!credentials_match(&with_basic("ops:s3cre"), &expected));
        assert!(!credentials_match(&with_basic("op:s3cret"), &expected));
        assert!(!credentials_match(&HeaderMap::new(), &expected));
        let empty = Credentials {
            username: String::new(),
            password: None,
        };
        // An absent header never matches, even credentials that would hash like ":".
        assert!(!credentials_match(&HeaderMap::new(), &empty));
    }

    #[test]
    fn reads_are_safe_everything_else_is_not() {
        for m in [Method::GET, Method::HEAD, Method::OPTIONS] {
            assert!(!is_unsafe(&m));
        }
        for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert!(is_unsafe(&m));
        }
    }
}
