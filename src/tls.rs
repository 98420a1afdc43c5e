//! TLS for the REST API and for the clients of members' APIs, with rustls and its `ring`
//! provider: certificate and key files read and checked, server and client configurations
//! built from Patroni's settings ([`ServerTls`], [`ClientTls`]).
//!
//! What rustls cannot do, and what happens instead:
//! - `ciphers` names OpenSSL cipher suites; rustls implements only AEAD suites with
//!   forward secrecy. Named suites rustls implements restrict TLS 1.2 to them (TLS 1.3
//!   suites stay on, as with Python's `set_ciphers`); every other word (OpenSSL aliases such
//!   as `HIGH` or `!aNULL`, CBC or static-RSA suites) is reported, never silently dropped.
//! - `keyfile_password` decrypts PKCS#8 keys (`BEGIN ENCRYPTED PRIVATE KEY`, what
//!   `openssl genpkey -aes256` and `openssl pkcs8 -topk8` write); OpenSSL's legacy
//!   encrypted PEM (`Proc-Type: 4,ENCRYPTED`) is refused with the command that converts it.
//! - webpki refuses a certificate that says `CA:TRUE` as a member's or a client's own; a
//!   self-signed one found byte for byte in the CA file is trusted anyway, as OpenSSL trusts
//!   it ([`pinned`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig,
    SignatureScheme,
};

use crate::config::{ClientTls, EtcdTls, Secret, ServerTls, VerifyClient};

mod pinned;

/// A TLS setting that cannot be used, naming the setting and the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file named by a setting cannot be read or holds nothing usable.
    #[error("{setting} {path}: {message}")]
    File {
        /// The setting (`restapi.certfile`, `ctl.cacert`, ...).
        setting: String,
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The settings together cannot make a TLS configuration.
    #[error("{setting}: {message}")]
    Setting {
        /// The setting.
        setting: String,
        /// What is wrong.
        message: String,
    },
}

