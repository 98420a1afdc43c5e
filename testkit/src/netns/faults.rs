//! Network faults inside one host's namespace, as nft rules in a table of our own.
//!
//! The table (`inet pgwchaos`) holds two address sets, `drop_from` (input) and `drop_to`
//! (output), and drops every packet matching them, established connections included (no
//! `ct state` exception). Its chains hook in at priority -300, before conntrack, so a partition
//! leaves no conntrack state behind. Each change rewrites the whole table in one nft
//! transaction (`add` + `delete` + the new table), so applying the same faults twice is
//! harmless and a heal removes exactly what the harness added. ARP is not filtered: neighbours
//! stay resolved, only IP traffic is cut, as a firewall partition would.
//!
//! Dropping in the output hook does not make `connect()` fail fast: the SYN is retransmitted and
//! the caller times out as on a real partition (measured: a 3 s connect timeout expires).

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::process::Command;

/// The nft table the harness owns in each host namespace.
pub const CHAOS_TABLE: &str = "pgwchaos";

/// The addresses a host currently drops.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Faults {
    /// Packets from these addresses are dropped on input.
    pub drop_from: BTreeSet<Ipv4Addr>,
    /// Packets to these addresses are dropped on output.
    pub drop_to: BTreeSet<Ipv4Addr>,
}

impl Faults {
    /// Whether no fault is in place.
    pub fn is_empty(&self) -> bool {
        self.drop_from.is_empty() && self.drop_to.is_empty()
    }

    /// The nft script that replaces the table with these faults (or just removes it when there
    /// are none). `add table` first makes the `delete` succeed when the table does not exist
    /// (nft 1.0.6 in Debian 12 has no `destroy`).
    pub fn nft_script(&self) -> String {
        let mut script = format!("add table inet {CHAOS_TABLE}\ndelete table inet {CHAOS_TABLE}\n");
        if self.is_empty() {
            return script;
        }
        let set = |name: &str, addrs: &BTreeSet<Ipv4Addr>| {
            let elements = if addrs.is_empty() {
                String::new()
            } else {
                let list: Vec<String> = addrs.iter().map(Ipv4Addr::to_string).collect();
                format!(" elements = {{ {} }};", list.join(", "))
            };
            format!("  set {name} {{ type ipv4_addr;{elements} }}\n")
        };
        script.push_str(&format!("table inet {CHAOS_TABLE} {{\n"));
        script.push_str(&set("drop_from", &self.drop_from));
        script.push_str(&set("drop_to", &self.drop_to));
        script.push_str(
            "  chain input { type filter hook input priority -300; policy accept; \
             ip saddr @drop_from counter drop; }\n",
        );
        script.push_str(
            "  chain output { type filter hook output priority -300; policy accept; \
             ip daddr @drop_to counter drop; }\n}\n",
        );
        script
    }
}

/// Replaces the chaos table in namespace `netns` with `faults`, in one transaction.
pub fn apply(netns: &str, faults: &Faults) -> Result<(), String> {
    let script = faults.nft_script();
    super::names::run_tool(
        Command::new("ip")
            .args(["netns", "exec", netns, "nft"])
            .arg(&script),
    )
    .map(|_| ())
    .map_err(|e| format!("apply faults {faults:?} in {netns}: {e}\nscript:\n{script}"))
}

/// `nft list table inet pgwchaos` in `netns` (with counters), empty when there is no table.
pub fn list(netns: &str) -> String {
    super::names::run_tool(Command::new("ip").args([
        "netns",
        "exec",
        netns,
        "nft",
        "list",
        "table",
        "inet",
        CHAOS_TABLE,
    ]))
    .unwrap_or_default()
}

/// Packets dropped so far by the input and the output rule, read from nft's listing (0 when
/// the table does not exist).
pub fn drop_counters(listing: &str) -> (u64, u64) {
    let count = |set: &str| {
        listing
            .lines()
            .find(|l| l.contains(set))
            .and_then(|l| l.split("counter packets ").nth(1))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (count("@drop_from"), count("@drop_to"))
}
