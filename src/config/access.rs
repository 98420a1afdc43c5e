//! Who may call the REST API and what every answer carries: `restapi.allowlist`,
//! `allowlist_include_members`, `http_extra_headers`, `https_extra_headers`, and pgwarden's
//! `pgwarden.protect_reads`. Only shapes are checked here; host names in the allowlist are
//! resolved by the runtime (`api::access`), which does the IO.

use std::net::IpAddr;

use serde_json::Value;

use super::error::ConfigError;
use super::tree::{self, Section};

/// One `restapi.allowlist` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowEntry {
    /// An address or a network (`10.0.0.5`, `10.0.0.0/24`, `fd00::/8`).
    Network(ipnet::IpNet),
    /// A host name, resolved when the rules are built.
    Host(String),
}

/// The REST API's access rules and extra headers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApiAccess {
    /// Sources allowed to call unsafe endpoints; empty: any source (unless
    /// `allowlist_include_members`).
    pub allowlist: Vec<AllowEntry>,
    /// The cluster's members (the hosts of their `api_url`) are allowed too.
    pub allowlist_include_members: bool,
    /// Headers added to every answer.
    pub http_extra_headers: Vec<(String, String)>,
    /// Headers added to every answer over TLS.
    pub https_extra_headers: Vec<(String, String)>,
}

impl ApiAccess {
    /// Whether the sources of unsafe requests are restricted.
    pub fn restricts_sources(&self) -> bool {
        !self.allowlist.is_empty() || self.allowlist_include_members
    }
}

/// The access keys of `restapi:`.
pub(crate) fn parse(s: &mut Section<'_>) -> Result<ApiAccess, ConfigError> {
    let allowlist = match s.get("allowlist") {
        Some(v) => {
            let path = s.key_path("allowlist");
            tree::string_list(&path, v, false)?
                .iter()
                .enumerate()
                .map(|(i, entry)| allow_entry(&format!("{path}[{i}]"), entry))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => Vec::new(),
    };
    let allowlist_include_members = match s.get("allowlist_include_members") {
        Some(v) => tree::boolean(&s.key_path("allowlist_include_members"), v)?,
        None => false,
    };
    let http_extra_headers = headers(s, "http_extra_headers")?;
    let https_extra_headers = headers(s, "https_extra_headers")?;
    Ok(ApiAccess {
        allowlist,
        allowlist_include_members,
        http_extra_headers,
        https_extra_headers,
    })
}

fn allow_entry(path: &str, text: &str) -> Result<AllowEntry, ConfigError> {
    let text = text.trim();
    if text.contains('/') {
        return text
            .parse::<ipnet::IpNet>()
            .map(|net| AllowEntry::Network(net.trunc()))
            .map_err(|_| {
                ConfigError::new(
                    path,
                    format!("{text:?} is not a network (expected an address/prefix such as 10.0.0.0/24)"),
                )
            });
    }
    if let Ok(ip) = text
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    {
        return Ok(AllowEntry::Network(ipnet::IpNet::from(ip)));
    }
    let host_like = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
    if host_like {
        Ok(AllowEntry::Host(text.to_string()))
    } else {
        Err(ConfigError::new(
            path,
            format!("{text:?} is not an address, a network or a host name"),
        ))
    }
}

/// A mapping of header names to values; names and values must be valid in HTTP.
fn headers(s: &mut Section<'_>, key: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let path = s.key_path(key);
    let Some(v) = s.get(key) else {
        return Ok(Vec::new());
    };
    let Value::Object(map) = v else {
        return Err(ConfigError::new(
            path,
            format!(
                "expected a mapping of header names to values, found {}",
                tree::render(v)
            ),
        ));
    };
    map.iter()
        .map(|(name, value)| {
            let at = format!("{path}.{name}");
            let value = tree::string(&at, value)?;
            if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(ConfigError::new(&at, "not a valid HTTP header name"));
            }
            if axum::http::HeaderValue::from_str(&value).is_err() {
                return Err(ConfigError::new(&at, "not a valid HTTP header value"));
            }
            Ok((name.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn access(v: Value) -> Result<ApiAccess, ConfigError> {
        let mut s = Section::new("restapi", &v)?;
        parse(&mut s)
    }

    #[test]
    fn allowlist_entries_are_networks_addresses_or_host_names() {
        let a = access(
            json!({"allowlist": ["10.0.0.0/24", "10.1.2.3", "db-1.example", "::1", "10.9.9.9/8"]}),
        )
        .expect("parses");
        let nets: Vec<String> = a
            .allowlist
            .iter()
            .map(|e| match e {
                AllowEntry::Network(n) => n.to_string(),
                AllowEntry::Host(h) => format!("host {h}"),
            })
            .collect();
        assert_eq!(
            nets,
            [
                "10.0.0.0/24",
                "10.1.2.3/32",
                "host db-1.example",
                "::1/128",
                "10.0.0.0/8"
            ]
        );
        assert!(a.restricts_sources());
        let e = access(json!({"allowlist": ["10.0.0.0/33"]})).expect_err("prefix");
        assert_eq!(e.path, "restapi.allowlist[0]");
        let e = access(json!({"allowlist": "10.0.0.1"})).expect_err("a list");
        assert_eq!(e.path, "restapi.allowlist");
        assert!(!access(json!({})).expect("empty").restricts_sources());
    }

    #[test]
    fn extra_headers_must_be_valid_http() {
        let a = access(json!({"http_extra_headers": {"X-Frame-Options": "SAMEORIGIN"},
                              "https_extra_headers": {"Strict-Transport-Security": "max-age=31536000"}}))
            .expect("parses");
        assert_eq!(
            a.http_extra_headers,
            [("X-Frame-Options".to_string(), "SAMEORIGIN".to_string())]
        );
        assert_eq!(a.https_extra_headers.len(), 1);
        let e = access(json!({"http_extra_headers": {"Bad Name": "x"}})).expect_err("name");
        assert_eq!(e.path, "restapi.http_extra_headers.Bad Name");
        let e = access(json!({"http_extra_headers": ["X: y"]})).expect_err("mapping");
        assert_eq!(e.path, "restapi.http_extra_headers");
    }
}