/// The provider every configuration uses. rustls 0.23.48 deprecates ring's provider because
/// it has no post-quantum key exchange; aws-lc-rs has one but is a long C build
/// (`reference/dependencies.md`), and etcd-client's TLS is built on ring too.
#[allow(deprecated)]
fn ring() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// OpenSSL's names for the TLS 1.2 suites rustls implements, with the IANA names rustls
/// uses.
const OPENSSL_NAMES: &[(&str, &str)] = &[
    (
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
    (
        "ECDHE-RSA-AES256-GCM-SHA384",
        "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    ),
    (
        "ECDHE-RSA-AES128-GCM-SHA256",
        "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    ),
    (
        "ECDHE-RSA-CHACHA20-POLY1305",
        "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    ),
];

/// The provider restricted to the TLS 1.2 suites `ciphers` names (TLS 1.3 suites stay),
/// and a warning for every word rustls cannot honour.
fn provider_for(ciphers: Option<&str>, setting: &str) -> (CryptoProvider, Vec<String>) {
    let mut provider = ring();
    let Some(list) = ciphers else {
        return (provider, Vec::new());
    };
    let words: Vec<&str> = list
        .split([':', ',', ' '])
        .map(str::trim)
        .filter(|w| !w.is_empty())
        .collect();
    let iana = |word: &str| -> String {
        OPENSSL_NAMES
            .iter()
            .find(|(openssl, _)| openssl.eq_ignore_ascii_case(word))
            .map_or_else(
                || word.to_ascii_uppercase(),
                |(_, iana)| (*iana).to_string(),
            )
    };
    let wanted: Vec<String> = words.iter().map(|w| iana(w)).collect();
    let name = |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite());
    let mut unknown = Vec::new();
    for (word, iana) in words.iter().zip(&wanted) {
        if !provider.cipher_suites.iter().any(|s| name(s) == *iana) {
            unknown.push(*word);
        }
    }
    provider
        .cipher_suites
        .retain(|s| s.version() == &rustls::version::TLS13 || wanted.iter().any(|w| *w == name(s)));
    let mut warnings = Vec::new();
    if !unknown.is_empty() {
        warnings.push(format!(
            "{setting}: rustls cannot honour {} (OpenSSL aliases and exclusions, and suites \
             without forward secrecy or AEAD, do not exist in rustls); ignored",
            unknown.join(", ")
        ));
    }
    let tls12: Vec<String> = provider
        .cipher_suites
        .iter()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .map(name)
        .collect();
    if tls12.is_empty() {
        warnings.push(format!(
            "{setting}: no TLS 1.2 suite left; only TLS 1.3 is offered"
        ));
    }
    (provider, warnings)
}

fn read(setting: &str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::File {
        setting: setting.to_string(),
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Every certificate in a PEM file (a chain: the leaf first).
pub fn read_certificates(
    setting: &str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(setting, path)?;
    let bad = |message: String| TlsError::File {
        setting: setting.to_string(),
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate (BEGIN CERTIFICATE)".into()));
    }
    Ok(certs)
}

/// The private key in a PEM file, decrypted with `password` when it is encrypted.
pub fn read_private_key(
    setting: &str,
    path: &Path,
    password: Option<&Secret>,
) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(setting, path)?;
    let bad = |message: String| TlsError::File {
        setting: setting.to_string(),
        path: path.to_path_buf(),
        message,
    };
    let text = String::from_utf8_lossy(&bytes);
    if text.contains("Proc-Type: 4,ENCRYPTED") {
        return Err(bad(format!(
            "the key is encrypted in OpenSSL's legacy PEM format, which pgwarden cannot \
             decrypt; convert it to encrypted PKCS#8 with `openssl pkcs8 -topk8 -v2 aes-256-cbc \
             -in {0} -out <new file>`",
            path.display()
        )));
    }
    if let Some(start) = text.find("-----BEGIN ENCRYPTED PRIVATE KEY-----") {
        let Some(password) = password else {
            return Err(bad(
                "the key is encrypted and no keyfile_password is set".into()
            ));
        };
        let (_, document) = pkcs8::Document::from_pem(&text[start..])
            .map_err(|e| bad(format!("the encrypted key cannot be read: {e}")))?;
        let encrypted = pkcs8::EncryptedPrivateKeyInfo::try_from(document.as_bytes())
            .map_err(|e| bad(format!("the encrypted key cannot be read: {e}")))?;
        let decrypted = encrypted.decrypt(password.0.as_bytes()).map_err(|_| {
            bad("the key cannot be decrypted: wrong keyfile_password, or a cipher pgwarden does not implement".into())
        })?;
        return Ok(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            decrypted.as_bytes().to_vec(),
        )));
    }
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| {
        bad(format!(
            "holds no usable private key (PKCS#8, PKCS#1 or SEC1 PEM): {e}"
        ))
    })
}

/// The CA file's certificates (also trusted as themselves, see [`pinned`]) and the store
/// built from them.
fn roots(
    setting: &str,
    path: &Path,
) -> Result<(RootCertStore, Vec<CertificateDer<'static>>), TlsError> {
    let certs = read_certificates(setting, path)?;
    let mut roots = RootCertStore::empty();
    for cert in certs.iter().cloned() {
        roots.add(cert).map_err(|e| TlsError::File {
            setting: setting.to_string(),
            path: path.to_path_buf(),
            message: format!("not a usable CA certificate: {e}"),
        })?;
    }
    Ok((roots, certs))
}

/// PEM text of a DER object, 64 columns as OpenSSL writes it.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

/// etcd's TLS (`etcd3.cacert`, `cert`, `key`, `key_password`), for https endpoints; every
/// file is read and checked here, so a bad one is refused with its setting named.
pub fn etcd_options(tls: &EtcdTls) -> Result<etcd_client::TlsOptions, TlsError> {
    let mut options = etcd_client::TlsOptions::new();
    options = match &tls.cacert {
        Some(cacert) => {
            let certs = read_certificates("etcd3.cacert", cacert)?;
            let pems: String = certs.iter().map(|c| pem("CERTIFICATE", c)).collect();
            options.ca_certificate(etcd_client::Certificate::from_pem(pems))
        }
        None => options.with_native_roots(),
    };
    if let Some(cert) = &tls.cert {
        let certs = read_certificates("etcd3.cert", cert)?;
        let (key_setting, key_path) = match &tls.key {
            Some(k) => ("etcd3.key", k.as_path()),
            None => ("etcd3.cert", cert.as_path()),
        };
        let key = read_private_key(key_setting, key_path, tls.key_password.as_ref())?;
        let label = match &key {
            PrivateKeyDer::Pkcs1(_) => "RSA PRIVATE KEY",
            PrivateKeyDer::Sec1(_) => "EC PRIVATE KEY",
            _ => "PRIVATE KEY",
        };
        let chain: String = certs.iter().map(|c| pem("CERTIFICATE", c)).collect();
        options = options.identity(etcd_client::Identity::from_pem(
            chain,
            pem(label, key.secret_der()),
        ));
    }
    Ok(options)
}

/// The REST API's server configuration, and warnings about `ciphers`.
pub fn server_config(tls: &ServerTls) -> Result<(ServerConfig, Vec<String>), TlsError> {
    let (provider, warnings) = provider_for(tls.ciphers.as_deref(), "restapi.ciphers");
    let provider = Arc::new(provider);
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setting {
            setting: "restapi.ciphers".into(),
            message: e.to_string(),
        })?;
    let builder = match (tls.verify_client, &tls.cafile) {
        (VerifyClient::None, _) | (_, None) => builder.with_no_client_auth(),
        (mode, Some(cafile)) => {
            let (roots, pinned) = roots("restapi.cafile", cafile)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
            let verifier = if mode == VerifyClient::Optional {
                verifier.allow_unauthenticated()
            } else {
                verifier
            };
            let verifier = verifier.build().map_err(|e| TlsError::Setting {
                setting: "restapi.cafile".into(),
                message: e.to_string(),
            })?;
            builder.with_client_cert_verifier(Arc::new(pinned::PinnedClients {
                inner: verifier,
                pinned,
            }))
        }
    };
    let certs = read_certificates("restapi.certfile", &tls.certfile)?;
    let (key_setting, key_path) = match &tls.keyfile {
        Some(k) => ("restapi.keyfile", k.as_path()),
        None => ("restapi.certfile", tls.certfile.as_path()),
    };
    let key = read_private_key(key_setting, key_path, tls.keyfile_password.as_ref())?;
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::File {
            setting: key_setting.into(),
            path: key_path.to_path_buf(),
            message: format!("the key does not go with restapi.certfile: {e}"),
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, warnings))
}

