//! A private network for the chaos suite: each host (pgwarden node, etcd member) in its own
//! network namespace, all on one bridge in the root namespace, faults as nft rules inside a
//! host's namespace.
//!
//! ```text
//!  root namespace: test process, HAProxy ── bridge pgwc<id> 10.231.k.1/24
//!        │ veth pgwc<id>v0        │ veth pgwc<id>v1        ...
//!  netns pgwc<id>-<host0>  netns pgwc<id>-<host1>   eth0 10.231.k.2, .3, ...
//! ```
//!
//! Hosts reach each other and the root namespace over the bridge (layer 2, no routing: the
//! root namespace needs no `ip_forward`). Hosts get no default route on purpose: a stray
//! address in a test config then fails at once with "network unreachable" instead of leaving
//! through the root namespace towards a real network.
//!
//! With `br_netfilter` loaded and `net.bridge.bridge-nf-call-iptables = 1` (the default once
//! the module is loaded, e.g. by Docker), bridged host-to-host packets also traverse the root
//! namespace's IPv4 netfilter hooks (verified: an nft forward-hook drop in the root namespace
//! cuts host-to-host traffic). The harness adds no rule there; [`Topology::check_fabric`]
//! proves every path works and names this as the likely cause when one does not.
//!
//! Cleanup is by name and pid: dropping a [`Topology`] SIGKILLs every process it tracked and
//! every process still inside its namespaces, then deletes the namespaces, veths and bridge.
//! [`sweep_leftovers`] (called by [`Topology::create`]) and `scripts/chaos-net-clean` remove
//! what crashed runs left behind.

mod faults;
mod names;
mod probe;

use std::collections::hash_map::RandomState;
use std::ffi::OsStr;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use faults::{Faults, CHAOS_TABLE};
pub use names::{
    all_run_ids, bridge_name, leftovers, netns_name, netns_pids, proc_start_time, read_owner,
    registry_path, remove_run, run_id_of, sweep_leftovers, veth_name, Owner, NAME_PREFIX,
    REGISTRY_DIR,
};
pub use probe::{from_root as probe_from_root, Reach, PYTHON};

use names::ip;

/// First two octets of every chaos subnet (RFC 1918 space no test machine here routes; the
/// third octet is chosen per run among those not in use).
pub const SUBNET_BASE: [u8; 2] = [10, 231];
/// Prefix length of a run's subnet.
pub const PREFIX_LEN: u8 = 24;
/// Where the kernel says whether bridged IPv4 traffic passes the root namespace's netfilter.
pub const BRIDGE_NF_SYSCTL: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";
/// How long [`Topology::check_fabric`] waits for each probe.
pub const FABRIC_PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// Whether the br_netfilter note was printed already (once per test process is enough).
static BRIDGE_NF_NOTED: AtomicBool = AtomicBool::new(false);
/// A port nothing listens on in a fresh namespace: a RST from it proves the path.
const PROBE_PORT: u16 = 9;

/// Locks a mutex, ignoring poisoning (a panicking test must still clean up).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A bridge in the root namespace with one namespace per host; removed on drop.
pub struct Topology {
    id: String,
    octet: u8,
    label: String,
    hosts: Vec<Host>,
    /// What was started through any [`Host`] of this topology, killed at teardown.
    tracked: Arc<Mutex<Tracked>>,
    torn_down: bool,
}

/// Processes the teardown kills: children it also reaps, and pids spawned elsewhere.
#[derive(Default)]
struct Tracked {
    children: Vec<Child>,
    pids: Vec<i32>,
}

