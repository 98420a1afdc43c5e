//! The HTTP/1 client for members' REST APIs: the agent's peer probes (`GET /patroni` during
//! a race), its failsafe heartbeats, and pgwardenctl. `https://` members are reached with
//! the `ctl:` TLS settings (CA, client certificate, `insecure`), as Patroni's
//! `PatroniRequest` does, and the `ctl:` (else `restapi:`) credentials go with every
//! request.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::config::{ApiClientConfig, Credentials};
use crate::tls::TlsError;

/// An HTTP request that failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// Bad URL.
    #[error("{url}: {message}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        message: String,
    },
    /// Connection or protocol error.
    #[error("{url}: {message}")]
    Request {
        /// The URL.
        url: String,
        /// Error text.
        message: String,
    },
    /// No answer in time.
    #[error("{url}: no answer within {after:?}")]
    Timeout {
        /// The URL.
        url: String,
        /// Bound.
        after: Duration,
    },
}

type Inner = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// A client for members' REST APIs; cheap to clone, and [`ApiClient::reconfigure`]d in
/// place when the agent reloads its configuration.
#[derive(Clone)]
pub struct ApiClient {
    current: Arc<RwLock<(Inner, Option<Credentials>)>>,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiClient")
    }
}

fn build(config: &ApiClientConfig, section: &str) -> Result<Inner, TlsError> {
    Ok(build_with(crate::tls::client_config(&config.tls, section)?))
}

fn build_with(tls: rustls::ClientConfig) -> Inner {
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    Client::builder(TokioExecutor::new()).build(connector)
}

impl ApiClient {
    /// A client with `config`'s TLS and credentials; `section` names the settings in errors
    /// (`ctl`).
    pub fn new(config: &ApiClientConfig, section: &str) -> Result<ApiClient, TlsError> {
        let inner = build(config, section)?;
        Ok(ApiClient {
            current: Arc::new(RwLock::new((inner, config.credentials.clone()))),
        })
    }

    /// A client for plain-HTTP members without credentials (tests, tools).
    pub fn plain() -> ApiClient {
        ApiClient::new(&ApiClientConfig::default(), "ctl")
            .unwrap_or_else(|e| unreachable!("no files to read: {e}"))
    }

    /// Takes a TLS configuration already built (and so checked) and new credentials.
    pub fn install(&self, tls: rustls::ClientConfig, credentials: Option<Credentials>) {
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (build_with(tls), credentials);
    }

    /// Sends a request; returns the status code and body.
    pub async fn request(
        &self,
        method: &str,
        url: &str,
        body: Option<String>,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), HttpError> {
        let (client, credentials) = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let bad_url = |message: String| HttpError::Url {
            url: url.to_string(),
            message,
        };
        let uri: hyper::Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad_url(e.to_string()))?;
        let method: hyper::Method = method
            .parse()
            .map_err(|_| bad_url(format!("{method:?} is not an HTTP method")))?;
        let mut builder = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json");
        if let Some(c) = &credentials {
            use base64::Engine as _;
            let pair = format!(
                "{}:{}",
                c.username,
                c.password.as_deref().unwrap_or_default()
            );
            let token = base64::engine::general_purpose::STANDARD.encode(pair);
            builder = builder.header("authorization", format!("Basic {token}"));
        }
        let req = builder
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| bad_url(e.to_string()))?;
        let failed = |message: String| HttpError::Request {
            url: url.to_string(),
            message,
        };
        let over_tls = url.starts_with("https://");
        let work = async {
            let resp = client
                .request(req)
                .await
                .map_err(|e| failed(with_tls_hint(error_chain(&e), over_tls)))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| failed(e.to_string()))?
                .to_bytes();
            Ok((status, bytes.to_vec()))
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| HttpError::Timeout {
                url: url.to_string(),
                after: timeout,
            })?
    }

    /// GETs a JSON document.
    pub async fn get_json(
        &self,
        url: &str,
        timeout: Duration,
    ) -> Result<serde_json::Value, HttpError> {
        let (_, body) = self.request("GET", url, None, timeout).await?;
        serde_json::from_slice(&body).map_err(|e| HttpError::Request {
            url: url.to_string(),
            message: format!("not JSON: {e}"),
        })
    }
}

/// The error and its causes: hyper's "client error (Connect)" alone hides the TLS reason
/// (an unknown CA, a refused client certificate).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `message`, with a hint when a TLS connection ended under the request: TLS 1.3 ends the
/// client's side of the handshake before the server judges its certificate, so a refused
/// certificate often reaches the client as a closed connection rather than as the server's
/// alert ("connection was not ready", "broken pipe").
fn with_tls_hint(message: String, over_tls: bool) -> String {
    let lower = message.to_lowercase();
    let closed = ["not ready", "closed", "broken pipe", "reset"]
        .iter()
        .any(|sign| lower.contains(sign));
    if over_tls && closed && !lower.contains("certificate") {
        format!(
            "{message} (the server closed the TLS connection: it may have refused this \
             client's certificate; check ctl.certfile and ctl.keyfile against the member's \
             restapi.cafile)"
        )
    } else {
        message
    }
}

#[cfg(test)]
mod tests {
    use super::with_tls_hint;

    #[test]
    fn a_tls_connection_closed_under_a_request_names_the_certificate() {
        let closed = "client error (canceled): operation was canceled: connection was not ready";
        let hinted = with_tls_hint(closed.to_string(), true);
        assert!(
            hinted.starts_with(closed) && hinted.contains("ctl.certfile"),
            "{hinted}"
        );
        // Plain HTTP, or an error that already names the certificate: left as it is.
        assert_eq!(with_tls_hint(closed.to_string(), false), closed);
        let named = "invalid peer certificate: UnknownIssuer";
        assert_eq!(with_tls_hint(named.to_string(), true), named);
    }
}