/// The client configuration for members' REST APIs (`ctl.*`, `setting` the section name
/// used in errors).
pub fn client_config(tls: &ClientTls, section: &str) -> Result<ClientConfig, TlsError> {
    let provider = Arc::new(ring());
    let (roots, pinned) = match &tls.cacert {
        Some(cacert) => roots(&format!("{section}.cacert"), cacert)?,
        None => {
            let mut store = RootCertStore::empty();
            // The system's CAs, as Python's default context has them; a system without
            // any still works with `insecure` or for plain-HTTP members.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = store.add(cert);
            }
            // System CAs are trusted only as issuers, never pinned as end entities.
            (store, Vec::new())
        }
    };
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Setting {
            setting: section.into(),
            message: e.to_string(),
        })?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.insecure && tls.certfile.is_none() {
        Arc::new(NoVerification(provider.clone()))
    } else {
        let webpki = if roots.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|e| TlsError::Setting {
                        setting: format!("{section}.cacert"),
                        message: e.to_string(),
                    })?,
            )
        };
        let verifier: Arc<dyn ServerCertVerifier> = match webpki {
            None => Arc::new(NoRoots),
            Some(webpki) if tls.insecure => Arc::new(AnyHostName(webpki)),
            Some(webpki) => webpki,
        };
        Arc::new(pinned::PinnedServers {
            inner: verifier,
            pinned,
            check_name: !tls.insecure,
        })
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let config = match &tls.certfile {
        Some(certfile) => {
            let cert_setting = format!("{section}.certfile");
            let certs = read_certificates(&cert_setting, certfile)?;
            let (key_setting, key_path) = match &tls.keyfile {
                Some(k) => (format!("{section}.keyfile"), k.as_path()),
                None => (cert_setting, certfile.as_path()),
            };
            let key = read_private_key(&key_setting, key_path, tls.keyfile_password.as_ref())?;
            builder
                .with_client_auth_cert(certs, key)
                .map_err(|e| TlsError::File {
                    setting: key_setting.clone(),
                    path: key_path.to_path_buf(),
                    message: format!("the key does not go with the certificate: {e}"),
                })?
        }
        None => builder.with_no_client_auth(),
    };
    Ok(config)
}