impl Topology {
    /// Sweeps leftovers of dead runs, then reserves a run id and a free 10.231.x.0/24 (owner
    /// file under `/run/pgwc`) and creates the bridge `pgwc<id>` with address 10.231.x.1/24.
    /// `label` says what the run is; it goes into the owner file only (interface names are
    /// limited to 15 characters). Panics with the failing command when setup fails; whatever
    /// was created by then is removed by the drop.
    pub fn create(label: &str) -> Topology {
        assert!(
            super::process::is_root(),
            "network namespaces need root (CI runs as root)"
        );
        sweep_leftovers();
        let (id, octet) = reserve_run(label);
        let topology = Topology {
            id,
            octet,
            label: label.to_string(),
            hosts: Vec::new(),
            tracked: Arc::new(Mutex::new(Tracked::default())),
            torn_down: false,
        };
        let bridge = bridge_name(&topology.id);
        let cidr = format!("{}/{PREFIX_LEN}", topology.root_addr());
        for args in [
            &["link", "add", "name", &bridge, "type", "bridge"][..],
            &["addr", "add", &cidr, "dev", &bridge],
            &["link", "set", &bridge, "up"],
        ] {
            ip(args).unwrap_or_else(|e| panic!("create bridge of run {}: {e}", topology.id));
        }
        if bridge_netfilter_on() && !BRIDGE_NF_NOTED.swap(true, Ordering::Relaxed) {
            eprintln!(
                "[netns] note: {BRIDGE_NF_SYSCTL} = 1: bridged traffic between hosts passes the \
                 root namespace's iptables/nft hooks (no rule there drops it if check_fabric passes)"
            );
        }
        eprintln!(
            "[netns] run {} ({label}): bridge {bridge} {cidr}",
            topology.id
        );
        topology
    }

