//! Certificates for TLS tests, generated with rcgen for each run: a CA, a server
//! certificate for loopback (etcd and the agents' REST APIs), a client certificate (agents
//! towards etcd and their peers, patronictl, pgwardenctl), an administrator's (common name
//! `root`: the harness's etcdctl, which etcd with authentication enabled takes for its root
//! user), a client certificate from another CA, which every server must refuse, and on
//! demand more client certificates, short-lived ones included.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::process::{give_to_runner, set_mode};

/// A certificate and its key, as PEM files.
#[derive(Clone, Debug)]
pub struct Pair {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The files of one test's PKI.
#[derive(Clone)]
pub struct Pki {
    /// The CA that signs `server` and `client`.
    pub ca: PathBuf,
    /// For 127.0.0.1 and localhost (server and client use).
    pub server: Pair,
    /// For clients only, without a common name.
    pub client: Pair,
    /// For clients only, common name `root`.
    pub admin: Pair,
    /// Signed by another CA, `rogue_ca`.
    pub rogue_client: Pair,
    /// The other CA.
    pub rogue_ca: PathBuf,
    /// Signs renewed server certificates.
    issuer: Arc<Issuer<'static, KeyPair>>,
    /// Where the files are.
    dir: PathBuf,
}

fn ca(name: &str) -> (Issuer<'static, KeyPair>, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-signed CA");
    (Issuer::new(params, key), cert.pem())
}

fn leaf(
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
    sans: &[&str],
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> (String, String) {
    leaf_valid_for(issuer, name, sans, usages, None)
}

/// A certificate (with common name `name` unless empty) valid from a minute ago for
/// `lifetime` when given (rcgen's default span otherwise, decades).
fn leaf_valid_for(
    issuer: &Issuer<'static, KeyPair>,
    name: &str,
    sans: &[&str],
    usages: Vec<ExtendedKeyUsagePurpose>,
    lifetime: Option<Duration>,
) -> (String, String) {
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        .expect("params");
    if let Some(lifetime) = lifetime {
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - Duration::from_secs(60);
        params.not_after = now + lifetime;
    }
    params.distinguished_name = rcgen::DistinguishedName::new();
    if !name.is_empty() {
        params.distinguished_name.push(DnType::CommonName, name);
    }
    params.extended_key_usages = usages;
    let cert = params.signed_by(&key, issuer).expect("signed");
    (cert.pem(), key.serialize_pem())
}

/// Writes `text` to `path`, readable by the agents' user only.
fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    set_mode(path, 0o600);
    give_to_runner(path);
}

impl Pki {
    /// A fresh PKI in `dir` (created if missing).
    pub fn generate(dir: &Path) -> Pki {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        give_to_runner(dir);
        let (issuer, ca_pem) = ca("pgwarden test CA");
        let (rogue, rogue_pem) = ca("somebody else's CA");
        let both = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let client_only = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let server = leaf(
            &issuer,
            "pgwarden server",
            &["127.0.0.1", "localhost"],
            both,
        );
        // No common name: etcd with authentication on answers 400 to any request through
        // its HTTP gateway (patronictl's way in) over a client certificate that has one
        // ("CommonName of client sending a request against gateway will be ignored and not
        // used as expected"), whatever credentials come with it.
        let client = leaf(&issuer, "", &[], client_only.clone());
        let admin = leaf(&issuer, "root", &[], client_only.clone());
        let rogue_client = leaf(&rogue, "pgwarden client", &[], client_only);
        let pki = Pki {
            ca: dir.join("ca.pem"),
            server: Pair {
                cert: dir.join("server.pem"),
                key: dir.join("server.key"),
            },
            client: Pair {
                cert: dir.join("client.pem"),
                key: dir.join("client.key"),
            },
            admin: Pair {
                cert: dir.join("admin.pem"),
                key: dir.join("admin.key"),
            },
            rogue_client: Pair {
                cert: dir.join("rogue-client.pem"),
                key: dir.join("rogue-client.key"),
            },
            rogue_ca: dir.join("rogue-ca.pem"),
            issuer: Arc::new(issuer),
            dir: dir.to_path_buf(),
        };
        write_private(&pki.ca, &ca_pem);
        write_private(&pki.rogue_ca, &rogue_pem);
        for (pair, (cert, key)) in [
            (&pki.server, server),
            (&pki.client, client),
            (&pki.admin, admin),
            (&pki.rogue_client, rogue_client),
        ] {
            write_private(&pair.cert, &cert);
            write_private(&pair.key, &key);
        }
        pki
    }

