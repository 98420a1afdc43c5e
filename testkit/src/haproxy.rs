//! HAProxy in front of a test cluster, configured with the seed guide's `haproxy.cfg`
//! listen sections unchanged except for addresses and ports (the stats page included, which
//! the tests read as CSV to know which servers HAProxy routes to).

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
    /// The seed's stats page.
    pub stats_port: u16,
}

/// One backend: name, address, PostgreSQL port, REST port.
pub type Server = (String, String, u16, u16);

/// The seed's configuration with our addresses and ports.
pub fn seed_config(
    primary_port: u16,
    replica_port: u16,
    stats_port: u16,
    servers: &[Server],
    check_options: &str,
) -> String {
    let lines = |servers: &[Server]| {
        servers
            .iter()
            .map(|(name, host, pg, api)| {
                format!(
                    "    server {name} {host}:{pg} maxconn 200 check port {api}{check_options}\n"
                )
            })
            .collect::<String>()
    };
    format!(
        "global\n    maxconn 2000\n\n\
         defaults\n    mode    tcp\n    retries 2\n    timeout client  30m\n    timeout server  30m\n    timeout connect 4s\n    timeout check   5s\n\n\
         listen stats\n    mode http\n    bind 127.0.0.1:{stats_port}\n    stats enable\n    stats uri /\n    stats refresh 5s\n\n\
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
        Haproxy::start_checking(servers, "")
    }

    /// [`Haproxy::start`] with more options on each server's check (` check-ssl verify
    /// none` for REST APIs that speak TLS).
    pub fn start_checking(servers: &[Server], check_options: &str) -> Haproxy {
        let dir = make_test_dir("pgwarden-haproxy-");
        let primary_port = free_port();
        let replica_port = free_port();
        let stats_port = free_port();
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(
            &cfg,
            seed_config(
                primary_port,
                replica_port,
                stats_port,
                servers,
                check_options,
            ),
        )
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
            stats_port,
        }
    }

    /// Status of `server` in listen section `proxy` from the stats page (`UP`, `DOWN`,
    /// `UP 1/3` while going down, `DOWN 1/2` while going up, ...).
    pub fn server_status(&self, proxy: &str, server: &str) -> Result<String, String> {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], self.stats_port));
        let page = super::http::request(
            addr,
            "GET",
            "/;csv",
            None,
            std::time::Duration::from_secs(2),
        )?;
        // "# pxname,svname,qcur,...,status,...": status is the 18th column.
        page.body
            .lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.len() > 17 && f[0] == proxy && f[1] == server)
            .map(|f| f[17].to_string())
            .ok_or_else(|| format!("{proxy}/{server} not on the stats page"))
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
