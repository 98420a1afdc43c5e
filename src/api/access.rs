//! Who may call the REST API, checked in one place before any handler runs, and what every
//! answer carries.
//!
//! Unsafe requests (every method but GET, HEAD and OPTIONS), in Patroni's order:
//! 1. `restapi.allowlist` / `allowlist_include_members`: the source address must be listed
//!    or be a member's (403 `Access is denied`; `POST /failsafe` skips the members rule,
//!    as Patroni's does, since it comes from the leader during an etcd outage);
//! 2. with TLS and `verify_client: optional` or `required`, a client certificate the CA
//!    signed (403 `client certificate required`; `required` already refused the handshake);
//! 3. with `restapi.authentication`, Basic credentials (401 with `WWW-Authenticate`),
//!    compared in constant time;
//! 4. the body is read here, bounded in size (413) and time (408), so a huge or slow body
//!    ties up nothing but its own connection.
//!
//! Reads need credentials only with `pgwarden.protect_reads`, and never the health checks
//! HAProxy calls. `http_extra_headers` (and over TLS `https_extra_headers`) go on every
//! answer.

use std::net::IpAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};

use super::serve::Peer;
use super::ApiState;
use crate::config::{AllowEntry, Config, Credentials, VerifyClient};

/// The largest request body accepted (a whole `/config` document is a few kB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a client may take to send a request body.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads that carry cluster details; `pgwarden.protect_reads` puts them behind the
/// credentials. Every other read is a health check and stays open.
pub(super) const DETAIL_READS: &[&str] = &[
    "/patroni",
    "/cluster",
    "/history",
    "/config",
    "/metrics",
    "/failsafe",
    "/decisions",
];

/// The rules in force; replaced whole when the agent reloads its configuration.
#[derive(Debug, Default)]
pub struct Rules {
    /// Allowed sources of unsafe requests (with host names resolved).
    networks: Vec<ipnet::IpNet>,
    /// `allowlist` has entries (resolved or not: a name that does not resolve allows
    /// nothing, it never opens the API to everyone).
    static_allowlist: bool,
    /// The members' addresses are allowed too.
    include_members: bool,
    /// Unsafe requests need a client certificate.
    wants_certificate: bool,
    /// `restapi.authentication`.
    credentials: Option<Credentials>,
    /// Detail reads need the credentials too.
    protect_reads: bool,
    /// Added to every answer.
    headers: Vec<(HeaderName, HeaderValue)>,
}

/// The rules, shared by the router and the reloader.
pub type SharedRules = Arc<RwLock<Arc<Rules>>>;

impl Rules {
    /// The rules of `config`, with the allowlist's host names resolved to `resolved`.
    pub fn new(config: &Config, resolved: Vec<ipnet::IpNet>) -> Rules {
        let restapi = &config.restapi;
        let access = &restapi.access;
        let mut networks: Vec<ipnet::IpNet> = access
            .allowlist
            .iter()
            .filter_map(|e| match e {
                AllowEntry::Network(n) => Some(*n),
                AllowEntry::Host(_) => None,
            })
            .collect();
        networks.extend(resolved);
        let mut headers = access.http_extra_headers.clone();
        if restapi.tls.is_some() {
            headers.extend(access.https_extra_headers.iter().cloned());
        }
        Rules {
            networks,
            static_allowlist: !access.allowlist.is_empty(),
            include_members: access.allowlist_include_members,
            wants_certificate: restapi
                .tls
                .as_ref()
                .is_some_and(|t| t.verify_client != VerifyClient::None),
            credentials: restapi.authentication.clone(),
            protect_reads: config.pgwarden.protect_reads,
            headers: headers
                .iter()
                .filter_map(|(k, v)| {
                    Some((
                        HeaderName::from_bytes(k.as_bytes()).ok()?,
                        HeaderValue::from_str(v).ok()?,
                    ))
                })
                .collect(),
        }
    }

    /// [`Rules::new`] after resolving the allowlist's host names (a name that does not
    /// resolve allows nothing and is logged).
    pub async fn resolve(config: &Config) -> Rules {
        let mut resolved = Vec::new();
        for entry in &config.restapi.access.allowlist {
            if let AllowEntry::Host(host) = entry {
                match lookup(host).await {
                    Ok(addrs) => resolved.extend(addrs.into_iter().map(ipnet::IpNet::from)),
                    Err(e) => {
                        tracing::warn!(%host, error = %e, "restapi.allowlist: the host name does not resolve; it allows nothing")
                    }
                }
            }
        }
        Rules::new(config, resolved)
    }
}

/// How long resolving one host name may take.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// The addresses of `host`, within [`LOOKUP_TIMEOUT`].
async fn lookup(host: &str) -> Result<Vec<IpAddr>, String> {
    match tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((host, 0))).await {
        Ok(Ok(addrs)) => Ok(addrs.map(|a| canonical(a.ip())).collect()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {LOOKUP_TIMEOUT:?}")),
    }
}

/// GET, HEAD and OPTIONS read; everything else changes something.
fn is_unsafe(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

fn text(code: StatusCode, message: &'static str) -> Response {
    (code, message).into_response()
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Basic realm=\"pgwarden\"")],
        "no or wrong credentials for this endpoint (restapi.authentication)",
    )
        .into_response()
}

