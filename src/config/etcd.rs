//! The `etcd3:` section, resolved the way Patroni's etcd client does: `url` wins over
//! `hosts`, which wins over `host`; bare hosts get port 2379 (or the section's `port`).
//! Other DCS sections (`etcd:` for the v2 API, consul, zookeeper, ...) are refused by the
//! caller, because pgwarden speaks only the etcd v3 API.

use serde_json::Value;

use super::address::HostPort;
use super::error::ConfigError;
use super::model::EtcdConfig;
use super::tree::{self, Section};

const DEFAULT_PORT: u16 = 2379;

const UNSUPPORTED: &[&str] = &["proxy", "srv", "srv_suffix", "use_proxies", "verify"];

/// Builds [`EtcdConfig`] from the `etcd3:` section.
pub(crate) fn parse(
    mut s: Section<'_>,
    warnings: &mut Vec<String>,
) -> Result<EtcdConfig, ConfigError> {
    let mut protocol = match s.get("protocol") {
        Some(v) => parse_protocol(&s.key_path("protocol"), v)?,
        None => "http".to_string(),
    };
    let default_port = match s.get("port") {
        Some(v) => {
            let p = tree::whole(&s.key_path("port"), v, "a port number")?;
            match u16::try_from(p) {
                Ok(p) if p > 0 => p,
                _ => {
                    return Err(ConfigError::new(
                        s.key_path("port"),
                        format!("{p} is not a port number from 1 to 65535"),
                    ))
                }
            }
        }
        None => DEFAULT_PORT,
    };
    let mut username = match s.get("username") {
        Some(v) => Some(tree::string(&s.key_path("username"), v)?),
        None => None,
    };
    let mut password = match s.get("password") {
        Some(v) => Some(tree::secret(&s.key_path("password"), v)?),
        None => None,
    };

    let url = s.get("url");
    let hosts_v = s.get("hosts");
    let host_v = s.get("host");
    let hosts = if let Some(u) = url {
        for (present, key) in [(hosts_v.is_some(), "hosts"), (host_v.is_some(), "host")] {
            if present {
                warnings.push(format!(
                    "key `{}` ignored because `{}` is set",
                    s.key_path(key),
                    s.key_path("url")
                ));
            }
        }
        let path = s.key_path("url");
        let text = tree::string(&path, u)?;
        let parsed = parse_url(&text).map_err(|m| ConfigError::new(&path, m))?;
        protocol = parsed.scheme;
        if parsed.username.is_some() {
            username = parsed.username;
            password = parsed.password;
        }
        vec![parsed.endpoint]
    } else if let Some(h) = hosts_v {
        if host_v.is_some() {
            warnings.push(format!(
                "key `{}` ignored because `{}` is set",
                s.key_path("host"),
                s.key_path("hosts")
            ));
        }
        parse_hosts(&s.key_path("hosts"), h, default_port)?
    } else if let Some(h) = host_v {
        let path = s.key_path("host");
        let text = tree::string(&path, h)?;
        vec![HostPort::parse_with_default_port(&text, default_port)
            .map_err(|e| ConfigError::new(&path, e.message))?]
    } else {
        let hint = if s.has("srv") || s.has("proxy") {
            " (srv and proxy discovery are not yet supported by pgwarden)"
        } else {
            ""
        };
        return Err(ConfigError::new(
            "etcd3",
            format!("no etcd endpoints: set `hosts`, `host` or `url`{hint}"),
        ));
    };

    let tls = super::tls::parse_etcd(&mut s)?;
    if protocol != "https" {
        let set = [
            ("cacert", tls.cacert.is_some()),
            ("cert", tls.cert.is_some()),
            ("key", tls.key.is_some()),
            ("key_password", tls.key_password.is_some()),
        ];
        for (key, _) in set.iter().filter(|(_, present)| *present) {
            warnings.push(format!(
                "key `{}` has no effect: etcd is reached over plain HTTP (set `{}: https` or \
                 use https:// endpoints)",
                s.key_path(key),
                s.key_path("protocol")
            ));
        }
    }
    s.unsupported(UNSUPPORTED);
    s.finish(warnings);
    Ok(EtcdConfig {
        hosts,
        protocol,
        username,
        password,
        tls,
    })
}

fn parse_protocol(path: &str, v: &Value) -> Result<String, ConfigError> {
    let p = tree::string(path, v)?.trim().to_ascii_lowercase();
    if p == "http" || p == "https" {
        Ok(p)
    } else {
        Err(ConfigError::new(
            path,
            format!(
                "{} is not a protocol (expected http or https)",
                tree::render(v)
            ),
        ))
    }
}

fn parse_hosts(path: &str, v: &Value, default_port: u16) -> Result<Vec<HostPort>, ConfigError> {
    let items = tree::string_list(path, v, true)?;
    if items.is_empty() {
        return Err(ConfigError::new(
            path,
            "is empty (expected at least one host:port)",
        ));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, h)| {
            HostPort::parse_with_default_port(h, default_port)
                .map_err(|e| ConfigError::new(format!("{path}[{i}]"), e.message))
        })
        .collect()
}

