//! TLS settings, as Patroni names them: the REST API's server side (`restapi.certfile`,
//! `keyfile`, `keyfile_password`, `cafile`, `ciphers`, `verify_client`) and the client side
//! used towards members' APIs (`ctl.cacert`, `certfile`, `keyfile`, `keyfile_password`,
//! `insecure`, with `restapi.cafile` as the CA when `ctl.cacert` is absent).
//!
//! Only names and shapes are checked here; the files are read, and refused with their path
//! named, when the runtime builds its TLS configuration (`crate::tls`).

use std::fmt;
use std::path::PathBuf;

use super::error::ConfigError;
use super::tree::{self, Section};

/// Who must show a client certificate to the REST API (`restapi.verify_client`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyClient {
    /// No client certificate is asked for.
    #[default]
    None,
    /// A certificate is asked for and checked when shown; unsafe requests (anything but
    /// GET, HEAD and OPTIONS) without one are refused with 403.
    Optional,
    /// Every connection must show a certificate the CA signed (refused in the handshake).
    Required,
}

/// A secret string: its `Debug` form never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<secret>")
    }
}

/// The REST API's TLS (`restapi.certfile` is set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    /// The certificate chain (PEM); may hold the key too when `keyfile` is absent.
    pub certfile: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 or SEC1; PKCS#8 may be encrypted).
    pub keyfile: Option<PathBuf>,
    /// Decrypts an encrypted PKCS#8 key.
    pub keyfile_password: Option<Secret>,
    /// The CA that signs client certificates.
    pub cafile: Option<PathBuf>,
    /// OpenSSL-style list of TLS 1.2 cipher suites (`:`-separated).
    pub ciphers: Option<String>,
    /// Who must show a client certificate.
    pub verify_client: VerifyClient,
}

/// How the agent (towards its peers) and pgwardenctl (towards members) speak TLS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTls {
    /// The CA that signs the members' certificates; the system's roots when absent.
    pub cacert: Option<PathBuf>,
    /// A client certificate to show (members with `verify_client`).
    pub certfile: Option<PathBuf>,
    /// Its key; the key is read from `certfile` when absent.
    pub keyfile: Option<PathBuf>,
    /// Decrypts an encrypted PKCS#8 key.
    pub keyfile_password: Option<Secret>,
    /// Patroni's `ctl.insecure`: without a client certificate, the member's certificate is
    /// not verified at all; with one, it is verified but its host name is not checked.
    pub insecure: bool,
}

/// TLS towards etcd (`etcd3.cacert`, `cert`, `key`, `key_password`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EtcdTls {
    /// The CA that signs etcd's certificates; the system's roots when absent.
    pub cacert: Option<PathBuf>,
    /// The client certificate (etcd's `--client-cert-auth`).
    pub cert: Option<PathBuf>,
    /// Its key; read from `cert` when absent.
    pub key: Option<PathBuf>,
    /// Decrypts an encrypted PKCS#8 key.
    pub key_password: Option<Secret>,
}

impl EtcdTls {
    /// Whether any TLS setting is present.
    pub fn is_set(&self) -> bool {
        self != &EtcdTls::default()
    }
}

/// The TLS keys of `etcd3:`.
pub(crate) fn parse_etcd(s: &mut Section<'_>) -> Result<EtcdTls, ConfigError> {
    let tls = EtcdTls {
        cacert: path(s, "cacert")?,
        cert: path(s, "cert")?,
        key: path(s, "key")?,
        key_password: secret(s, "key_password")?,
    };
    for (present, key) in [
        (tls.key.is_some(), "key"),
        (tls.key_password.is_some(), "key_password"),
    ] {
        if present && tls.cert.is_none() {
            return Err(ConfigError::new(
                s.key_path(key),
                "set without etcd3.cert, the certificate it belongs to",
            ));
        }
    }
    Ok(tls)
}

fn path(s: &mut Section<'_>, key: &str) -> Result<Option<PathBuf>, ConfigError> {
    let at = s.key_path(key);
    match s.get(key) {
        Some(v) => {
            let text = tree::string(&at, v)?;
            if text.trim().is_empty() {
                return Err(ConfigError::new(at, "an empty path"));
            }
            Ok(Some(PathBuf::from(text)))
        }
        None => Ok(None),
    }
}

fn secret(s: &mut Section<'_>, key: &str) -> Result<Option<Secret>, ConfigError> {
    let at = s.key_path(key);
    match s.get(key) {
        Some(v) => Ok(Some(Secret(tree::secret(&at, v)?))),
        None => Ok(None),
    }
}

