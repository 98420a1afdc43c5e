//! TCP reachability probes, from the root namespace (in process) and from inside a host
//! namespace (a short Python script run through `ip netns exec`: the test process cannot enter
//! a namespace itself without `setns`).
//!
//! A port nobody listens on is enough to prove a path works: the peer's kernel answers the SYN
//! with a RST ("refused"), while a dropped path times out.

use std::io::ErrorKind;
use std::net::{SocketAddr, SocketAddrV4, TcpStream};
use std::process::Command;
use std::time::Duration;

use super::super::process::run_capture;

/// Debian's interpreter (the pyenv shim on developer machines is not reachable by every user).
pub const PYTHON: &str = "/usr/bin/python3";

/// What a TCP connection attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Connected: something listens there.
    Open,
    /// The peer answered with a RST: the path works, nothing listens.
    Refused,
    /// No answer within the timeout: the path (or the peer) drops packets.
    Timeout,
    /// Anything else (unreachable network, permission, a failed probe).
    Other(String),
}

impl Reach {
    /// Whether packets got to the peer and back.
    pub fn reachable(&self) -> bool {
        matches!(self, Reach::Open | Reach::Refused)
    }

    fn from_word(word: &str) -> Reach {
        match word.trim() {
            "open" => Reach::Open,
            "refused" => Reach::Refused,
            "timeout" => Reach::Timeout,
            other => Reach::Other(other.to_string()),
        }
    }
}

/// Connects to `addr` from the root namespace (where the test process and HAProxy run).
pub fn from_root(addr: SocketAddrV4, timeout: Duration) -> Reach {
    match TcpStream::connect_timeout(&SocketAddr::V4(addr), timeout) {
        Ok(_) => Reach::Open,
        Err(e) if e.kind() == ErrorKind::ConnectionRefused => Reach::Refused,
        Err(e) if matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock) => Reach::Timeout,
        Err(e) => Reach::Other(e.to_string()),
    }
}

/// Prints one word per target (argv: timeout, then host:port...).
const PROBE_SCRIPT: &str = r#"
import socket, sys
timeout = float(sys.argv[1])
for target in sys.argv[2:]:
    host, port = target.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
        print("open")
    except ConnectionRefusedError:
        print("refused")
    except TimeoutError:
        print("timeout")
    except OSError as e:
        print("error:" + str(e).replace(" ", "_"))
"#;

/// Connects from inside namespace `netns` to each target in turn.
pub fn from_netns(netns: &str, targets: &[SocketAddrV4], timeout: Duration) -> Vec<Reach> {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, PYTHON, "-c", PROBE_SCRIPT])
        .arg(timeout.as_secs_f64().to_string())
        .args(targets.iter().map(SocketAddrV4::to_string));
    let limit = timeout * (targets.len() as u32 + 1) + Duration::from_secs(10);
    let out = run_capture(&mut cmd, limit);
    let words: Vec<&str> = out.stdout.lines().collect();
    if !out.success() || words.len() != targets.len() {
        let why = format!(
            "probe from {netns} failed ({:?}): {}",
            out.status,
            out.stderr.trim()
        );
        return targets.iter().map(|_| Reach::Other(why.clone())).collect();
    }
    words.into_iter().map(Reach::from_word).collect()
}
