//! A failsafe round over the network: `POST /failsafe` to every member the core named, in
//! parallel, each with Patroni's 2 s timeout and one retry, and the verdicts collected into
//! one `FailsafeConfirmed`. Decides nothing: only a 200 counts as accepted, and the core
//! judges the round.

use std::time::Duration;

use serde_json::json;

use super::clock;
use super::http::ApiClient;
use super::member::Identity;
use crate::core::{Input, Instant};

/// Patroni's timeout for one `POST /failsafe`.
const POST_TIMEOUT: Duration = Duration::from_secs(2);
/// Attempts per member (Patroni: one retry).
const ATTEMPTS: usize = 2;

/// The `/failsafe` URL of a member from its `api_url` (`http://host:port/patroni`).
pub fn failsafe_url(api_url: &str) -> String {
    let base = match api_url.find("://") {
        Some(scheme_end) => match api_url[scheme_end + 3..].find('/') {
            Some(path) => &api_url[..scheme_end + 3 + path],
            None => api_url,
        },
        None => api_url,
    };
    format!("{}/failsafe", base.trim_end_matches('/'))
}

/// The body Patroni's leader sends: who it is and where to reach it (`slots`: pgwarden keeps
/// no permanent slots to advance, so it is empty).
pub fn heartbeat_body(identity: &Identity) -> String {
    json!({
        "name": identity.name,
        "conn_url": identity.conn_url,
        "api_url": identity.api_url,
        "slots": {},
    })
    .to_string()
}

/// POST to every member; the result as the core's input. `sent_at` is read before the first
/// request leaves, so the core's deadline never counts from later than a member's accept.
pub async fn run_round(
    identity: &Identity,
    client: &ApiClient,
    members: Vec<(String, String)>,
) -> Input {
    let sent_at: Instant = clock::now();
    let body = heartbeat_body(identity);
    let posts = members.into_iter().map(|(name, api_url)| {
        let body = body.clone();
        let client = client.clone();
        async move {
            let url = failsafe_url(&api_url);
            let mut last = String::new();
            for _ in 0..ATTEMPTS {
                match client
                    .request("POST", &url, Some(body.clone()), POST_TIMEOUT)
                    .await
                {
                    Ok((200, _)) => return None,
                    // An answer is the member's verdict: asking again would not change it.
                    Ok((code, text)) => {
                        let text = String::from_utf8_lossy(&text);
                        return Some(format!("{name}: {code} {}", text.trim()));
                    }
                    Err(e) => last = format!("{name}: {e}"),
                }
            }
            Some(last)
        }
    });
    let handles: Vec<_> = posts.map(tokio::spawn).collect();
    let mut refusals = Vec::new();
    for handle in handles {
        match handle.await {
            Ok(None) => {}
            Ok(Some(refusal)) => refusals.push(refusal),
            Err(e) => refusals.push(format!("failsafe request task failed: {e}")),
        }
    }
    if !refusals.is_empty() {
        tracing::warn!(?refusals, "failsafe round not confirmed by every member");
    }
    Input::FailsafeConfirmed { sent_at, refusals }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_failsafe_url_replaces_the_path_of_api_url() {
        assert_eq!(
            failsafe_url("http://127.0.0.1:8008/patroni"),
            "http://127.0.0.1:8008/failsafe"
        );
        assert_eq!(
            failsafe_url("http://10.0.0.1:8008"),
            "http://10.0.0.1:8008/failsafe"
        );
        assert_eq!(failsafe_url("https://h:1/a/b"), "https://h:1/failsafe");
    }

    #[test]
    fn the_body_names_the_leader_and_its_addresses() {
        let id = Identity {
            scope: "c".into(),
            name: "pg1".into(),
            conn_url: "postgres://127.0.0.1:5432/postgres".into(),
            api_url: "http://127.0.0.1:8008/patroni".into(),
        };
        let body: serde_json::Value = serde_json::from_str(&heartbeat_body(&id)).expect("json");
        assert_eq!(body["name"], "pg1");
        assert_eq!(body["api_url"], "http://127.0.0.1:8008/patroni");
        assert!(body["slots"].is_object());
    }
}