    /// The run id (4 hex digits) in every name of this topology.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// What the run is, as given to [`Topology::create`].
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The bridge's address: how hosts reach the root namespace (the test, HAProxy).
    pub fn root_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], self.octet, 1)
    }

    /// The run's subnet as `10.231.x.0/24` (for pg_hba lines).
    pub fn subnet(&self) -> String {
        format!(
            "{}/{PREFIX_LEN}",
            Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], self.octet, 0)
        )
    }

    /// The hosts in creation order.
    pub fn hosts(&self) -> &[Host] {
        &self.hosts
    }

    /// The host called `name`.
    pub fn host(&self, name: &str) -> Option<&Host> {
        self.hosts.iter().find(|h| h.name == name)
    }

    /// Creates namespace `pgwc<id>-<name>` with `eth0` (the far end of a veth whose root end is
    /// a port of the bridge) on the next address, and brings up `lo` and `eth0`. `name`: 1 to
    /// 32 characters out of `a-z`, `0-9`, `-`.
    pub fn add_host(&mut self, name: &str) -> Host {
        assert!(
            !name.is_empty()
                && name.len() <= 32
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
            "host name {name:?}: use 1-32 characters out of a-z, 0-9, -"
        );
        assert!(self.host(name).is_none(), "host {name} exists already");
        let index = self.hosts.len();
        let last = u8::try_from(index + 2)
            .ok()
            .filter(|&n| n < 255)
            .unwrap_or_else(|| panic!("run {}: no address left for host {name}", self.id));
        let addr = Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], self.octet, last);
        let netns = netns_name(&self.id, name);
        let veth = veth_name(&self.id, index);
        let bridge = bridge_name(&self.id);
        let cidr = format!("{addr}/{PREFIX_LEN}");
        for args in [
            &["netns", "add", &netns][..],
            // The far end is created inside the namespace directly: no clash with the root
            // namespace's own eth0, no rename.
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &netns,
            ],
            &["link", "set", &veth, "master", &bridge],
            &["link", "set", &veth, "up"],
            &["-n", &netns, "addr", "add", &cidr, "dev", "eth0"],
            &["-n", &netns, "link", "set", "lo", "up"],
            &["-n", &netns, "link", "set", "eth0", "up"],
        ] {
            ip(args).unwrap_or_else(|e| panic!("add host {name} to run {}: {e}", self.id));
        }
        let host = Host {
            name: name.to_string(),
            netns,
            addr,
            tracked: Arc::clone(&self.tracked),
            faults: Arc::new(Mutex::new(Faults::default())),
        };
        self.hosts.push(host.clone());
        eprintln!(
            "[netns] run {}: host {name} at {addr} in {}",
            self.id, host.netns
        );
        host
    }

    /// Proves every path the suite relies on: the root namespace to each host and each host to
    /// every other host and to the root namespace (TCP SYN answered, by a listener or a RST).
    /// Panics listing the broken paths.
    pub fn check_fabric(&self) {
        let mut broken = Vec::new();
        for host in &self.hosts {
            let reach = probe_from_root(host.socket(PROBE_PORT), FABRIC_PROBE_TIMEOUT);
            if !reach.reachable() {
                broken.push(format!("root -> {}: {reach:?}", host.name));
            }
            let targets: Vec<SocketAddrV4> = std::iter::once(self.root_addr())
                .chain(
                    self.hosts
                        .iter()
                        .filter(|h| h.name != host.name)
                        .map(|h| h.addr),
                )
                .map(|a| SocketAddrV4::new(a, PROBE_PORT))
                .collect();
            for (target, reach) in targets
                .iter()
                .zip(host.probe_tcp(&targets, FABRIC_PROBE_TIMEOUT))
            {
                if !reach.reachable() {
                    broken.push(format!("{} -> {target}: {reach:?}", host.name));
                }
            }
        }
        assert!(
            broken.is_empty(),
            "run {}: broken paths on the chaos network: {broken:#?}\n{}",
            self.id,
            if bridge_netfilter_on() {
                format!(
                    "{BRIDGE_NF_SYSCTL} is 1: check the root namespace's firewall (`nft list \
                     ruleset`, `iptables -S FORWARD`) for rules that drop bridged traffic"
                )
            } else {
                String::new()
            }
        );
    }

    /// Removes everything of the run (see the module docs). Returns the problems met; the
    /// drop calls it too and prints them.
    pub fn teardown(&mut self) -> Vec<String> {
        if self.torn_down {
            return Vec::new();
        }
        self.torn_down = true;
        let mut tracked = std::mem::take(&mut *lock(&self.tracked));
        let mut pids = tracked.pids.clone();
        pids.extend(tracked.children.iter().map(|c| c.id() as i32));
        let errors = remove_run(&self.id, &pids);
        for child in &mut tracked.children {
            // Killed above: this only reaps it.
            let _ = child.wait();
        }
        eprintln!(
            "[netns] run {} torn down ({} tracked pids){}",
            self.id,
            pids.len(),
            if errors.is_empty() {
                String::new()
            } else {
                format!(": {errors:?}")
            }
        );
        errors
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for host in &self.hosts {
                let rules = faults::list(&host.netns);
                if !rules.is_empty() {
                    eprintln!("[netns] faults of {} at failure:\n{rules}", host.name);
                }
            }
        }
        for e in self.teardown() {
            eprintln!("[netns] teardown of run {}: {e}", self.id);
        }
    }
}

/// One host: a network namespace with `eth0` on the topology's bridge. Cheap to clone; clones
/// share the tracked pids and the faults.
#[derive(Clone)]
pub struct Host {
    name: String,
    netns: String,
    addr: Ipv4Addr,
    tracked: Arc<Mutex<Tracked>>,
    faults: Arc<Mutex<Faults>>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Host({} {} in {})", self.name, self.addr, self.netns)
    }
}

impl Host {
    /// The name given to [`Topology::add_host`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's name (`pgwc<id>-<name>`).
    pub fn netns(&self) -> &str {
        &self.netns
    }