/// The TLS keys of `restapi:`: the server's TLS, `None` when `certfile` is absent (plain
/// HTTP), and `cafile`, which is also the CA towards peers when `ctl.cacert` is absent.
/// Server TLS keys without a `certfile` are refused: an operator who set `verify_client`
/// expects TLS.
pub(crate) fn parse_server(
    s: &mut Section<'_>,
) -> Result<(Option<ServerTls>, Option<PathBuf>), ConfigError> {
    let certfile = path(s, "certfile")?;
    let keyfile = path(s, "keyfile")?;
    let keyfile_password = secret(s, "keyfile_password")?;
    let cafile = path(s, "cafile")?;
    let ciphers = match s.get("ciphers") {
        Some(v) => Some(tree::string(&s.key_path("ciphers"), v)?),
        None => None,
    };
    let verify_client = match s.get("verify_client") {
        Some(v) => parse_verify_client(&s.key_path("verify_client"), v)?,
        None => VerifyClient::None,
    };
    let Some(certfile) = certfile else {
        for (present, key) in [
            (keyfile.is_some(), "keyfile"),
            (keyfile_password.is_some(), "keyfile_password"),
            (ciphers.is_some(), "ciphers"),
            (verify_client != VerifyClient::None, "verify_client"),
        ] {
            if present {
                return Err(ConfigError::new(
                    s.key_path(key),
                    "set without restapi.certfile: the REST API speaks TLS only with a certificate",
                ));
            }
        }
        return Ok((None, cafile));
    };
    if verify_client != VerifyClient::None && cafile.is_none() {
        return Err(ConfigError::new(
            s.key_path("verify_client"),
            "client certificates are verified against restapi.cafile, which is missing",
        ));
    }
    Ok((
        Some(ServerTls {
            certfile,
            keyfile,
            keyfile_password,
            cafile: cafile.clone(),
            ciphers,
            verify_client,
        }),
        cafile,
    ))
}

fn parse_verify_client(at: &str, v: &serde_json::Value) -> Result<VerifyClient, ConfigError> {
    match tree::string(at, v)?.trim().to_ascii_lowercase().as_str() {
        "none" => Ok(VerifyClient::None),
        "optional" => Ok(VerifyClient::Optional),
        "required" => Ok(VerifyClient::Required),
        other => Err(ConfigError::new(
            at,
            format!("{other:?} is not a mode (expected none, optional or required)"),
        )),
    }
}

/// The TLS keys of a `ctl:` section; `cafile` is `restapi.cafile`, the CA when `ctl.cacert`
/// is absent (Patroni's fallback).
pub(crate) fn parse_client(
    s: &mut Section<'_>,
    cafile: Option<PathBuf>,
) -> Result<ClientTls, ConfigError> {
    let cacert = path(s, "cacert")?.or(cafile);
    let certfile = path(s, "certfile")?;
    let keyfile = path(s, "keyfile")?;
    let keyfile_password = secret(s, "keyfile_password")?;
    let insecure = match s.get("insecure") {
        Some(v) => tree::boolean(&s.key_path("insecure"), v)?,
        None => false,
    };
    for (present, key) in [
        (keyfile.is_some(), "keyfile"),
        (keyfile_password.is_some(), "keyfile_password"),
    ] {
        if present && certfile.is_none() {
            return Err(ConfigError::new(
                s.key_path(key),
                "set without ctl.certfile, the certificate it belongs to",
            ));
        }
    }
    Ok(ClientTls {
        cacert,
        certfile,
        keyfile,
        keyfile_password,
        insecure,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn server(v: serde_json::Value) -> Result<Option<ServerTls>, ConfigError> {
        let mut s = Section::new("restapi", &v)?;
        parse_server(&mut s).map(|(tls, _)| tls)
    }

    #[test]
    fn the_rest_api_speaks_tls_only_with_a_certificate() {
        assert_eq!(server(json!({})).expect("plain"), None);
        let tls =
            server(json!({"certfile": "/c.pem", "cafile": "/ca.pem", "verify_client": "Required"}))
                .expect("parses")
                .expect("tls");
        assert_eq!(tls.verify_client, VerifyClient::Required);
        assert_eq!(tls.keyfile, None);
        let e = server(json!({"verify_client": "required"})).expect_err("no certificate");
        assert!(e.to_string().contains("restapi.verify_client"), "{e}");
        let e =
            server(json!({"certfile": "/c.pem", "verify_client": "optional"})).expect_err("no CA");
        assert!(e.to_string().contains("restapi.cafile"), "{e}");
        let e = server(json!({"certfile": "/c.pem", "verify_client": "always"})).expect_err("mode");
        assert!(e.to_string().contains("none, optional or required"), "{e}");
    }

    #[test]
    fn key_passwords_never_show_in_debug_output() {
        let tls = server(json!({"certfile": "/c.pem", "keyfile_password": "hunter2"}))
            .expect("parses")
            .expect("tls");
        assert_eq!(tls.keyfile_password, Some(Secret("hunter2".into())));
        assert!(!format!("{tls:?}").contains("hunter2"));
    }

    #[test]
    fn the_client_falls_back_to_the_rest_apis_ca() {
        let v = json!({"insecure": "on"});
        let mut s = Section::new("ctl", &v).expect("section");
        let tls = parse_client(&mut s, Some("/ca.pem".into())).expect("parses");
        assert_eq!(tls.cacert, Some(PathBuf::from("/ca.pem")));
        assert!(tls.insecure);
        let v = json!({"cacert": "/mine.pem", "keyfile": "/k.pem"});
        let mut s = Section::new("ctl", &v).expect("section");
        let e = parse_client(&mut s, Some("/ca.pem".into())).expect_err("key without cert");
        assert!(e.to_string().contains("ctl.keyfile"), "{e}");
    }
}