struct EtcdUrl {
    scheme: String,
    endpoint: HostPort,
    username: Option<String>,
    password: Option<String>,
}

/// Parses `scheme://[user[:password]@]host[:port][/path]`.
fn parse_url(text: &str) -> Result<EtcdUrl, String> {
    let Some((scheme, rest)) = text.trim().split_once("://") else {
        return Err(format!("{text:?} is not a URL (expected http://host:port)"));
    };
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Err(format!(
            "{text:?} has scheme {scheme:?} (expected http or https)"
        ));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((n, p)) => (Some(n.to_string()), Some(p.to_string())),
            None => (Some(u.to_string()), None),
        },
        None => (None, None),
    };
    let endpoint = HostPort::parse_with_default_port(hostport, DEFAULT_PORT)
        .map_err(|e| format!("{text:?}: {}", e.message))?;
    Ok(EtcdUrl {
        scheme,
        endpoint,
        username,
        password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn etcd(v: Value) -> Result<(EtcdConfig, Vec<String>), ConfigError> {
        let s = Section::new("etcd3", &v)?;
        let mut w = Vec::new();
        let c = parse(s, &mut w)?;
        Ok((c, w))
    }

    fn hp(h: &str, p: u16) -> HostPort {
        HostPort {
            host: h.to_string(),
            port: p,
        }
    }

    #[test]
    fn hosts_list_and_comma_string() {
        let (c, w) = etcd(json!({"hosts": ["a:1", "b"]})).expect("list");
        assert_eq!(c.hosts, vec![hp("a", 1), hp("b", 2379)]);
        assert_eq!(c.protocol, "http");
        assert!(w.is_empty());
        let (c, _) = etcd(json!({"hosts": "a:1, b:2,c"})).expect("comma string");
        assert_eq!(c.hosts, vec![hp("a", 1), hp("b", 2), hp("c", 2379)]);
    }

    #[test]
    fn section_port_is_the_default_port() {
        let (c, _) = etcd(json!({"hosts": ["a", "b:5"], "port": 12379})).expect("port");
        assert_eq!(c.hosts, vec![hp("a", 12379), hp("b", 5)]);
        let (c, _) = etcd(json!({"host": "a", "port": 12379})).expect("host");
        assert_eq!(c.hosts, vec![hp("a", 12379)]);
    }

    #[test]
    fn url_wins_and_carries_scheme_and_credentials() {
        let (c, w) = etcd(json!({"url": "https://u:p@e1:2389/", "hosts": ["x"]})).expect("url");
        assert_eq!(c.hosts, vec![hp("e1", 2389)]);
        assert_eq!(c.protocol, "https");
        assert_eq!(c.username.as_deref(), Some("u"));
        assert_eq!(c.password.as_deref(), Some("p"));
        assert!(w[0].contains("`etcd3.hosts` ignored"), "{w:?}");
        let (c, _) = etcd(json!({"url": "http://e1"})).expect("default port");
        assert_eq!(c.hosts, vec![hp("e1", 2379)]);
    }

    #[test]
    fn errors_name_the_entry() {
        let e = etcd(json!({"hosts": ["a:1", "b:x"]})).expect_err("bad port");
        assert_eq!(e.path, "etcd3.hosts[1]");
        let e = etcd(json!({"hosts": []})).expect_err("empty");
        assert_eq!(e.path, "etcd3.hosts");
        let e = etcd(json!({"protocol": "grpc", "host": "a"})).expect_err("protocol");
        assert_eq!(e.path, "etcd3.protocol");
        let e = etcd(json!({"url": "e1:2379"})).expect_err("not a url");
        assert_eq!(e.path, "etcd3.url");
        let e = etcd(json!({"srv": "example.com"})).expect_err("no endpoints");
        assert_eq!(e.path, "etcd3");
        assert!(e.message.contains("srv"), "{}", e.message);
    }

    #[test]
    fn tls_keys_configure_https_and_are_named_when_useless() {
        let (c, w) = etcd(json!({"hosts": "a", "protocol": "https", "cacert": "/ca.pem", "cert": "/c.pem", "key": "/k.pem"}))
            .expect("ok");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            c.tls.cacert.as_deref(),
            Some(std::path::Path::new("/ca.pem"))
        );
        assert_eq!(c.tls.key.as_deref(), Some(std::path::Path::new("/k.pem")));
        let (_, w) = etcd(json!({"hosts": "a", "cacert": "/ca.pem"})).expect("ok");
        assert!(w[0].contains("plain HTTP"), "{w:?}");
        let e = etcd(json!({"url": "https://a", "key": "/k.pem"})).expect_err("key alone");
        assert_eq!(e.path, "etcd3.key");
    }
}