/// What the checks let through.
enum Passed {
    /// The whole answer.
    Whole(Request),
    /// A health check without credentials under `protect_reads`: its status only, since
    /// its body is the member's status `/patroni` would show.
    StatusOnly(Request),
}

/// The middleware.
pub async fn guard(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let rules = state.rules();
    let mut response = match check(&state, &rules, request).await {
        Ok(Passed::Whole(request)) => next.run(request).await,
        Ok(Passed::StatusOnly(request)) => {
            let (mut parts, _) = next.run(request).await.into_parts();
            parts.headers.remove(header::CONTENT_LENGTH);
            parts.headers.remove(header::CONTENT_TYPE);
            Response::from_parts(parts, Body::empty())
        }
        Err(refusal) => refusal,
    };
    for (name, value) in &rules.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

/// The request, its body read, when every rule lets it through; else the refusal.
async fn check(state: &ApiState, rules: &Rules, request: Request) -> Result<Passed, Response> {
    let path = request.uri().path();
    if !is_unsafe(request.method()) {
        let Some(expected) = rules.credentials.as_ref().filter(|_| rules.protect_reads) else {
            return Ok(Passed::Whole(request));
        };
        if credentials_match(request.headers(), expected) {
            return Ok(Passed::Whole(request));
        }
        if DETAIL_READS.contains(&path.trim_end_matches('/')) {
            return Err(unauthorized());
        }
        // The API's own description holds nothing about the member.
        if path == "/openapi.json" {
            return Ok(Passed::Whole(request));
        }
        return Ok(Passed::StatusOnly(request));
    }
    let peer = request.extensions().get::<Peer>().copied();
    // Patroni's rule: the members are not asked about for `POST /failsafe` (it comes from
    // the leader while etcd, and so the member list, may be out of reach).
    let members = rules.include_members && path.trim_end_matches('/') != "/failsafe";
    if rules.static_allowlist || members {
        let allowed = match peer {
            Some(peer) => source_allowed(state, rules, canonical(peer.addr.ip()), members).await,
            None => false,
        };
        if !allowed {
            return Err(text(StatusCode::FORBIDDEN, "Access is denied"));
        }
    }
    if rules.wants_certificate && !peer.is_some_and(|p| p.client_certificate) {
        return Err(text(StatusCode::FORBIDDEN, "client certificate required"));
    }
    if let Some(expected) = &rules.credentials {
        if !credentials_match(request.headers(), expected) {
            return Err(unauthorized());
        }
    }
    read_body(request).await.map(Passed::Whole)
}

/// An IPv4 client on a dual-stack socket shows as `::ffff:a.b.c.d`.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Whether `ip` is in the allowlist, or (with `members`) a member's API address.
async fn source_allowed(state: &ApiState, rules: &Rules, ip: IpAddr, members: bool) -> bool {
    if rules.networks.iter().any(|n| n.contains(&ip)) {
        return true;
    }
    if !members {
        return false;
    }
    let hosts: Vec<String> = state
        .snapshot()
        .view
        .as_ref()
        .map(|view| {
            view.members
                .values()
                .filter_map(|m| api_host(&m.api_url))
                .collect()
        })
        .unwrap_or_default();
    for host in hosts {
        if let Ok(member) = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            if canonical(member) == ip {
                return true;
            }
            continue;
        }
        if lookup(&host).await.is_ok_and(|addrs| addrs.contains(&ip)) {
            return true;
        }
    }
    false
}

/// `host` of `scheme://host:port/path`.
fn api_host(api_url: &str) -> Option<String> {
    let rest = api_url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// The request with its body read whole, within [`MAX_BODY_BYTES`] and [`BODY_TIMEOUT`].
async fn read_body(request: Request) -> Result<Request, Response> {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return Err(text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body over 1 MiB",
        ));
    }
    let (parts, body) = request.into_parts();
    match tokio::time::timeout(BODY_TIMEOUT, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Err(_) => Err(text(
            StatusCode::REQUEST_TIMEOUT,
            "request body not received within 10 s",
        )),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            Err(if too_large {
                text(StatusCode::PAYLOAD_TOO_LARGE, "request body over 1 MiB")
            } else {
                text(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read",
                )
            })
        }
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, Body::from(bytes))),
    }
}

/// Whether the request's Basic credentials are `expected`. Both sides are hashed first, so
/// the comparison takes the same time whatever the given value and however much of it is
/// right.
fn credentials_match(headers: &HeaderMap, expected: &Credentials) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
    else {
        return false;
    };
    let wanted = format!(
        "{}:{}",
        expected.username,
        expected.password.as_deref().unwrap_or_default()
    );
    let (a, b) = (Sha256::digest(&given), Sha256::digest(wanted.as_bytes()));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
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

    #[test]
    fn member_hosts_come_from_api_urls() {
        assert_eq!(
            api_host("https://10.0.0.5:8008/patroni").as_deref(),
            Some("10.0.0.5")
        );
        assert_eq!(
            api_host("http://db-1:8008/patroni").as_deref(),
            Some("db-1")
        );
        assert_eq!(
            api_host("http://[fd00::1]:8008/patroni").as_deref(),
            Some("[fd00::1]")
        );
        assert_eq!(api_host("no scheme"), None);
        assert_eq!(
            canonical("::ffff:10.1.2.3".parse().expect("ip")),
            "10.1.2.3".parse::<IpAddr>().expect("ip")
        );
    }
}
