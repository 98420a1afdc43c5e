//! A local etcd 3.4 cluster on loopback: free ports, own data dirs, SIGKILL by pid.
//!
//! Members run with etcd's default election timeout, so the minimum lease TTL is 2 s.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use super::http;
use super::netns::Host;
use super::process::{
    assert_port_free, failure_log_lines, free_port, kill_tree, make_test_dir, pid_alive,
    run_capture, spawn_logged, tail_file, wait_check, wait_dead, Captured,
};

/// etcd server binary.
pub const ETCD_BIN: &str = "etcd";
/// etcd v3 CLI.
pub const ETCDCTL_BIN: &str = "etcdctl";
/// How long a fresh or restarted member may take to report healthy.
pub const ETCD_START_TIMEOUT: Duration = Duration::from_secs(60);

/// One key-value pair as etcd returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: String,
    pub value: String,
    pub create_revision: i64,
    pub mod_revision: i64,
    pub version: i64,
    /// Lease id, 0 when the key has no lease.
    pub lease: i64,
}

impl Kv {
    /// The value parsed as JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.value).ok()
    }
}

struct Member {
    name: String,
    /// The address it listens on: 127.0.0.1, or its host's in a chaos topology.
    ip: String,
    /// The network namespace it runs in, if any.
    host: Option<Host>,
    client_port: u16,
    peer_port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    child: Option<Child>,
}

/// A running etcd cluster; dropping it kills every member and removes the data dirs.
pub struct EtcdCluster {
    members: Vec<Member>,
    initial_cluster: String,
    token: String,
    dir: tempfile::TempDir,
    /// With TLS: clients must show a certificate this PKI's CA signed.
    tls: Option<super::tls::Pki>,
}

impl EtcdCluster {
    /// Starts `members` members serving clients over TLS only (`https`, with
    /// `--client-cert-auth` against `pki`'s CA); peers talk plain HTTP among themselves.
    pub fn start_tls(members: usize, pki: &super::tls::Pki) -> EtcdCluster {
        Self::start_with(vec![None; members], Some(pki.clone()))
    }

