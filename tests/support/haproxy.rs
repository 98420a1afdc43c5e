//! HAProxy in front of a test cluster, configured with the seed guide's `haproxy.cfg`
//! listen sections unchanged except for addresses and ports.

use std::path::PathBuf;
use std::process::{Child, Command};

use super::process::{free_port, kill_tree, make_test_dir, spawn_logged, tail_file};

/// A running HAProxy with a writes port (checks `/primary`) and a reads port (`/replica`).
pub struct Haproxy {
    child: Option<Child>,
    _dir: tempfile::TempDir,
    log: PathBuf,
    /// Port routing to the leader.
    pub primary_port: u16,
    /// Port balancing across healthy standbys.
    pub replica_port: u16,
}

/// One backend: name, address, PostgreSQL port, REST port.
pub type Server = (String, String, u16, u16);

/// The seed's configuration with our addresses and ports.
pub fn seed_config(primary_port: u16, replica_port: u16, servers: &[Server]) -> String {
    let lines = |servers: &[Server]| {
        servers
            .iter()
            .map(|(name, host, pg, api)| {
                format!("    server {name} {host}:{pg} maxconn 200 check port {api}\n")
            })
            .collect::<String>()
    };
    format!(
        "global\n    maxconn 2000\n\n\
         defaults\n    mode    tcp\n    retries 2\n    timeout client  30m\n    timeout server  30m\n    timeout connect 4s\n    timeout check   5s\n\n\
         # Writes: only the leader answers 200 on /primary\n\
         listen postgres_primary\n    bind 127.0.0.1:{primary_port}\n    option httpchk\n    http-check send meth OPTIONS uri /primary\n    http-check expect status 200\n    default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions\n{}\n\
         # Reads: every healthy standby answers 200 on /replica\n\
         listen postgres_replicas\n    bind 127.0.0.1:{replica_port}\n    option httpchk\n    http-check send meth OPTIONS uri /replica\n    http-check expect status 200\n    balance roundrobin\n    default-server inter 3s fall 3 rise 2 on-marked-down shutdown-sessions\n{}",
        lines(servers),
        lines(servers)
    )
}

impl Haproxy {
    /// Start HAProxy in the foreground (`-db`) with the seed's checks for `servers`.
    pub fn start(servers: &[Server]) -> Haproxy {
        let dir = make_test_dir("pgwarden-haproxy-");
        let primary_port = free_port();
        let replica_port = free_port();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, seed_config(primary_port, replica_port, servers))
            .expect("write haproxy.cfg");
        let log = dir.path().join("haproxy.log");
        let mut cmd = Command::new("haproxy");
        cmd.arg("-db").arg("-f").arg(&cfg);
        let child = spawn_logged(&mut cmd, &log, "haproxy");
        Haproxy {
            child: Some(child),
            _dir: dir,
            log,
            primary_port,
            replica_port,
        }
    }

    /// The end of HAProxy's log, for failure messages.
    pub fn log_tail(&self) -> String {
        tail_file(&self.log, 30)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            kill_tree(child.id() as i32);
        }
    }
}
