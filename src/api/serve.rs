//! Serving the router: plain HTTP, or TLS with rustls when `restapi.certfile` is set. Each
//! connection is HTTP/1 (what HAProxy, patronictl and Patroni's peers speak); its request
//! handlers learn the peer address and whether it showed a verified client certificate
//! ([`Peer`]), which the access rules need.
//!
//! A slow client cannot tie the API up: the TLS handshake and the request head each have a
//! bound, and every connection is served on its own task.

use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::ServerTls;
use crate::tls::TlsError;

/// How long a client may take for the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a request's head.
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Who is asking: added to every request's extensions.
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    /// The TCP peer.
    pub addr: SocketAddr,
    /// The connection is TLS and the client showed a certificate the CA signed.
    pub client_certificate: bool,
}

/// The REST API's TLS configuration, replaced in place on a reload (new connections use the
/// new certificate; open ones keep theirs).
pub struct ServerTlsHandle {
    current: RwLock<Arc<rustls::ServerConfig>>,
}

impl ServerTlsHandle {
    /// Reads the files `tls` names; the warnings are about `ciphers`.
    pub fn load(tls: &ServerTls) -> Result<(ServerTlsHandle, Vec<String>), TlsError> {
        let (config, warnings) = crate::tls::server_config(tls)?;
        Ok((
            ServerTlsHandle {
                current: RwLock::new(Arc::new(config)),
            },
            warnings,
        ))
    }

    /// Re-reads the files; on an error the API keeps the certificate it has.
    pub fn reload(&self, tls: &ServerTls) -> Result<Vec<String>, TlsError> {
        let (config, warnings) = crate::tls::server_config(tls)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(config);
        Ok(warnings)
    }

    fn acceptor(&self) -> tokio_rustls::TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        tokio_rustls::TlsAcceptor::from(config)
    }
}

/// Accepts connections until the process ends.
pub async fn serve(listener: TcpListener, router: Router, tls: Option<Arc<ServerTlsHandle>>) {
    loop {
        let (stream, addr) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, most likely: let connections close before trying again.
                tracing::warn!(error = %e, "REST API: accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let router = router.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        tokio::spawn(async move {
            let Some(acceptor) = acceptor else {
                let peer = Peer {
                    addr,
                    client_certificate: false,
                };
                return serve_connection(TokioIo::new(stream), router, peer).await;
            };
            let stream =
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %addr, error = %e, "REST API: TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %addr, "REST API: TLS handshake timed out");
                        return;
                    }
                };
            let client_certificate = stream
                .get_ref()
                .1
                .peer_certificates()
                .is_some_and(|certs| !certs.is_empty());
            let peer = Peer {
                addr,
                client_certificate,
            };
            serve_connection(TokioIo::new(stream), router, peer).await;
        });
    }
}

async fn serve_connection<I>(io: TokioIo<I>, router: Router, peer: Peer)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = router.map_request(
        move |mut request: axum::extract::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(peer);
            request
        },
    );
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(io, TowerToHyperService::new(service))
        .await;
    if let Err(e) = served {
        tracing::debug!(peer = %peer.addr, error = %e, "REST API: connection ended with an error");
    }
}