    /// The PKI clients need, when the members serve TLS.
    pub fn tls(&self) -> Option<&super::tls::Pki> {
        self.tls.as_ref()
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    /// Starts `members` members (`--initial-cluster-state new`) and waits until all are healthy.
    pub fn start(members: usize) -> EtcdCluster {
        Self::start_placed(vec![None; members])
    }

    /// One member in each host's network namespace, listening on the host's address.
    pub fn start_in(hosts: &[Host]) -> EtcdCluster {
        Self::start_placed(hosts.iter().cloned().map(Some).collect())
    }

    fn start_placed(hosts: Vec<Option<Host>>) -> EtcdCluster {
        Self::start_with(hosts, None)
    }

    fn start_with(hosts: Vec<Option<Host>>, tls: Option<super::tls::Pki>) -> EtcdCluster {
        assert!(
            !hosts.is_empty(),
            "an etcd cluster needs at least one member"
        );
        let dir = make_test_dir("pgwarden-etcd-");
        let members: Vec<Member> = hosts
            .into_iter()
            .enumerate()
            .map(|(i, host)| Member {
                name: format!("etcd{i}"),
                ip: host
                    .as_ref()
                    .map_or_else(|| "127.0.0.1".to_string(), |h| h.addr().to_string()),
                host,
                client_port: free_port(),
                peer_port: free_port(),
                data_dir: dir.path().join(format!("etcd{i}.data")),
                log: dir.path().join(format!("etcd{i}.log")),
                child: None,
            })
            .collect();
        let initial_cluster = members
            .iter()
            .map(|m| format!("{}=http://{}:{}", m.name, m.ip, m.peer_port))
            .collect::<Vec<_>>()
            .join(",");
        let token = format!(
            "pgwarden-it-{}-{}",
            std::process::id(),
            dir.path()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
        let mut cluster = EtcdCluster {
            members,
            initial_cluster,
            token,
            dir,
            tls,
        };
        for i in 0..cluster.members.len() {
            cluster.spawn_member(i);
        }
        cluster.wait_healthy(ETCD_START_TIMEOUT);
        cluster
    }

    fn spawn_member(&mut self, i: usize) {
        let m = &self.members[i];
        assert!(m.child.is_none(), "etcd member {i} is already running");
        if m.host.is_none() {
            assert_port_free(m.client_port, &format!("etcd member {i} clients"));
            assert_port_free(m.peer_port, &format!("etcd member {i} peers"));
        }
        let client = format!("{}://{}:{}", self.scheme(), m.ip, m.client_port);
        let peer = format!("http://{}:{}", m.ip, m.peer_port);
        let mut cmd = Command::new(ETCD_BIN);
        if let Some(pki) = &self.tls {
            cmd.arg("--cert-file")
                .arg(&pki.server.cert)
                .arg("--key-file")
                .arg(&pki.server.key)
                .arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&pki.ca);
        }
        cmd.arg("--name")
            .arg(&m.name)
            .arg("--data-dir")
            .arg(&m.data_dir)
            .arg("--listen-client-urls")
            .arg(&client)
            .arg("--advertise-client-urls")
            .arg(&client)
            .arg("--listen-peer-urls")
            .arg(&peer)
            .arg("--initial-advertise-peer-urls")
            .arg(&peer)
            .arg("--initial-cluster")
            .arg(&self.initial_cluster)
            .arg("--initial-cluster-token")
            .arg(&self.token)
            // Ignored by etcd once the data dir holds a member (restarts reuse it).
            .arg("--initial-cluster-state")
            .arg("new")
            .arg("--logger")
            .arg("zap")
            .current_dir(self.dir.path());
        if let Some(host) = &m.host {
            cmd = host.wrap(&cmd);
        }
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = spawn_logged(&mut cmd, &m.log, &format!("etcd member {i} ({client})"));
        if let Some(host) = &m.host {
            host.track(child.id() as i32);
        }
        self.members[i].child = Some(child);
    }

    /// Waits until every running member answers `GET /health` with `"health":"true"`.
    pub fn wait_healthy(&self, timeout: Duration) {
        wait_check(timeout, "every running etcd member healthy", || {
            let mut bad = Vec::new();
            for (i, m) in self.members.iter().enumerate() {
                if m.child.is_none() {
                    continue;
                }
                let ip: std::net::IpAddr =
                    m.ip.parse()
                        .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
                let addr = (ip, m.client_port).into();
                let tls = self.tls.as_ref().map(|pki| http::ApiTls {
                    config: pki.client_config(Some(&pki.admin)),
                    basic: None,
                });
                match http::request_with(
                    addr,
                    tls.as_ref(),
                    "GET",
                    "/health",
                    None,
                    http::HTTP_TIMEOUT,
                ) {
                    Ok(r) if r.status == 200 && r.body.contains("\"true\"") => {}
                    Ok(r) => bad.push(format!("member {i}: {} {}", r.status, r.body.trim())),
                    Err(e) => bad.push(format!("member {i}: {e}")),
                }
            }
            if bad.is_empty() {
                Ok(())
            } else {
                Err(bad)
            }
        });
    }

    /// Number of members (running or stopped).
    #[allow(clippy::len_without_is_empty)] // never empty: built with at least one member
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// `http(s)://<address>:<client port>` of every member, in member order.
    pub fn client_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}://{}:{}", self.scheme(), m.ip, m.client_port))
            .collect()
    }

    /// `<address>:<client port>` of every member, in member order (the agents' `etcd3.hosts`).
    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("{}:{}", m.ip, m.client_port))
            .collect()
    }

    /// Endpoints of the members the harness has not stopped.
    pub fn live_endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("{}:{}", m.ip, m.client_port))
            .collect()
    }

    /// Whether member `i` is running (started and not stopped by the harness).
    pub fn is_running(&self, i: usize) -> bool {
        self.members[i].child.is_some()
    }

    /// Pids of the running members.
    pub fn pids(&self) -> Vec<i32> {
        self.members
            .iter()
            .filter_map(|m| m.child.as_ref().map(|c| c.id() as i32))
            .collect()
    }

    /// Pid of member `i` if running.
    pub fn pid(&self, i: usize) -> Option<i32> {
        self.members[i].child.as_ref().map(|c| c.id() as i32)
    }

    /// Log file of member `i`.
    pub fn log_path(&self, i: usize) -> &Path {
        &self.members[i].log
    }

    /// SIGKILLs member `i` and waits until it is gone.
    pub fn stop_member(&mut self, i: usize) {
        let Some(mut child) = self.members[i].child.take() else {
            panic!("etcd member {i} is not running");
        };
        let pids = kill_tree(child.id() as i32);
        let _ = child.wait();
        wait_dead(
            &pids,
            Duration::from_secs(10),
            &format!("etcd member {i} to exit"),
        );
        eprintln!("[harness] stopped etcd member {i} (SIGKILL)");
    }

    /// Restarts member `i` with the same data dir and ports and waits until it is healthy.
    pub fn start_member(&mut self, i: usize) {
        self.spawn_member(i);
        self.wait_healthy(ETCD_START_TIMEOUT);
    }

    /// An `etcdctl` (API v3) command against the live members.
    pub fn etcdctl(&self) -> Command {
        self.etcdctl_on(&self.live_endpoints())
    }

    /// An `etcdctl` (API v3) command against the given endpoints.
    pub fn etcdctl_on(&self, endpoints: &[String]) -> Command {
        let mut cmd = Command::new(ETCDCTL_BIN);
        if let Some(pki) = &self.tls {
            cmd.arg(format!("--cacert={}", pki.ca.display()))
                .arg(format!("--cert={}", pki.admin.cert.display()))
                .arg(format!("--key={}", pki.admin.key.display()));
        }
        let scheme = self.scheme();
        let urls: Vec<String> = endpoints
            .iter()
            .map(|e| format!("{scheme}://{e}"))
            .collect();
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", urls.join(",")))
            .arg("--dial-timeout=2s")
            .arg("--command-timeout=4s");
        cmd
    }

    fn run(&self, mut cmd: Command) -> Result<Captured, String> {
        let out = run_capture(&mut cmd, Duration::from_secs(10));
        if out.success() {
            Ok(out)
        } else {
            Err(format!(
                "{cmd:?} failed: {:?} {}",
                out.status,
                out.stderr.trim()
            ))
        }
    }

    /// Turns etcd's authentication on, as a production etcd has it: a `root` user (no
    /// password: the harness's etcdctl is `root` by its TLS certificate's common name), and
    /// `user` with `password` allowed to read and write under `prefix` only. Needs TLS (the
    /// harness would be locked out otherwise).
    pub fn enable_auth(&self, user: &str, password: &str, prefix: &str) {
        assert!(self.tls.is_some(), "enable_auth needs a TLS etcd");
        let steps: [&[&str]; 7] = [
            &["user", "add", "root", "--no-password"],
            &["user", "grant-role", "root", "root"],
            &["role", "add", user],
            &[
                "role",
                "grant-permission",
                user,
                "--prefix=true",
                "readwrite",
                prefix,
            ],
            &[
                "user",
                "add",
                &format!("{user}:{password}"),
                "--interactive=false",
            ],
            &["user", "grant-role", user, user],
            &["auth", "enable"],
        ];
        for step in steps {
            let mut cmd = self.etcdctl();
            cmd.args(step);
            // The password is in the arguments: it is masked in the error.
            if let Err(e) = self.run(cmd) {
                let e = e.replace(password, "<password>");
                panic!("etcdctl {}: {e}", step[..2].join(" "));
            }
        }
    }

    /// `put key value` through the live members.
    pub fn try_put(&self, key: &str, value: &str) -> Result<(), String> {
        let mut cmd = self.etcdctl();
        cmd.arg("put").arg(key).arg(value);
        self.run(cmd).map(|_| ())
    }

    /// `put key value`, panicking on failure.
    pub fn put(&self, key: &str, value: &str) {
        self.try_put(key, value)
            .unwrap_or_else(|e| panic!("etcd put {key}: {e}"));
    }

    /// Keys under `prefix` (linearizable read through the live members).
    pub fn try_get_prefix(&self, prefix: &str) -> Result<Vec<Kv>, String> {
        self.try_get_prefix_on(&self.live_endpoints(), prefix)
    }

    /// Keys under `prefix`, read through the given endpoints only.
    pub fn try_get_prefix_on(&self, endpoints: &[String], prefix: &str) -> Result<Vec<Kv>, String> {
        let mut cmd = self.etcdctl_on(endpoints);
        cmd.arg("get")
            .arg(prefix)
            .arg("--prefix")
            .arg("-w")
            .arg("json");
        let out = self.run(cmd)?;
        parse_get_json(&out.stdout)
    }

    /// Keys under `prefix`, panicking on failure.
    pub fn get_prefix(&self, prefix: &str) -> Vec<Kv> {
        self.try_get_prefix(prefix)
            .unwrap_or_else(|e| panic!("etcd get --prefix {prefix}: {e}"))
    }

    /// The exact `key`, `Ok(None)` when absent.
    pub fn try_get(&self, key: &str) -> Result<Option<Kv>, String> {
        let mut cmd = self.etcdctl();
        cmd.arg("get").arg(key).arg("-w").arg("json");
        let out = self.run(cmd)?;
        Ok(parse_get_json(&out.stdout)?
            .into_iter()
            .find(|kv| kv.key == key))
    }

    /// The exact `key`, panicking when etcd cannot be read.
    pub fn get(&self, key: &str) -> Option<Kv> {
        self.try_get(key)
            .unwrap_or_else(|e| panic!("etcd get {key}: {e}"))
    }

    /// `etcdctl endpoint status -w table` for the live members (diagnostics).
    pub fn status_table(&self) -> String {
        let mut cmd = self.etcdctl();
        cmd.arg("endpoint").arg("status").arg("-w").arg("table");
        match self.run(cmd) {
            Ok(out) => out.stdout,
            Err(e) => e,
        }
    }

    /// `(member_id, raft leader id)` as member `i` reports them (`endpoint status`).
    pub fn member_status(&self, i: usize) -> Result<(u64, u64), String> {
        let mut cmd = self.etcdctl_on(&[self.endpoints()[i].clone()]);
        cmd.arg("endpoint").arg("status").arg("-w").arg("json");
        let out = self.run(cmd)?;
        let v: serde_json::Value = serde_json::from_str(&out.stdout)
            .map_err(|e| format!("endpoint status json: {e}: {}", out.stdout))?;
        let status = v
            .get(0)
            .and_then(|e| e.get("Status"))
            .ok_or_else(|| format!("no Status in {v}"))?;
        let member = status.pointer("/header/member_id").and_then(|x| x.as_u64());
        let leader = status.get("leader").and_then(|x| x.as_u64());
        match (member, leader) {
            (Some(m), Some(l)) => Ok((m, l)),
            _ => Err(format!("member_id/leader missing in {status}")),
        }
    }

    /// Index of the current Raft leader, as the live members report it.
    pub fn raft_leader(&self) -> Result<usize, String> {
        let mut ids = Vec::new();
        let mut leaders = std::collections::BTreeSet::new();
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                ids.push(None);
                continue;
            }
            let (id, l) = self.member_status(i)?;
            ids.push(Some(id));
            leaders.insert(l);
        }
        let leader = match leaders.into_iter().collect::<Vec<_>>().as_slice() {
            [l] if *l != 0 => *l,
            other => {
                return Err(format!(
                    "live members disagree on the Raft leader: {other:x?}"
                ))
            }
        };
        ids.iter()
            .position(|id| *id == Some(leader))
            .ok_or_else(|| format!("leader {leader:x} is not a live member ({ids:x?})"))
    }

    /// Transfers Raft leadership to member `to` and waits until every live member agrees.
    pub fn move_leader(&self, to: usize) {
        let (target, _) = self
            .member_status(to)
            .unwrap_or_else(|e| panic!("status of etcd member {to}: {e}"));
        wait_check(
            Duration::from_secs(30),
            &format!("etcd member {to} to become Raft leader"),
            || {
                if self.raft_leader()? == to {
                    return Ok(());
                }
                let mut cmd = self.etcdctl();
                cmd.arg("move-leader").arg(format!("{target:x}"));
                self.run(cmd)?;
                Err("move-leader sent".to_string())
            },
        );
    }

    /// Tails of every member's log (diagnostics).
    pub fn log_tails(&self, lines: usize) -> String {
        let mut out = String::new();
        for (i, m) in self.members.iter().enumerate() {
            out.push_str(&format!(
                "----- etcd member {i} log {} (last {lines} lines) -----\n{}\n",
                m.log.display(),
                tail_file(&m.log, lines)
            ));
        }
        out
    }
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails(failure_log_lines() / 3));
        }
        let mut pids = Vec::new();
        for m in &mut self.members {
            if let Some(mut child) = m.child.take() {
                pids.extend(kill_tree(child.id() as i32));
                let _ = child.wait();
            }
        }
        for _ in 0..100 {
            if pids.iter().all(|&p| !pid_alive(p)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50)); // poll interval of a bounded wait
        }
    }
}

