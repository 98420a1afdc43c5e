//! The REST API's own server (`api::serve`) on real loopback sockets, with the seed's
//! configuration plus the settings under test: TLS (`restapi.certfile`/`keyfile`/`cafile`/
//! `verify_client`, certificates from a fresh CA, pgwarden's own client with and without
//! client certificates), the allowlist (requests from loopback source addresses, and from
//! hosts in network namespaces of their own), extra headers, protected reads and bounded
//! bodies. No cluster: the published
//! status is a fresh node's. The cluster tests (`tls_cluster`) run TLS with patronictl and
//! HAProxy.

use pgwarden_testkit as support;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pgwarden::api::serve::ServerTlsHandle;
use pgwarden::api::ApiState;
use pgwarden::config::{ApiClientConfig, ClientTls, Config, Credentials};
use pgwarden::core::view::{ClusterView, MemberInfo};
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
    tls: Option<Arc<ServerTlsHandle>>,
}

impl Server {
    fn start(config: Config) -> Server {
        Server::start_with_view(config, None)
    }

    /// A server whose published status holds `view` (the members, for the allowlist).
    fn start_with_view(config: Config, view: Option<ClusterView>) -> Server {
        let runtime = tokio::runtime::Runtime::new().expect("runtime");
        let tls = config.restapi.tls.as_ref().map(|settings| {
            let (handle, _) = ServerTlsHandle::load(settings).expect("certificates load");
            Arc::new(handle)
        });
        let node = Node::new(pgwarden::runtime::node_settings(&config), Instant(0));
        let identity = pgwarden::runtime::identity(&config);
        let mut status = node.status();
        status.view = view.map(Arc::new);
        let (status_tx, status) = tokio::sync::watch::channel(Arc::new(status));
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("0.0.0.0:0"))
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let state = ApiState::new(identity, status, config);
        runtime.spawn(pgwarden::api::serve(listener, state, tls.clone()));
        // The status sender must live as long as the server.
        std::mem::forget(status_tx);
        Server { runtime, addr, tls }
    }

    /// A raw HTTP/1.1 request from `source` (a loopback address), its answer's status line
    /// and headers.
    fn from(&self, source: [u8; 4], request: &str) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let addr = self.addr;
        self.runtime.block_on(async move {
            let socket = tokio::net::TcpSocket::new_v4().expect("socket");
            socket
                .bind(std::net::SocketAddr::from((source, 0)))
                .expect("bind the source address");
            let mut stream = socket.connect(addr).await.expect("connect");
            assert_eq!(
                stream.local_addr().expect("local").ip().to_string(),
                format!("{}.{}.{}.{}", source[0], source[1], source[2], source[3]),
                "the request leaves from the source asked for"
            );
            stream.write_all(request.as_bytes()).await.expect("send");
            let mut answer = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer))
                .await;
            String::from_utf8_lossy(&answer).into_owned()
        })
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
        let error = refused.expect_err(what).to_lowercase();
        // TLS 1.3 ends the client's handshake before the server judges its certificate: the
        // refusal reaches the client as the server's alert, or, when its request crossed
        // the alert, as the connection closing under it.
        assert!(
            ["certificate", "alert", "reset", "broken pipe", "closed"]
                .iter()
                .any(|why| error.contains(why)),
            "{what}: refused, saying how: {error}"
        );
    }
}