    /// The address of the host's `eth0`.
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }

    /// `addr():port`.
    pub fn socket(&self, port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(self.addr, port)
    }

    /// `ip netns exec <netns> <program>`: add arguments and start it with [`Host::spawn`] (or
    /// spawn it yourself and pass the child's pid to [`Host::track`]). `ip netns exec` execs the program, so the
    /// child's pid is the program's pid (checked by the netns test), and so does `setpriv`.
    pub fn command(&self, program: impl AsRef<OsStr>) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.netns]).arg(program);
        cmd
    }

    /// `inner` (program, arguments, environment changes, working directory) run inside the
    /// namespace, e.g. `host.wrap(&runner_command(..))` for an agent as `postgres`. What
    /// `Command` does not expose is lost: `env_clear`, `process_group`, `uid`, stdio: set
    /// those again on the result.
    pub fn wrap(&self, inner: &Command) -> Command {
        let mut cmd = self.command(inner.get_program());
        cmd.args(inner.get_args());
        for (key, value) in inner.get_envs() {
            match value {
                Some(v) => cmd.env(key, v),
                None => cmd.env_remove(key),
            };
        }
        if let Some(dir) = inner.get_current_dir() {
            cmd.current_dir(dir);
        }
        cmd
    }

    /// Spawns `cmd` (made by [`Host::command`] or [`Host::wrap`]) and returns its pid. The
    /// topology keeps the child: the teardown kills it (with its descendants) and reaps it.
    pub fn spawn(&self, cmd: &mut Command) -> Result<i32, String> {
        let child = cmd
            .spawn()
            .map_err(|e| format!("spawn {cmd:?} in {}: {e}", self.netns))?;
        let pid = child.id() as i32;
        lock(&self.tracked).children.push(child);
        Ok(pid)
    }

    /// Records `pid` of a process started elsewhere (e.g. `spawn_logged`) to be SIGKILLed,
    /// with its descendants, by the teardown. Reaping it stays with whoever holds its `Child`.
    pub fn track(&self, pid: i32) {
        lock(&self.tracked).pids.push(pid);
    }

    /// Pids running inside this namespace right now (`ip netns pids`).
    pub fn pids(&self) -> Vec<i32> {
        netns_pids(&self.netns)
    }

    /// Drops all traffic to and from `peers`, both directions, established connections
    /// included (on top of the faults already in place).
    pub fn block(&self, peers: &[Ipv4Addr]) {
        self.change_faults(|f| {
            f.drop_from.extend(peers);
            f.drop_to.extend(peers);
        });
    }

    /// Drops only what this host sends to `peers` (one-way loss). TCP needs both directions,
    /// so connections between the two fail either way; one-way matters for UDP and for who
    /// times out first.
    pub fn block_outgoing_to(&self, peers: &[Ipv4Addr]) {
        self.change_faults(|f| f.drop_to.extend(peers));
    }

    /// Drops only what `peers` send to this host (the other one-way loss).
    pub fn block_incoming_from(&self, peers: &[Ipv4Addr]) {
        self.change_faults(|f| f.drop_from.extend(peers));
    }

    /// Removes every fault of this host (the whole chaos table).
    pub fn heal(&self) {
        self.change_faults(|f| *f = Faults::default());
    }

    /// The faults currently in place.
    pub fn faults(&self) -> Faults {
        lock(&self.faults).clone()
    }

    /// The chaos table as nft lists it (with drop counters), empty without faults.
    pub fn fault_rules(&self) -> String {
        faults::list(&self.netns)
    }

    /// Packets dropped on (input, output) since the faults were last changed: shows which side
    /// of a partition ate the traffic.
    pub fn dropped_packets(&self) -> (u64, u64) {
        faults::drop_counters(&self.fault_rules())
    }

    fn change_faults(&self, change: impl FnOnce(&mut Faults)) {
        let mut current = lock(&self.faults);
        let mut next = current.clone();
        change(&mut next);
        faults::apply(&self.netns, &next).unwrap_or_else(|e| panic!("host {}: {e}", self.name));
        eprintln!(
            "[netns] {}: drop from {:?}, drop to {:?}",
            self.name, next.drop_from, next.drop_to
        );
        *current = next;
    }

    /// TCP connection attempts from inside this namespace, one result per target, in order.
    pub fn probe_tcp(&self, targets: &[SocketAddrV4], timeout: Duration) -> Vec<Reach> {
        probe::from_netns(&self.netns, targets, timeout)
    }
}