    /// Replaces the server certificate and key files with a new pair from the same CA;
    /// returns the new certificate's DER (to tell which one a server presents).
    pub fn renew_server(&self) -> Vec<u8> {
        let (cert, key) = leaf(
            &self.issuer,
            "pgwarden server (renewed)",
            &["127.0.0.1", "localhost"],
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        replace_pair(&self.server, &cert, &key);
        first_der(&self.server.cert)
    }

    /// A client certificate (client use only) from this CA with `common_name`, in
    /// `<stem>.pem` and `<stem>.key`; valid for `lifetime` from now when given. Issuing
    /// again with the same stem renews it in place.
    pub fn issue_client(&self, stem: &str, common_name: &str, lifetime: Option<Duration>) -> Pair {
        let pair = Pair {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        };
        let (cert, key) = leaf_valid_for(
            &self.issuer,
            common_name,
            &[],
            vec![ExtendedKeyUsagePurpose::ClientAuth],
            lifetime,
        );
        replace_pair(&pair, &cert, &key);
        pair
    }

    /// A rustls client configuration trusting this CA, showing `client` when given.
    pub fn client_config(&self, client: Option<&Pair>) -> Arc<rustls::ClientConfig> {
        #[allow(deprecated)] // ring, as the agent uses (src/tls.rs)
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in read_certs(&self.ca) {
            roots.add(cert).expect("CA");
        }
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(roots);
        let config = match client {
            Some(pair) => {
                use rustls::pki_types::pem::PemObject;
                let key =
                    rustls::pki_types::PrivateKeyDer::from_pem_file(&pair.key).expect("client key");
                builder
                    .with_client_auth_cert(read_certs(&pair.cert), key)
                    .expect("client certificate")
            }
            None => builder.with_no_client_auth(),
        };
        Arc::new(config)
    }
}

/// Writes a certificate and its key over `pair`'s files, each file in one rename: etcd and
/// the agents read them at any moment. The key goes first: a reader between the two
/// renames sees a new key with the old certificate, refused as a mismatch, never a torn
/// file.
fn replace_pair(pair: &Pair, cert: &str, key: &str) {
    for (path, text) in [(&pair.key, key), (&pair.cert, cert)] {
        let fresh = path.with_extension("new");
        write_private(&fresh, text);
        std::fs::rename(&fresh, path)
            .unwrap_or_else(|e| panic!("rename {} to {}: {e}", fresh.display(), path.display()));
    }
}

fn read_certs(path: &Path) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_file_iter(path)
        .expect("certificate file")
        .collect::<Result<Vec<_>, _>>()
        .expect("certificates")
}

/// The DER of the first certificate in a PEM file.
pub fn first_der(path: &Path) -> Vec<u8> {
    read_certs(path)
        .into_iter()
        .next()
        .expect("a certificate")
        .to_vec()
}

/// The DER of the certificate the server at `addr` presents (the handshake only).
pub fn presented_certificate(
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> Result<Vec<u8>, String> {
    use std::io::Write;
    let tcp = std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(3))
        .map_err(|e| e.to_string())?;
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let connection = rustls::ClientConnection::new(config, name).map_err(|e| e.to_string())?;
    let mut stream = rustls::StreamOwned::new(connection, tcp);
    stream.flush().map_err(|e| e.to_string())?;
    while stream.conn.is_handshaking() {
        stream
            .conn
            .complete_io(&mut stream.sock)
            .map_err(|e| format!("handshake with {addr}: {e}"))?;
    }
    stream
        .conn
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .ok_or_else(|| "no certificate presented".to_string())
}
