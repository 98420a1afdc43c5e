//! Names, ownership and cleanup of network objects by run id.
//!
//! Every object a run creates carries `pgwc<id>` (4 hex digits) at the start of its name: the
//! bridge `pgwc<id>`, the root ends of the veths `pgwc<id>v<n>`, the namespaces
//! `pgwc<id>-<host>`. Linux interface names have at most 15 characters, so the id is short and
//! host names go only into namespace names (which are files under `/run/netns`).
//!
//! A run writes `/run/pgwc/pgwc<id>.run` (owner pid, its start time, subnet) *before* creating
//! anything, so a sweep that finds objects of a run without a live owner knows the run crashed.
//! The start time guards against pid reuse. `scripts/chaos-net-clean` implements the same rules
//! in shell; keep the two in step.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use super::super::process::{kill_tree, pid_alive, run_capture, signal};

/// What every name of the chaos network starts with.
pub const NAME_PREFIX: &str = "pgwc";
/// Where the runs' owner files live (tmpfs: gone after a reboot, like the namespaces).
pub const REGISTRY_DIR: &str = "/run/pgwc";
/// Where `ip netns add` puts its namespace files.
pub const NETNS_DIR: &str = "/run/netns";
/// Where the root namespace's links are listed.
const SYS_NET_DIR: &str = "/sys/class/net";
/// How long a helper command (`ip`, `nft`) may take.
pub const TOOL_TIMEOUT: Duration = Duration::from_secs(10);

/// The bridge of run `id` (also the prefix of the run's veth ends).
pub fn bridge_name(id: &str) -> String {
    format!("{NAME_PREFIX}{id}")
}

/// The namespace of host `host` in run `id`.
pub fn netns_name(id: &str, host: &str) -> String {
    format!("{NAME_PREFIX}{id}-{host}")
}

/// The root-namespace end of host number `index`'s veth in run `id`.
pub fn veth_name(id: &str, index: usize) -> String {
    format!("{NAME_PREFIX}{id}v{index}")
}

/// The owner file of run `id`.
pub fn registry_path(id: &str) -> PathBuf {
    Path::new(REGISTRY_DIR).join(format!("{NAME_PREFIX}{id}.run"))
}

/// The run id in a name made by this module (`pgwc` + 4 lowercase hex digits + anything), or
/// `None` for any other name, which the cleanup then leaves alone.
pub fn run_id_of(name: &str) -> Option<String> {
    let id = name.strip_prefix(NAME_PREFIX)?.get(..4)?;
    id.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        .then(|| id.to_string())
}

/// Runs `cmd` (an `ip`/`nft` invocation) and returns its stdout, or an error naming the
/// command, its status and stderr.
pub fn run_tool(cmd: &mut Command) -> Result<String, String> {
    let out = run_capture(cmd, TOOL_TIMEOUT);
    if out.success() {
        Ok(out.stdout)
    } else {
        Err(format!(
            "{cmd:?} failed ({}): {}",
            out.status
                .map_or("timed out".to_string(), |s| s.to_string()),
            out.stderr.trim()
        ))
    }
}

/// `ip ARGS...`.
pub fn ip(args: &[&str]) -> Result<String, String> {
    run_tool(Command::new("ip").args(args))
}

/// Names in `dir` (empty when the directory does not exist).
fn dir_names(dir: &str) -> Vec<String> {
    fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Namespaces of run `id`.
pub fn run_namespaces(id: &str) -> Vec<String> {
    let prefix = netns_name(id, "");
    dir_names(NETNS_DIR)
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect()
}

/// Root-namespace links of run `id`: veth ends first, the bridge last (its ports go first).
pub fn run_links(id: &str) -> Vec<String> {
    let bridge = bridge_name(id);
    let mut links: Vec<String> = dir_names(SYS_NET_DIR)
        .into_iter()
        .filter(|n| n.starts_with(&bridge))
        .collect();
    links.sort_by_key(|n| (*n == bridge, n.clone()));
    links
}

/// Everything of run `id` that still exists (namespaces, links, owner file), for assertions.
pub fn leftovers(id: &str) -> Vec<String> {
    let mut out: Vec<String> = run_namespaces(id)
        .into_iter()
        .map(|n| format!("namespace {n}"))
        .collect();
    out.extend(run_links(id).into_iter().map(|l| format!("link {l}")));
    let registry = registry_path(id);
    if registry.exists() {
        out.push(format!("owner file {}", registry.display()));
    }
    out
}

/// Every run id that has a namespace, a link or an owner file on this machine.
pub fn all_run_ids() -> BTreeSet<String> {
    let registry: Vec<String> = dir_names(REGISTRY_DIR);
    dir_names(NETNS_DIR)
        .iter()
        .chain(dir_names(SYS_NET_DIR).iter())
        .chain(registry.iter())
        .filter_map(|n| run_id_of(n))
        .collect()
}

/// The process that owns a run, as its owner file records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owner {
    pub pid: i32,
    /// `/proc/<pid>/stat` field 22 (clock ticks since boot): tells a reused pid apart.
    pub start: u64,
    /// Third octet of the run's 10.231.x.0/24.
    pub octet: u8,
    /// What the run is, for humans reading `/run/pgwc`.
    pub label: String,
}

