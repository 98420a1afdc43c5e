//! The REST API over real TLS on loopback: the agent's own server (`api::serve`) with the
//! seed's configuration plus `restapi.certfile`/`keyfile`/`cafile`/`verify_client` and
//! Basic authentication, certificates from a fresh CA, and pgwarden's own client with and
//! without client certificates. No cluster: the published status is a fresh node's.
//! The cluster tests (`tls_cluster`) run the same settings with patronictl and HAProxy.

mod support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pgwarden::api::serve::ServerTlsHandle;
use pgwarden::api::ApiState;
use pgwarden::config::{ApiClientConfig, ClientTls, Config, Credentials};
use pgwarden::core::{Instant, Node};
use pgwarden::runtime::http::ApiClient;
use support::http::{request_with, ApiTls};
use support::tls::{presented_certificate, Pki};

const SEED: &str = include_str!("testdata/seed-patroni.yml");
const TIMEOUT: Duration = Duration::from_secs(5);

/// The seed's configuration with the REST API's TLS settings from `vars`.
fn config(vars: &[(&str, String)]) -> Result<Config, String> {
    let mut env: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    env.insert("PATRONI_RESTAPI_USERNAME".into(), "ops".into());
    env.insert("PATRONI_RESTAPI_PASSWORD".into(), "api-secret".into());
    pgwarden::config::parse(SEED, &|name| env.get(name).cloned())
        .map(|loaded| loaded.config)
        .map_err(|e| e.to_string())
}

fn tls_vars(pki: &Pki, verify_client: &str) -> Vec<(&'static str, String)> {
    vec![
        (
            "PATRONI_RESTAPI_CERTFILE",
            pki.server.cert.display().to_string(),
        ),
        (
            "PATRONI_RESTAPI_KEYFILE",
            pki.server.key.display().to_string(),
        ),
        ("PATRONI_RESTAPI_CAFILE", pki.ca.display().to_string()),
        ("PATRONI_RESTAPI_VERIFY_CLIENT", verify_client.to_string()),
    ]
}

/// A REST API serving `config` on a free loopback port.
struct Server {
    runtime: tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    tls: Arc<ServerTlsHandle>,
}

impl Server {
    fn start(config: Config) -> Server {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let tls_settings = config.restapi.tls.clone().expect("TLS configured");
        let (handle, _) = ServerTlsHandle::load(&tls_settings).expect("certificates load");
        let tls = Arc::new(handle);
        let node = Node::new(pgwarden::runtime::node_settings(&config), Instant(0));
        let identity = pgwarden::runtime::identity(&config);
        let (_status_tx, status) = tokio::sync::watch::channel(Arc::new(node.status()));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let state = ApiState::new(identity, status, config);
        runtime.spawn(pgwarden::api::serve(listener, state, Some(tls.clone())));
        // The status sender must live as long as the server.
        std::mem::forget(_status_tx);
        Server { runtime, addr, tls }
    }

    fn url(&self, path: &str) -> String {
        format!("https://{}{path}", self.addr)
    }

    /// `method path` with pgwarden's client configured as `client`.
    fn call(&self, client: &ApiClientConfig, method: &str, path: &str) -> Result<u16, String> {
        let client = ApiClient::new(client, "ctl").map_err(|e| e.to_string())?;
        self.runtime
            .block_on(client.request(method, &self.url(path), None, TIMEOUT))
            .map(|(status, _)| status)
            .map_err(|e| e.to_string())
    }
}

fn client(
    pki: &Pki,
    certificate: Option<&support::tls::Pair>,
    auth: Option<&str>,
) -> ApiClientConfig {
    ApiClientConfig {
        credentials: auth.map(|password| Credentials {
            username: "ops".into(),
            password: Some(password.into()),
        }),
        tls: ClientTls {
            cacert: Some(pki.ca.clone()),
            certfile: certificate.map(|p| p.cert.clone()),
            keyfile: certificate.map(|p| p.key.clone()),
            keyfile_password: None,
            insecure: false,
        },
    }
}

