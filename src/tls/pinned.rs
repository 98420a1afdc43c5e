//! Certificates trusted because they are themselves in the trust file, as OpenSSL (and so
//! Patroni) trusts them: a self-signed certificate made with `openssl req -x509` is both the
//! CA file and the member's own certificate. webpki refuses such a certificate as an end
//! entity (`CaUsedAsEndEntity`: it says `CA:TRUE`), so Patroni's own setups, its acceptance
//! suite's among them, would fail every handshake.
//!
//! Only that one refusal is overturned, and only for a certificate byte for byte in the trust
//! file: webpki checks validity dates before the CA flag, so a pinned certificate that
//! reached this refusal is within its dates; the handshake's signature is still verified
//! against it, so the peer holds its key; a server's host name is still checked.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};

/// Whether webpki refused `error` only because the certificate is a CA's.
fn refused_as_ca(error: &rustls::Error) -> bool {
    match error {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

fn is_pinned(pinned: &[CertificateDer<'static>], cert: &CertificateDer<'_>) -> bool {
    pinned.iter().any(|p| p.as_ref() == cert.as_ref())
}

/// A client-certificate verifier that also accepts a certificate found in the CA file.
#[derive(Debug)]
pub(super) struct PinnedClients {
    pub(super) inner: Arc<dyn ClientCertVerifier>,
    pub(super) pinned: Vec<CertificateDer<'static>>,
}

impl ClientCertVerifier for PinnedClients {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Err(e) if refused_as_ca(&e) && is_pinned(&self.pinned, end_entity) => {
                Ok(ClientCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A server-certificate verifier that also accepts a certificate found in the CA file, its
/// host name checked unless `check_name` is off (`insecure` with a client certificate).
#[derive(Debug)]
pub(super) struct PinnedServers {
    pub(super) inner: Arc<dyn ServerCertVerifier>,
    pub(super) pinned: Vec<CertificateDer<'static>>,
    pub(super) check_name: bool,
}

impl ServerCertVerifier for PinnedServers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(e) if refused_as_ca(&e) && is_pinned(&self.pinned, end_entity) => {
                if self.check_name {
                    let cert = webpki::EndEntityCert::try_from(end_entity).map_err(|_| {
                        rustls::Error::InvalidCertificate(CertificateError::BadEncoding)
                    })?;
                    cert.verify_is_valid_for_subject_name(server_name)
                        .map_err(|_| {
                            rustls::Error::InvalidCertificate(CertificateError::NotValidForName)
                        })?;
                }
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