#[test]
fn verify_client_optional_serves_reads_and_guards_every_unsafe_request() {
    let (_dir, pki) = pki();
    let mut config = config(&tls_vars(&pki, "optional")).expect("config");
    config.restapi.access.http_extra_headers = vec![("X-Frame-Options".into(), "DENY".into())];
    config.restapi.access.https_extra_headers =
        vec![("Strict-Transport-Security".into(), "max-age=60".into())];
    let server = Server::start(config);
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
    // Over TLS both kinds of extra headers go on every answer.
    assert_eq!(answer.header("x-frame-options"), Some("DENY"));
    assert_eq!(
        answer.header("strict-transport-security"),
        Some("max-age=60")
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
    let handle = server.tls.as_ref().expect("tls");
    handle.reload(&settings).expect("the renewed files load");
    assert_eq!(
        presented_certificate(server.addr, trusting.clone()).expect("handshake"),
        renewed
    );

    // A key that does not go with the certificate is refused, naming the setting; the
    // server keeps the certificate it has.
    std::fs::copy(&pki.client.key, &pki.server.key).expect("copy");
    let error = server
        .tls
        .as_ref()
        .expect("tls")
        .reload(&settings)
        .expect_err("mismatched key");
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

    // With a client certificate, `insecure` skips only the host name (Patroni's
    // assert_hostname = False): 127.0.0.2 is not in the certificate, the CA still counts.
    let other_name = |client: &ApiClientConfig| {
        let client = ApiClient::new(client, "ctl").expect("client");
        let url = format!("https://127.0.0.2:{}/patroni", server.addr.port());
        server
            .runtime
            .block_on(client.request("GET", &url, None, TIMEOUT))
            .map(|(status, _)| status)
            .map_err(|e| e.to_string())
    };
    let mut strict = client(&pki, Some(&pki.client), None);
    let error = other_name(&strict).expect_err("a name the certificate does not carry");
    assert!(
        error.to_lowercase().contains("name") || error.contains("NotValidFor"),
        "{error}"
    );
    strict.tls.insecure = true;
    assert_eq!(other_name(&strict), Ok(200));
    strict.tls.cacert = Some(pki.rogue_ca.clone());
    other_name(&strict).expect_err("insecure with a certificate still checks the CA");
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

fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or_default()
}

const RELOAD: &str = "POST /reload HTTP/1.1\r\nHost: x\r\nAuthorization: Basic b3BzOmFwaS1zZWNyZXQ=\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

#[test]
fn the_allowlist_admits_listed_sources_and_members_only() {
    let config = config(&[("PATRONI_RESTAPI_LISTEN", "0.0.0.0:8008".to_string())]).expect("config");
    let mut config = config;
    config.restapi.access = pgwarden::config::ApiAccess {
        allowlist: vec![pgwarden::config::AllowEntry::Network(
            "127.0.0.1/32".parse().expect("network"),
        )],
        allowlist_include_members: true,
        ..Default::default()
    };
    let view = member_at_127_0_0_3();
    let server = Server::start_with_view(config, Some(view));
    // Listed: the handler answers (503: no reloader in this server).
    let listed = server.from([127, 0, 0, 1], RELOAD);
    assert!(status_line(&listed).contains(" 503"), "{listed}");
    // A member's address: allowed too.
    let member = server.from([127, 0, 0, 3], RELOAD);
    assert!(status_line(&member).contains(" 503"), "{member}");
    // Anyone else: refused, before the credentials are looked at (a listed source with a
    // wrong password gets 401; an unlisted one 403 either way).
    let other = server.from([127, 0, 0, 2], RELOAD);
    assert!(status_line(&other).contains(" 403"), "{other}");
    assert!(other.contains("Access is denied"), "{other}");
    let wrong = RELOAD.replace("b3BzOmFwaS1zZWNyZXQ=", "b3BzOndyb25n");
    let listed_wrong = server.from([127, 0, 0, 1], &wrong);
    assert!(
        status_line(&listed_wrong).contains(" 401"),
        "{listed_wrong}"
    );
    let unlisted_wrong = server.from([127, 0, 0, 2], &wrong);
    assert!(
        status_line(&unlisted_wrong).contains(" 403"),
        "{unlisted_wrong}"
    );
    // Reads stay open to every source.
    let read = server.from(
        [127, 0, 0, 2],
        "GET /patroni HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(status_line(&read).contains(" 200"), "{read}");
    // POST /failsafe comes from the leader during an etcd outage: the members rule does not
    // apply to it (Patroni's rule), the static allowlist does.
    let failsafe = "POST /failsafe HTTP/1.1\r\nHost: x\r\nAuthorization: Basic b3BzOmFwaS1zZWNyZXQ=\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}";
    let from_member = server.from([127, 0, 0, 3], failsafe);
    assert!(status_line(&from_member).contains(" 403"), "{from_member}");

    // With only the members rule, POST /failsafe is open to any source (it is the one
    // request a leader sends while etcd, and so the member list, is out of reach), while
    // other unsafe requests still need a member's address.
    let mut members_only = config_with_auth();
    members_only.restapi.access.allowlist_include_members = true;
    let view = member_at_127_0_0_3();
    let server = Server::start_with_view(members_only, Some(view));
    let heartbeat = server.from([127, 0, 0, 2], failsafe);
    assert!(!status_line(&heartbeat).contains(" 403"), "{heartbeat}");
    let reload = server.from([127, 0, 0, 2], RELOAD);
    assert!(status_line(&reload).contains(" 403"), "{reload}");
    let reload = server.from([127, 0, 0, 3], RELOAD);
    assert!(!status_line(&reload).contains(" 403"), "{reload}");
}

/// A view whose only other member, pg2, has its API on 127.0.0.3.
fn member_at_127_0_0_3() -> ClusterView {
    member_at("127.0.0.3")
}

/// A view whose only other member, pg2, has its API on `ip`.
fn member_at(ip: &str) -> ClusterView {
    let mut view = ClusterView::default();
    view.members.insert(
        "pg2".into(),
        MemberInfo {
            name: "pg2".into(),
            api_url: format!("http://{ip}:8008/patroni"),
            ..MemberInfo::default()
        },
    );
    view
}

/// Sends `request` from inside `host`'s network namespace to `target`; the raw answer.
fn from_host(host: &support::netns::Host, target: std::net::SocketAddrV4, request: &str) -> String {
    const SEND: &str = r#"
import socket, sys
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=10)
s.sendall(sys.argv[3].encode())
answer = b""
while True:
    chunk = s.recv(65536)
    if not chunk:
        break
    answer += chunk
sys.stdout.write(answer.decode("latin-1"))
"#;
    let mut cmd = host.command(support::netns::PYTHON);
    cmd.args(["-c", SEND])
        .arg(target.ip().to_string())
        .arg(target.port().to_string())
        .arg(request);
    let out = support::process::run_capture(&mut cmd, Duration::from_secs(20));
    assert!(
        out.success(),
        "request from {} failed: {}",
        host.name(),
        out.stderr
    );
    out.stdout
}

/// The allowlist on real, distinct source addresses: three hosts, each in a network
/// namespace of its own on a bridge, call the API in the root namespace. One is listed, one
/// is a member's address, one is neither.
#[test]
fn the_allowlist_tells_hosts_in_network_namespaces_apart() {
    let mut net = support::netns::Topology::create("allowlist");
    let listed = net.add_host("listed");
    let member = net.add_host("member");
    let stranger = net.add_host("stranger");
    net.check_fabric();
    let mut config = config_with_auth();
    config.restapi.access = pgwarden::config::ApiAccess {
        allowlist: vec![pgwarden::config::AllowEntry::Network(
            format!("{}/32", listed.addr()).parse().expect("network"),
        )],
        allowlist_include_members: true,
        ..Default::default()
    };
    let server = Server::start_with_view(config, Some(member_at(&member.addr().to_string())));
    let api = std::net::SocketAddrV4::new(net.root_addr(), server.addr.port());
    // The listed host and the member reach the handler (503: no reloader in this server);
    // the stranger is refused before its (right) credentials are looked at.
    for (host, expected) in [(&listed, " 503"), (&member, " 503"), (&stranger, " 403")] {
        let answer = from_host(host, api, RELOAD);
        assert!(
            status_line(&answer).contains(expected),
            "POST /reload from {} ({}): {answer}",
            host.name(),
            host.addr()
        );
    }
    // Reads stay open to the stranger.
    let read = from_host(
        &stranger,
        api,
        "GET /patroni HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(status_line(&read).contains(" 200"), "{read}");
}

fn config_with_auth() -> Config {
    config(&[]).expect("config")
}

#[test]
fn extra_headers_protected_reads_and_bounded_bodies() {
    let mut config = config(&[]).expect("config");
    config.restapi.access.http_extra_headers = vec![("X-Frame-Options".into(), "DENY".into())];
    config.restapi.access.https_extra_headers =
        vec![("Strict-Transport-Security".into(), "max-age=60".into())];
    config.pgwarden.protect_reads = true;
    let server = Server::start_with_view(config, None);
    let get = |path: &str, auth: bool| {
        let auth = if auth {
            "Authorization: Basic b3BzOmFwaS1zZWNyZXQ=\r\n"
        } else {
            ""
        };
        server.from(
            [127, 0, 0, 1],
            &format!("GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"),
        )
    };
    // Details need the credentials; health checks do not; every answer has the header,
    // and the https-only one only over TLS.
    for path in ["/patroni", "/cluster", "/history", "/config", "/metrics"] {
        let refused = get(path, false);
        assert!(status_line(&refused).contains(" 401"), "{path}: {refused}");
        assert!(refused.contains("x-frame-options: DENY"), "{refused}");
        let allowed = get(path, true);
        assert!(!status_line(&allowed).contains(" 401"), "{path}: {allowed}");
    }
    for path in [
        "/primary",
        "/replica",
        "/health",
        "/liveness",
        "/readiness",
        "/",
        "//patroni",
        "/p%61troni",
    ] {
        let open = get(path, false);
        assert!(!status_line(&open).contains(" 401"), "{path}: {open}");
        assert!(open.contains("x-frame-options: DENY"), "{open}");
        assert!(
            !open.to_lowercase().contains("strict-transport-security"),
            "{open}"
        );
        // The status only: a health check's body is the member's status.
        assert!(
            !open.contains("\"patroni\""),
            "{path} shows the status: {open}"
        );
    }
    // The API's description holds nothing about the member: served whole.
    let described = get("/openapi.json", false);
    assert!(
        status_line(&described).contains(" 200") && described.contains("\"openapi\""),
        "{described}"
    );
    let with_credentials = get("/primary", true);
    assert!(
        with_credentials.contains("\"patroni\""),
        "{with_credentials}"
    );

    // A body over 1 MiB is refused before it is read; one that never comes in time too.
    let huge = server.from(
        [127, 0, 0, 1],
        "POST /reload HTTP/1.1\r\nHost: x\r\nAuthorization: Basic b3BzOmFwaS1zZWNyZXQ=\r\nContent-Length: 2000000\r\nConnection: close\r\n\r\n{",
    );
    assert!(status_line(&huge).contains(" 413"), "{huge}");
    let slow = server.from(
        [127, 0, 0, 1],
        "POST /reload HTTP/1.1\r\nHost: x\r\nAuthorization: Basic b3BzOmFwaS1zZWNyZXQ=\r\nContent-Length: 10\r\nConnection: close\r\n\r\n{",
    );
    assert!(status_line(&slow).contains(" 408"), "{slow}");
}