fn json_i64(v: &serde_json::Value) -> i64 {
    match v {
        serde_json::Value::Number(n) => n.as_i64().unwrap_or(0),
        serde_json::Value::String(s) => s.parse().unwrap_or(0),
        _ => 0,
    }
}

/// Parses `etcdctl get -w json` output (keys and values are base64).
pub fn parse_get_json(text: &str) -> Result<Vec<Kv>, String> {
    let v: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("etcdctl json: {e}: {text}"))?;
    let Some(kvs) = v.get("kvs").and_then(|k| k.as_array()) else {
        return Ok(Vec::new());
    };
    kvs.iter()
        .map(|kv| {
            let text_field = |name: &str| -> Result<String, String> {
                let raw = kv.get(name).and_then(|x| x.as_str()).unwrap_or("");
                let bytes =
                    base64_decode(raw).ok_or_else(|| format!("bad base64 in {name}: {raw}"))?;
                Ok(String::from_utf8_lossy(&bytes).into_owned())
            };
            let num = |name: &str| kv.get(name).map(json_i64).unwrap_or(0);
            Ok(Kv {
                key: text_field("key")?,
                value: text_field("value")?,
                create_revision: num("create_revision"),
                mod_revision: num("mod_revision"),
                version: num("version"),
                lease: num("lease"),
            })
        })
        .collect()
}

/// Standard base64 (with or without padding).
pub fn base64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    let clean: Vec<u8> = s
        .bytes()
        .filter(|&c| c != b'=' && !c.is_ascii_whitespace())
        .collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for chunk in clean.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let bytes = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        match chunk.len() {
            4 => out.extend_from_slice(&bytes),
            3 => out.extend_from_slice(&bytes[..2]),
            2 => out.push(bytes[0]),
            _ => return None,
        }
    }
    Some(out)
}
