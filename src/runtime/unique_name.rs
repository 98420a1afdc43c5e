//! Patroni's guard against a naming mistake: an agent refuses to start while a member of
//! its name is already running somewhere. Two agents of one name would share one member key
//! and one leader lock, each taking the other's lease as its own.
//!
//! Patroni takes any answer on the member key's API address as proof; here the answer to
//! `GET /patroni` must name the same member of the same scope, so a stale key whose address
//! now belongs to something else does not keep a legitimate restart out until it expires.

use std::time::Duration;

use crate::dcs::StoreSlot;

use super::http::ApiClient;

/// How long the running member has to answer, as Patroni gives it.
const STATUS_TIMEOUT: Duration = Duration::from_secs(3);

/// How long etcd has to connect, then to answer the read: unreachable, the check is
/// skipped with a warning rather than hold up the start (at most 2 s in all).
pub const ETCD_WAIT: Duration = Duration::from_secs(1);

/// What the check found.
#[derive(Debug, PartialEq, Eq)]
pub enum Uniqueness {
    /// No member key of this name, or one whose API does not answer (our own, left by an
    /// earlier run of this node).
    Unique,
    /// A member of this name answers at `url`.
    Taken {
        /// The running member's status URL.
        url: String,
    },
    /// etcd did not answer within the wait: the check could not be made.
    Unknown {
        /// Why.
        why: String,
    },
}

/// `scheme://host:port/patroni` of a member's `api_url` (`https://10.0.1.11:8008/patroni`).
pub fn status_url(api_url: &str) -> Option<String> {
    let (scheme, rest) = api_url.split_once("://")?;
    let authority = rest.split('/').next().filter(|a| !a.is_empty())?;
    Some(format!("{scheme}://{authority}/patroni"))
}

/// Whether a `/patroni` answer is that of member `name` of `scope` (Patroni's and
/// pgwarden's answers both carry `patroni.name` and `patroni.scope`).
pub fn names_member(status: &serde_json::Value, name: &str, scope: &str) -> bool {
    let patroni = &status["patroni"];
    patroni["name"].as_str() == Some(name) && patroni["scope"].as_str().is_none_or(|s| s == scope)
}

/// Looks for a running member named `name` of `scope`: waits up to `wait` for etcd, then
/// asks the member key's API.
pub async fn check(
    store: &StoreSlot,
    client: &ApiClient,
    name: &str,
    scope: &str,
    wait: Duration,
) -> Uniqueness {
    let mut changes = store.changes();
    let connected = tokio::time::timeout(wait, changes.wait_for(Option::is_some)).await;
    let store = match connected {
        Ok(Ok(store)) => match store.clone() {
            Some(store) => store,
            None => return unknown("etcd not connected"),
        },
        Ok(Err(_)) => return unknown("etcd link stopped"),
        Err(_) => return unknown(&format!("etcd not reached within {wait:?}")),
    };
    let view = match tokio::time::timeout(wait, store.load()).await {
        Ok(Ok(view)) => view,
        Ok(Err(e)) => return unknown(&e.to_string()),
        Err(_) => return unknown(&format!("etcd did not answer within {wait:?}")),
    };
    let Some(member) = view.members.get(name) else {
        return Uniqueness::Unique;
    };
    let Some(url) = status_url(&member.api_url) else {
        return Uniqueness::Unique;
    };
    match client.get_json(&url, STATUS_TIMEOUT).await {
        Ok(status) if names_member(&status, name, scope) => Uniqueness::Taken { url },
        Ok(_) => {
            tracing::debug!(%url, "the member key's address answers for another member");
            Uniqueness::Unique
        }
        Err(e) => {
            tracing::debug!(%url, error = %e, "no running member of this name answers");
            Uniqueness::Unique
        }
    }
}

fn unknown(why: &str) -> Uniqueness {
    Uniqueness::Unknown {
        why: why.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_asked_at_the_api_urls_authority() {
        assert_eq!(
            status_url("https://10.0.1.11:8008/patroni").as_deref(),
            Some("https://10.0.1.11:8008/patroni")
        );
        assert_eq!(
            status_url("http://[::1]:8008").as_deref(),
            Some("http://[::1]:8008/patroni")
        );
        assert_eq!(status_url("10.0.1.11:8008"), None);
        assert_eq!(status_url("http:///patroni"), None);
    }

    #[test]
    fn only_an_answer_naming_the_same_member_takes_the_name() {
        let answer = |name: &str, scope: &str| serde_json::json!({"state": "running", "patroni": {"name": name, "scope": scope}});
        assert!(names_member(&answer("node1", "demo"), "node1", "demo"));
        assert!(!names_member(&answer("node2", "demo"), "node1", "demo"));
        assert!(!names_member(&answer("node1", "other"), "node1", "demo"));
        assert!(!names_member(
            &serde_json::json!({"ok": true}),
            "node1",
            "demo"
        ));
    }
}
