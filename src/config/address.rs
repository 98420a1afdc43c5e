//! Network addresses as Patroni writes them: `host:port` ([`HostPort`]) and PostgreSQL's
//! `host[,host...]:port` listen form ([`ListenAddress`]).
//!
//! Parsing follows Patroni's `split_host_port`: the last `:` separates the port, and IPv6
//! literals may be bracketed (`[::1]:5432`) or, as Patroni allows, bare (`::1:5432`).

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// An address string that could not be parsed; the message quotes it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct AddressError {
    /// What was wrong, quoting the input.
    pub message: String,
}

fn bad(message: String) -> AddressError {
    AddressError { message }
}

/// A host (name, IPv4 or IPv6 literal without brackets) and a port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    /// Host name or IP literal; IPv6 is stored without brackets.
    pub host: String,
    /// TCP port, never 0.
    pub port: u16,
}

impl HostPort {
    /// Parses `host:port`, or a bare `host` that then gets `default_port` (etcd's 2379).
    pub fn parse_with_default_port(s: &str, default_port: u16) -> Result<Self, AddressError> {
        parse_host_port(s, Some(default_port))
    }

    /// Whether the host is a bind-everything wildcard (`0.0.0.0`, `::`, `*`), an address
    /// other machines cannot connect to.
    pub fn is_wildcard(&self) -> bool {
        is_wildcard_host(&self.host)
    }
}

impl FromStr for HostPort {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_host_port(s, None)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

pub(crate) fn is_wildcard_host(host: &str) -> bool {
    matches!(host, "0.0.0.0" | "*" | "")
        || host.parse::<Ipv6Addr>().is_ok_and(|a| a.is_unspecified())
}

fn parse_port(input: &str, port: &str) -> Result<u16, AddressError> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(bad(format!(
            "{input:?} has an invalid port {port:?} (expected a number from 1 to 65535)"
        ))),
    }
}

fn check_host(input: &str, host: &str) -> Result<(), AddressError> {
    if host.is_empty() {
        return Err(bad(format!("{input:?} has no host (expected host:port)")));
    }
    if host
        .chars()
        .any(|c| c.is_whitespace() || c == '/' || c == ',')
    {
        return Err(bad(format!(
            "{input:?} has an invalid host {host:?} (expected host:port)"
        )));
    }
    if host.contains(':') && host.parse::<Ipv6Addr>().is_err() {
        return Err(bad(format!(
            "{input:?}: {host:?} is neither a host name nor an IPv6 address (write IPv6 as [addr]:port)"
        )));
    }
    Ok(())
}

fn parse_host_port(input: &str, default_port: Option<u16>) -> Result<HostPort, AddressError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(bad("address is empty (expected host:port)".to_string()));
    }
    if s.contains("://") {
        return Err(bad(format!(
            "{input:?} is a URL; expected host:port without a scheme"
        )));
    }
    let no_port = || match default_port {
        Some(p) => Ok(p),
        None => Err(bad(format!("{input:?} has no port (expected host:port)"))),
    };
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let Some((host, after)) = rest.split_once(']') else {
            return Err(bad(format!("{input:?} has an unclosed '['")));
        };
        if host.parse::<Ipv6Addr>().is_err() {
            return Err(bad(format!(
                "{input:?}: {host:?} in brackets is not an IPv6 address"
            )));
        }
        let port = match after.strip_prefix(':') {
            Some(p) => parse_port(input, p)?,
            None if after.is_empty() => no_port()?,
            None => return Err(bad(format!("{input:?} has junk after ']'"))),
        };
        (host, port)
    } else {
        match s.rsplit_once(':') {
            None => (s, no_port()?),
            Some((h, p)) => {
                check_host(input, h)?;
                (h, parse_port(input, p)?)
            }
        }
    };
    check_host(input, host)?;
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

/// PostgreSQL's listen address: one or more hosts (`*` allowed) and one port, written
/// `0.0.0.0:5432` or `127.0.0.1,::1:5432` in Patroni's `postgresql.listen`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// Hosts for `listen_addresses`, IPv6 without brackets.
    pub hosts: Vec<String>,
    /// The port PostgreSQL listens on.
    pub port: u16,
}

impl ListenAddress {
    /// The value of PostgreSQL's `listen_addresses` setting.
    pub fn listen_addresses(&self) -> String {
        self.hosts.join(",")
    }

    /// A host a local client can connect to: the first non-wildcard host, or loopback
    /// when PostgreSQL listens on every interface.
    pub fn local_host(&self) -> String {
        self.hosts
            .iter()
            .find(|h| !is_wildcard_host(h))
            .cloned()
            .unwrap_or_else(|| "127.0.0.1".to_string())
    }
}

