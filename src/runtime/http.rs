//! A minimal HTTP/1 client for peers' REST APIs (`GET /patroni` during a race) and for
//! pgwardenctl. Plain HTTP on purpose for now: TLS for the REST API is not supported yet.

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

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

/// Send a request; returns the status code and body.
pub async fn request(
    method: &str,
    url: &str,
    body: Option<String>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HttpError> {
    request_as(method, url, body, None, timeout).await
}

/// [`request`] with HTTP basic authentication (`user`, `password`) when given.
pub async fn request_as(
    method: &str,
    url: &str,
    body: Option<String>,
    basic_auth: Option<(&str, &str)>,
    timeout: Duration,
) -> Result<(u16, Vec<u8>), HttpError> {
    let uri: hyper::Uri =
        url.parse()
            .map_err(|e: hyper::http::uri::InvalidUri| HttpError::Url {
                url: url.to_string(),
                message: e.to_string(),
            })?;
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let method: hyper::Method = method.parse().map_err(|_| HttpError::Url {
        url: url.to_string(),
        message: "bad method".into(),
    })?;
    let mut builder = hyper::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some((user, password)) = basic_auth {
        use base64::Engine as _;
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        builder = builder.header("authorization", format!("Basic {token}"));
    }
    let req = builder
        .body(http_body_util::Full::new(Bytes::from(
            body.unwrap_or_default(),
        )))
        .map_err(|e| HttpError::Url {
            url: url.to_string(),
            message: e.to_string(),
        })?;
    let work = async {
        let resp = client.request(req).await.map_err(|e| HttpError::Request {
            url: url.to_string(),
            message: e.to_string(),
        })?;
        let status = resp.status().as_u16();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| HttpError::Request {
                url: url.to_string(),
                message: e.to_string(),
            })?
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

/// GET a JSON document.
pub async fn get_json(url: &str, timeout: Duration) -> Result<serde_json::Value, HttpError> {
    let (_, body) = request("GET", url, None, timeout).await?;
    serde_json::from_slice(&body).map_err(|e| HttpError::Request {
        url: url.to_string(),
        message: format!("not JSON: {e}"),
    })
}