impl Owner {
    /// This process as the owner of a run on 10.231.`octet`.0/24.
    pub fn me(octet: u8, label: &str) -> Owner {
        let pid = std::process::id() as i32;
        Owner {
            pid,
            start: proc_start_time(pid).expect("read our own /proc/self/stat start time"),
            octet,
            label: label.replace('\n', " "),
        }
    }

    /// The owner file's text (`key=value` lines, read by `scripts/chaos-net-clean` too).
    pub fn render(&self) -> String {
        format!(
            "pid={}\nstart={}\noctet={}\nlabel={}\n",
            self.pid, self.start, self.octet, self.label
        )
    }

    /// Parses [`Owner::render`]'s text; `None` when a field is missing or malformed.
    pub fn parse(text: &str) -> Option<Owner> {
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(str::to_string)
        };
        Some(Owner {
            pid: field("pid")?.parse().ok()?,
            start: field("start")?.parse().ok()?,
            octet: field("octet")?.parse().ok()?,
            label: field("label").unwrap_or_default(),
        })
    }

    /// Whether the owning process still runs (same pid *and* same start time).
    pub fn alive(&self) -> bool {
        pid_alive(self.pid) && proc_start_time(self.pid) == Some(self.start)
    }
}

/// The owner of run `id`, `None` when its file is missing or unreadable.
pub fn read_owner(id: &str) -> Option<Owner> {
    Owner::parse(&fs::read_to_string(registry_path(id)).ok()?)
}

/// Start time of `pid` in clock ticks since boot (`/proc/<pid>/stat` field 22).
pub fn proc_start_time(pid: i32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm may contain spaces and ')': fields start after the last ')', at field 3.
    text[text.rfind(')')? + 1..]
        .split_whitespace()
        .nth(22 - 3)?
        .parse()
        .ok()
}

/// Pids inside namespace `netns` (`ip netns pids`), never our own.
pub fn netns_pids(netns: &str) -> Vec<i32> {
    let me = std::process::id() as i32;
    ip(&["netns", "pids", netns])
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .filter(|&p| p > 1 && p != me)
        .collect()
}

/// Removes everything of run `id`: SIGKILLs `tracked` pids (with their descendants) and every
/// process left inside the run's namespaces, deletes the namespaces, the veths and the bridge,
/// then the owner file. Never panics (it runs from `Drop`); returns what went wrong.
pub fn remove_run(id: &str, tracked: &[i32]) -> Vec<String> {
    let mut errors = Vec::new();
    let mut killed: Vec<i32> = tracked.iter().flat_map(|&p| kill_tree(p)).collect();
    let namespaces = run_namespaces(id);
    for ns in &namespaces {
        for pid in netns_pids(ns) {
            signal(pid, Signal::SIGKILL);
            killed.push(pid);
        }
    }
    // A namespace outlives `ip netns del` while a process still runs in it: wait for them.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive: Vec<i32> = killed.iter().copied().filter(|&p| pid_alive(p)).collect();
        if alive.is_empty() {
            break;
        }
        if Instant::now() >= deadline {
            errors.push(format!(
                "run {id}: pids still alive after SIGKILL: {alive:?}"
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval of a bounded wait
    }
    for ns in &namespaces {
        if let Err(e) = ip(&["netns", "del", ns]) {
            errors.push(e);
        }
    }
    // Deleting a namespace destroys its eth0 and with it the veth's root end, but the kernel
    // does that asynchronously: delete what is still listed, ignore what vanished meanwhile.
    for link in run_links(id) {
        if let Err(e) = ip(&["link", "del", &link]) {
            if Path::new(SYS_NET_DIR).join(&link).exists() {
                errors.push(e);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while !(run_namespaces(id).is_empty() && run_links(id).is_empty()) {
        if Instant::now() >= deadline {
            errors.push(format!(
                "run {id}: still present after teardown: {:?}",
                leftovers(id)
            ));
            break;
        }
        std::thread::sleep(Duration::from_millis(20)); // poll interval of a bounded wait
    }
    let registry = registry_path(id);
    if let Err(e) = fs::remove_file(&registry) {
        if registry.exists() {
            errors.push(format!("remove {}: {e}", registry.display()));
        }
    }
    errors
}

/// Removes the leftovers of every earlier run whose owner process is gone (a crashed or killed
/// test): call it at the start of a run. Runs of live processes are never touched. Returns the
/// ids removed; problems are printed, not raised, so one stuck leftover does not fail a run
/// that would not collide with it anyway (ids and subnets of live leftovers are avoided).
pub fn sweep_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    // Objects are listed before owner files are read: a run writes its file before it creates
    // anything, so a run being created right now is seen as alive.
    for id in all_run_ids() {
        if read_owner(&id).is_some_and(|o| o.alive()) {
            continue;
        }
        eprintln!(
            "[netns] sweeping leftovers of dead run {id}: {:?}",
            leftovers(&id)
        );
        for e in remove_run(&id, &[]) {
            eprintln!("[netns] sweep of run {id}: {e}");
        }
        removed.push(id);
    }
    removed
}