impl FromStr for ListenAddress {
    type Err = AddressError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let s = input.trim();
        let Some((hosts_part, port)) = s.rsplit_once(':') else {
            return Err(bad(format!("{input:?} has no port (expected host:port)")));
        };
        // "[::1]" alone would split inside the brackets; it has no port.
        if s.ends_with(']') {
            return Err(bad(format!("{input:?} has no port (expected host:port)")));
        }
        let port = parse_port(input, port)?;
        let mut hosts = Vec::new();
        for raw in hosts_part.split(',') {
            let h = raw.trim();
            let h = h
                .strip_prefix('[')
                .and_then(|x| x.strip_suffix(']'))
                .unwrap_or(h);
            if h != "*" {
                check_host(input, h)?;
            }
            hosts.push(h.to_string());
        }
        Ok(ListenAddress { hosts, port })
    }
}

impl fmt::Display for ListenAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.hosts.join(","), self.port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hp(s: &str) -> Result<HostPort, AddressError> {
        s.parse()
    }

    #[test]
    fn host_port_forms() {
        assert_eq!(
            hp("10.0.1.11:8008").expect("v4"),
            HostPort {
                host: "10.0.1.11".into(),
                port: 8008
            }
        );
        assert_eq!(hp("[::1]:5432").expect("v6").host, "::1");
        assert_eq!(hp("::1:5432").expect("bare v6 like Patroni").host, "::1");
        assert_eq!(hp("db-1.example:5432").expect("name").port, 5432);
    }

    #[test]
    fn host_port_errors_quote_the_value() {
        assert_eq!(
            hp("0.0.0.0").expect_err("no port").message,
            "\"0.0.0.0\" has no port (expected host:port)"
        );
        assert!(hp("h:0")
            .expect_err("port 0")
            .message
            .contains("invalid port"));
        assert!(hp("h:70000")
            .expect_err("too big")
            .message
            .contains("\"70000\""));
        assert!(hp("h:abc").is_err());
        assert!(hp(":5432")
            .expect_err("no host")
            .message
            .contains("no host"));
        assert!(hp("http://h:2379")
            .expect_err("url")
            .message
            .contains("URL"));
        assert!(hp("fe80::1").is_err());
        assert!(hp("[::1]")
            .expect_err("bracket no port")
            .message
            .contains("no port"));
        assert!(hp("").is_err());
    }

    #[test]
    fn default_port_applies_only_when_missing() {
        let a = HostPort::parse_with_default_port("10.0.1.11", 2379).expect("bare");
        assert_eq!(a.port, 2379);
        let b = HostPort::parse_with_default_port("10.0.1.11:12379", 2379).expect("explicit");
        assert_eq!(b.port, 12379);
        let c = HostPort::parse_with_default_port("[::1]", 2379).expect("v6 bare");
        assert_eq!((c.host.as_str(), c.port), ("::1", 2379));
    }

    #[test]
    fn display_brackets_ipv6() {
        assert_eq!(hp("[::1]:5432").expect("v6").to_string(), "[::1]:5432");
        assert_eq!(hp("a:1").expect("v4").to_string(), "a:1");
    }

    #[test]
    fn wildcards() {
        assert!(hp("0.0.0.0:1").expect("a").is_wildcard());
        assert!(hp("[::]:1").expect("a").is_wildcard());
        assert!(!hp("127.0.0.1:1").expect("a").is_wildcard());
    }

    #[test]
    fn listen_forms() {
        let l: ListenAddress = "0.0.0.0:5432".parse().expect("one");
        assert_eq!(l.hosts, vec!["0.0.0.0"]);
        assert_eq!(l.port, 5432);
        let l: ListenAddress = "127.0.0.1,::1:5433".parse().expect("list");
        assert_eq!(l.hosts, vec!["127.0.0.1", "::1"]);
        assert_eq!(l.port, 5433);
        assert_eq!(l.listen_addresses(), "127.0.0.1,::1");
        let l: ListenAddress = "*:5432".parse().expect("star");
        assert_eq!(l.hosts, vec!["*"]);
        assert_eq!(l.local_host(), "127.0.0.1");
        let l: ListenAddress = "[::1]:5432".parse().expect("bracketed");
        assert_eq!(l.hosts, vec!["::1"]);
        assert_eq!(l.to_string(), "::1:5432");
    }

    #[test]
    fn listen_errors() {
        assert_eq!(
            "0.0.0.0"
                .parse::<ListenAddress>()
                .expect_err("no port")
                .message,
            "\"0.0.0.0\" has no port (expected host:port)"
        );
        assert!("[::1]".parse::<ListenAddress>().is_err());
        assert!("a,,b:5432".parse::<ListenAddress>().is_err());
        assert!("a:99999".parse::<ListenAddress>().is_err());
    }
}