/// `insecure` without a client certificate: any server certificate is accepted (the
/// handshake's signatures are still checked, so the peer holds the key it shows).
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `insecure` with a client certificate (Patroni's `assert_hostname = False`): the chain
/// must lead to the CA, the host name is not checked.
#[derive(Debug)]
struct AnyHostName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// No CA to verify against (no `cacert` and no system roots): every TLS member is refused
/// with an error that says so, rather than the handshake's generic "unknown issuer".
#[derive(Debug)]
struct NoRoots;

impl ServerCertVerifier for NoRoots {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Err(rustls::Error::General(
            "no CA to verify the member's certificate: set ctl.cacert (or restapi.cafile), or ctl.insecure".into(),
        ))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no CA".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("no CA".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        ring().signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ciphers_restrict_tls12_and_name_what_rustls_cannot_honour() {
        let (provider, warnings) = provider_for(
            Some("ECDHE-RSA-AES128-GCM-SHA256:HIGH:!aNULL:AES256-SHA"),
            "restapi.ciphers",
        );
        let names: Vec<String> = provider
            .cipher_suites
            .iter()
            .map(|s| format!("{:?}", s.suite()))
            .collect();
        assert!(names.contains(&"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string()));
        assert!(!names.contains(&"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384".to_string()));
        assert!(
            names.contains(&"TLS13_AES_128_GCM_SHA256".to_string()),
            "{names:?}"
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].contains("HIGH, !aNULL, AES256-SHA"),
            "{warnings:?}"
        );

        let (provider, warnings) = provider_for(None, "restapi.ciphers");
        assert_eq!(provider.cipher_suites.len(), ring().cipher_suites.len());
        assert!(warnings.is_empty());
    }

    /// A self-signed certificate for 127.0.0.1 that says `CA:TRUE`, as `openssl req -x509`
    /// makes it, written with its key to `dir/<name>.crt` and `.key`.
    fn self_signed_ca(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        self_signed_ca_until(dir, name, false)
    }

    /// [`self_signed_ca`], or one that expired yesterday.
    fn self_signed_ca_until(dir: &Path, name: &str, expired: bool) -> (PathBuf, PathBuf) {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("params");
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        if expired {
            let now = time::OffsetDateTime::now_utc();
            params.not_before = now - time::Duration::days(30);
            params.not_after = now - time::Duration::days(1);
        }
        let cert = params.self_signed(&key).expect("certificate");
        let (crt, pem_key) = (
            dir.join(format!("{name}.crt")),
            dir.join(format!("{name}.key")),
        );
        std::fs::write(&crt, cert.pem()).expect("write certificate");
        std::fs::write(&pem_key, key.serialize_pem()).expect("write key");
        (crt, pem_key)
    }

    /// Runs a handshake in memory; the error of the side that failed.
    fn handshake(server: ServerConfig, client: ClientConfig) -> Result<(), rustls::Error> {
        let name = ServerName::try_from("127.0.0.1").expect("name");
        let mut client = rustls::ClientConnection::new(Arc::new(client), name)?;
        let mut server = rustls::ServerConnection::new(Arc::new(server))?;
        for _ in 0..10 {
            let mut wire = Vec::new();
            while client.wants_write() {
                client.write_tls(&mut wire).expect("client writes");
            }
            let mut read = &wire[..];
            while !read.is_empty() {
                server.read_tls(&mut read).expect("server reads");
            }
            server.process_new_packets()?;
            let mut wire = Vec::new();
            while server.wants_write() {
                server.write_tls(&mut wire).expect("server writes");
            }
            let mut read = &wire[..];
            while !read.is_empty() {
                client.read_tls(&mut read).expect("client reads");
            }
            client.process_new_packets()?;
            if !client.is_handshaking() && !server.is_handshaking() {
                return Ok(());
            }
        }
        panic!("the handshake did not finish");
    }

    #[test]
    fn a_self_signed_certificate_in_the_ca_file_is_trusted_as_openssl_trusts_it() {
        // Patroni's acceptance suite: one `openssl req -x509` certificate is the REST API's
        // certificate, its CA file, and the client certificate of patronictl and the steps.
        let dir = tempfile::tempdir().expect("dir");
        let (crt, key) = self_signed_ca(dir.path(), "patroni");
        let (other_crt, other_key) = self_signed_ca(dir.path(), "other");
        let server = |cafile: &Path| ServerTls {
            certfile: crt.clone(),
            keyfile: Some(key.clone()),
            keyfile_password: None,
            cafile: Some(cafile.to_path_buf()),
            ciphers: None,
            verify_client: VerifyClient::Required,
        };
        let client = |cacert: &Path, cert: &Path, key: &Path, insecure: bool| ClientTls {
            cacert: Some(cacert.to_path_buf()),
            certfile: Some(cert.to_path_buf()),
            keyfile: Some(key.to_path_buf()),
            keyfile_password: None,
            insecure,
        };
        let config = |s: ServerTls, c: ClientTls| {
            (
                server_config(&s).expect("server config").0,
                client_config(&c, "ctl").expect("client config"),
            )
        };
        for insecure in [false, true] {
            let (s, c) = config(server(&crt), client(&crt, &crt, &key, insecure));
            handshake(s, c).expect("the pinned certificate is trusted both ways");
        }
        // A client certificate that is not in the server's CA file is still refused.
        let (s, c) = config(server(&crt), client(&crt, &other_crt, &other_key, false));
        let refused = handshake(s, c).expect_err("an unknown client certificate");
        assert!(
            matches!(refused, rustls::Error::InvalidCertificate(_)),
            "{refused:?}"
        );
        // A server certificate that is not in the client's CA file is still refused.
        let (s, c) = config(server(&crt), client(&other_crt, &crt, &key, false));
        let refused = handshake(s, c).expect_err("an unknown server certificate");
        assert!(
            matches!(refused, rustls::Error::InvalidCertificate(_)),
            "{refused:?}"
        );
        // A pinned certificate out of its dates is refused: webpki checks the dates before
        // the CA flag, so the refusal pinned.rs overturns never comes.
        let (old_crt, old_key) = self_signed_ca_until(dir.path(), "expired", true);
        let (s, c) = config(server(&old_crt), client(&crt, &old_crt, &old_key, false));
        let refused = handshake(s, c).expect_err("an expired pinned client certificate");
        assert!(
            matches!(
                refused,
                rustls::Error::InvalidCertificate(
                    CertificateError::Expired | CertificateError::ExpiredContext { .. }
                )
            ),
            "{refused:?}"
        );
    }

    #[test]
    fn missing_files_name_the_setting_and_the_path() {
        let e = read_certificates("restapi.certfile", Path::new("/nonexistent/c.pem"))
            .expect_err("missing");
        let text = e.to_string();
        assert!(
            text.starts_with("restapi.certfile /nonexistent/c.pem:"),
            "{text}"
        );
    }
}