/// Whether bridged IPv4 traffic passes the root namespace's iptables/nft hooks.
pub fn bridge_netfilter_on() -> bool {
    fs::read_to_string(BRIDGE_NF_SYSCTL).is_ok_and(|v| v.trim() == "1")
}

/// Picks an unused run id and subnet octet and writes the owner file, under a lock so two runs
/// starting together cannot pick the same ones.
fn reserve_run(label: &str) -> (String, u8) {
    fs::create_dir_all(REGISTRY_DIR).unwrap_or_else(|e| panic!("mkdir {REGISTRY_DIR}: {e}"));
    let lock_path = format!("{REGISTRY_DIR}/.lock");
    let lock_file =
        fs::File::create(&lock_path).unwrap_or_else(|e| panic!("open {lock_path}: {e}"));
    lock_file
        .lock()
        .unwrap_or_else(|e| panic!("lock {lock_path}: {e}"));
    let taken = used_octets();
    // RandomState carries per-process random keys: enough to keep concurrent runs apart.
    let mut random = RandomState::new().build_hasher();
    random.write_u32(std::process::id());
    random.write_u128(
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    let seed = random.finish();
    let octet = (0..254u64)
        .map(|i| ((seed + i) % 254 + 1) as u8)
        .find(|o| !taken.contains(o))
        .unwrap_or_else(|| panic!("no free /24 left under 10.231.0.0/16 (taken: {taken:?})"));
    let existing = all_run_ids();
    let id = (0..1000u64)
        .map(|i| format!("{:04x}", (seed >> 16).wrapping_add(i) & 0xffff))
        .find(|id| !existing.contains(id))
        .expect("a free run id among 1000 candidates");
    let owner = Owner::me(octet, label);
    let path = registry_path(&id);
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .unwrap_or_else(|e| panic!("create owner file {}: {e}", path.display()));
    file.write_all(owner.render().as_bytes())
        .unwrap_or_else(|e| panic!("write owner file {}: {e}", path.display()));
    (id, octet)
}

/// Third octets of 10.231.x.0/24 that clash with an address or route of the root namespace or
/// belong to another live run (whose bridge may not have its address yet).
fn used_octets() -> Vec<u8> {
    let addrs = ip(&["-o", "-4", "addr", "show"])
        .unwrap_or_else(|e| panic!("list addresses to pick a chaos subnet: {e}"));
    let routes = ip(&["-4", "route", "show", "table", "all"])
        .unwrap_or_else(|e| panic!("list routes to pick a chaos subnet: {e}"));
    let mut used: Vec<u8> = (1..=254u8)
        .filter(|&o| subnet_clashes(&addrs, o) || subnet_clashes(&routes, o))
        .collect();
    used.extend(
        all_run_ids()
            .iter()
            .filter_map(|id| read_owner(id))
            .map(|o| o.octet),
    );
    used
}

/// Whether any `a.b.c.d[/n]` token in `text` with n >= 16 overlaps 10.231.`octet`.0/24.
/// Broader prefixes (a 10.0.0.0/8 route, a default route) do not clash: our connected /24 is
/// more specific and wins.
pub fn subnet_clashes(text: &str, octet: u8) -> bool {
    let ours = u32::from(Ipv4Addr::new(SUBNET_BASE[0], SUBNET_BASE[1], octet, 0));
    text.split_whitespace().any(|token| {
        let (addr, len) = token.split_once('/').unwrap_or((token, "32"));
        let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u32>()) else {
            return false;
        };
        if !(16..=32).contains(&len) {
            return false;
        }
        let shorter = len.min(u32::from(PREFIX_LEN));
        let mask = u32::MAX << (32 - shorter);
        u32::from(addr) & mask == ours & mask
    })
}