fn pki() -> (tempfile::TempDir, Pki) {
    let dir = tempfile::Builder::new()
        .prefix("pgwarden-it-tls-")
        .tempdir()
        .expect("temp dir");
    let pki = Pki::generate(&dir.path().join("pki"));
    (dir, pki)
}

#[test]
fn verify_client_required_refuses_connections_without_the_cas_certificate() {
    let (_dir, pki) = pki();
    let config = config(&tls_vars(&pki, "required")).expect("config");
    assert_eq!(
        pgwarden::runtime::identity(&config).api_url,
        "https://10.0.1.11:8008/patroni",
        "the member key advertises https"
    );
    let server = Server::start(config);

    let right = client(&pki, Some(&pki.client), Some("api-secret"));
    assert_eq!(server.call(&right, "GET", "/patroni"), Ok(200));

    for (what, attempt) in [
        (
            "no client certificate",
            client(&pki, None, Some("api-secret")),
        ),
        (
            "a certificate from another CA",
            client(&pki, Some(&pki.rogue_client), Some("api-secret")),
        ),
    ] {
        let refused = server.call(&attempt, "GET", "/patroni");
        let error = refused.expect_err(what);
        assert!(
            error.to_lowercase().contains("certificate") || error.contains("alert"),
            "{what}: the error says why: {error}"
        );
    }
}

#[test]
fn verify_client_optional_serves_reads_and_guards_every_unsafe_request() {
    let (_dir, pki) = pki();
    let server = Server::start(config(&tls_vars(&pki, "optional")).expect("config"));
    let anonymous = client(&pki, None, None);
    assert_eq!(server.call(&anonymous, "GET", "/patroni"), Ok(200));
    // A health check is answered by its own rule, never refused for want of a certificate.
    let health = server.call(&anonymous, "HEAD", "/primary");
    assert!(matches!(health, Ok(200 | 503)), "{health:?}");

    // Unsafe requests: a client certificate first (403), then the credentials (401).
    let with_password = client(&pki, None, Some("api-secret"));
    let with_certificate = client(&pki, Some(&pki.client), None);
    let with_both = client(&pki, Some(&pki.client), Some("api-secret"));
    let wrong_password = client(&pki, Some(&pki.client), Some("api-secre"));
    for (method, path) in [
        ("POST", "/reload"),
        ("POST", "/restart"),
        ("DELETE", "/restart"),
        ("POST", "/switchover"),
        ("POST", "/failover"),
        ("DELETE", "/switchover"),
        ("POST", "/reinitialize"),
        ("PATCH", "/config"),
        ("PUT", "/config"),
        ("POST", "/failsafe"),
        ("POST", "/primary"),
    ] {
        assert_eq!(
            server.call(&with_password, method, path),
            Ok(403),
            "{method} {path} without a certificate"
        );
        assert_eq!(
            server.call(&with_certificate, method, path),
            Ok(401),
            "{method} {path} without credentials"
        );
        assert_eq!(
            server.call(&wrong_password, method, path),
            Ok(401),
            "{method} {path} with a wrong password"
        );
        let passed = server.call(&with_both, method, path).expect("answered");
        assert!(
            passed != 401 && passed != 403,
            "{method} {path} with both reaches the handler, got {passed}"
        );
    }

    // The 401 says how to authenticate.
    let tls = ApiTls {
        config: pki.client_config(Some(&pki.client)),
        basic: None,
    };
    let answer =
        request_with(server.addr, Some(&tls), "POST", "/reload", None, TIMEOUT).expect("answered");
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Basic realm=\"pgwarden\"")
    );
}

#[test]
fn a_renewed_certificate_is_served_after_a_reload_and_a_bad_one_is_refused() {
    let (_dir, pki) = pki();
    let config = config(&tls_vars(&pki, "none")).expect("config");
    let settings = config.restapi.tls.clone().expect("tls");
    let server = Server::start(config);
    let trusting = pki.client_config(None);
    let before = presented_certificate(server.addr, trusting.clone()).expect("handshake");
    assert_eq!(before, support::tls::first_der(&pki.server.cert));

    let renewed = pki.renew_server();
    assert_ne!(renewed, before);
    assert_eq!(
        presented_certificate(server.addr, trusting.clone()).expect("handshake"),
        before,
        "nothing changes until the reload"
    );
    server
        .tls
        .reload(&settings)
        .expect("the renewed files load");
    assert_eq!(
        presented_certificate(server.addr, trusting.clone()).expect("handshake"),
        renewed
    );

    // A key that does not go with the certificate is refused, naming the setting; the
    // server keeps the certificate it has.
    std::fs::copy(&pki.client.key, &pki.server.key).expect("copy");
    let error = server.tls.reload(&settings).expect_err("mismatched key");
    assert!(error.to_string().contains("restapi.keyfile"), "{error}");
    assert_eq!(
        presented_certificate(server.addr, trusting).expect("handshake"),
        renewed
    );
}

#[test]
fn an_encrypted_key_needs_its_password() {
    let (_dir, pki) = pki();
    let encrypted = pki.server.key.with_file_name("server-encrypted.key");
    encrypt_key(&pki.server.key, &encrypted, "key-pass");
    let mut vars = tls_vars(&pki, "none");
    vars[1].1 = encrypted.display().to_string();

    let without = config(&vars).expect("config");
    let error = ServerTlsHandle::load(without.restapi.tls.as_ref().expect("tls"))
        .err()
        .expect("no password");
    assert!(error.to_string().contains("no keyfile_password"), "{error}");

    vars.push(("PATRONI_RESTAPI_KEYFILE_PASSWORD", "wrong".into()));
    let wrong = config(&vars).expect("config");
    let error = ServerTlsHandle::load(wrong.restapi.tls.as_ref().expect("tls"))
        .err()
        .expect("wrong password");
    assert!(
        error.to_string().contains("wrong keyfile_password"),
        "{error}"
    );
    assert!(!format!("{wrong:?}").contains("key-pass"));

    vars.pop();
    vars.push(("PATRONI_RESTAPI_KEYFILE_PASSWORD", "key-pass".into()));
    let right = config(&vars).expect("config");
    let server = Server::start(right);
    assert_eq!(
        server.call(&client(&pki, None, None), "GET", "/patroni"),
        Ok(200)
    );
}

#[test]
fn insecure_skips_verification_and_without_it_an_unknown_ca_is_refused() {
    let (_dir, pki) = pki();
    let server = Server::start(config(&tls_vars(&pki, "none")).expect("config"));
    let mut unknown_ca = client(&pki, None, None);
    unknown_ca.tls.cacert = Some(pki.rogue_ca.clone());
    let error = server
        .call(&unknown_ca, "GET", "/patroni")
        .expect_err("a certificate from an untrusted CA");
    assert!(
        error.to_lowercase().contains("issuer") || error.contains("certificate"),
        "{error}"
    );
    unknown_ca.tls.insecure = true;
    assert_eq!(server.call(&unknown_ca, "GET", "/patroni"), Ok(200));
}

/// Writes `from`'s PKCS#8 key to `to`, encrypted (PBES2: PBKDF2-SHA256, AES-256-CBC), as
/// `openssl pkcs8 -topk8 -v2 aes-256-cbc` does.
fn encrypt_key(from: &Path, to: &Path, password: &str) {
    use pkcs8::der::pem::LineEnding;
    use pkcs8::der::Decode;
    let text = std::fs::read_to_string(from).expect("key");
    let (_, der) = pkcs8::Document::from_pem(&text).expect("PEM key");
    let info = pkcs8::PrivateKeyInfo::from_der(der.as_bytes()).expect("PKCS#8");
    let params =
        pkcs8::pkcs5::pbes2::Parameters::pbkdf2_sha256_aes256cbc(2048, b"salt-1234", &[7; 16])
            .expect("parameters");
    let encrypted = info
        .encrypt_with_params(params, password)
        .expect("encrypts");
    let pem = encrypted
        .to_pem("ENCRYPTED PRIVATE KEY", LineEnding::LF)
        .expect("PEM");
    std::fs::write(to, pem.as_bytes()).expect("write");
}
