//! The chaos suite's network layer (testkit/src/netns.rs): namespaces on a bridge, nft
//! partitions inside a namespace, teardown and the sweep of crashed runs. Needs root (CI runs
//! as root); takes a few seconds.

use pgwarden_testkit as support;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::netns::{
    leftovers, probe_from_root, read_owner, registry_path, run_id_of, subnet_clashes,
    sweep_leftovers, Host, Owner, Reach, Topology, PYTHON,
};
use support::process::{is_root, pid_alive, run_capture, runner_command, runner_ids};

/// Where the test servers listen inside each host.
const ECHO_PORT: u16 = 7000;
/// How long a probe waits before calling a path dropped.
const DROP_TIMEOUT: Duration = Duration::from_secs(1);

/// Echoes every byte back, one thread per connection.
const ECHO_SERVER: &str = r#"
import socket, sys, threading
server = socket.create_server((sys.argv[1], int(sys.argv[2])))
def serve(conn):
    with conn:
        while data := conn.recv(4096):
            conn.sendall(data)
while True:
    conn, _ = server.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"#;

/// Checks that this run can create namespaces (root, ip, nft); a missing prerequisite fails
/// the test rather than skipping it.
fn require_namespaces() {
    assert!(
        is_root(),
        "network namespaces need root: run the netns tests as root, as CI does"
    );
    for tool in [["ip", "-V"], ["nft", "--version"]] {
        let out = run_capture(Command::new(tool[0]).arg(tool[1]), Duration::from_secs(10));
        assert!(
            out.success(),
            "`{}` is needed (Debian: iproute2, nftables): {out:?}",
            tool[0]
        );
    }
}

/// Starts the echo server inside `host` and waits until the root namespace reaches it.
fn start_echo(host: &Host) -> i32 {
    let mut cmd = host.command(PYTHON);
    cmd.args([
        "-c",
        ECHO_SERVER,
        &host.addr().to_string(),
        &ECHO_PORT.to_string(),
    ]);
    let pid = host.spawn(&mut cmd).expect("spawn the echo server");
    support::wait_until(Duration::from_secs(10), "echo server listening", || {
        (probe_from_root(host.socket(ECHO_PORT), DROP_TIMEOUT) == Reach::Open).then_some(())
    });
    pid
}

/// One round trip on `stream`: sends `word`, expects it back within `timeout`.
fn echo(stream: &mut TcpStream, word: &[u8], timeout: Duration) -> Result<(), String> {
    stream.write_all(word).map_err(|e| format!("write: {e}"))?;
    read_echo(stream, word, timeout)
}

/// Reads `word` back from `stream` within `timeout`.
fn read_echo(stream: &mut TcpStream, word: &[u8], timeout: Duration) -> Result<(), String> {
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| format!("set_read_timeout: {e}"))?;
    let mut buf = vec![0u8; word.len()];
    stream
        .read_exact(&mut buf)
        .map_err(|e| format!("read: {e}"))?;
    if buf == word {
        Ok(())
    } else {
        Err(format!("echoed {buf:?}, sent {word:?}"))
    }
}

/// Asserts what `from` finds at each target's echo port.
fn expect_from(from: &Host, targets: &[&Host], expected: &Reach) {
    let sockets: Vec<SocketAddrV4> = targets.iter().map(|h| h.socket(ECHO_PORT)).collect();
    let found = from.probe_tcp(&sockets, DROP_TIMEOUT);
    for (target, reach) in targets.iter().zip(&found) {
        assert_eq!(
            reach,
            expected,
            "{} -> {} ({}); chaos table of {}:\n{}\nchaos table of {}:\n{}",
            from.name(),
            target.name(),
            target.addr(),
            from.name(),
            from.fault_rules(),
            target.name(),
            target.fault_rules()
        );
    }
}

fn net_ns_of(pid: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/ns/net"))
        .map(|p| p.display().to_string())
        .unwrap_or_else(|e| format!("({e})"))
}

/// `uid` of `pid` as /proc/<pid>/status reports it (real uid).
fn uid_of(pid: i32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn names_and_owner_files() {
    assert_eq!(run_id_of("pgwc1a2b"), Some("1a2b".to_string()));
    assert_eq!(run_id_of("pgwc1a2bv3"), Some("1a2b".to_string()));
    assert_eq!(run_id_of("pgwc1a2b-node1"), Some("1a2b".to_string()));
    assert_eq!(run_id_of("pgwc1a2b.run"), Some("1a2b".to_string()));
    assert_eq!(run_id_of("pgwc1A2b"), None, "uppercase is not ours");
    assert_eq!(run_id_of("pgwc1a"), None);
    assert_eq!(run_id_of("eth0"), None);
    let owner = Owner {
        pid: 42,
        start: 123_456,
        octet: 7,
        label: "chaos".to_string(),
    };
    assert_eq!(Owner::parse(&owner.render()), Some(owner));
    assert_eq!(Owner::parse("pid=1\n"), None);
    let me = Owner::me(9, "me");
    assert!(me.alive(), "this process owns a live run");
    let reused = Owner {
        start: me.start + 1,
        ..me
    };
    assert!(!reused.alive(), "same pid, other start time: a reused pid");
}

#[test]
fn subnet_clash_detection() {
    let addrs = "4: eth0    inet 192.0.2.2/24 brd 192.0.2.255 scope global eth0\n\
                 7: br0    inet 10.231.5.1/24 scope global br0";
    assert!(subnet_clashes(addrs, 5));
    assert!(!subnet_clashes(addrs, 6));
    assert!(subnet_clashes("10.231.7.0/25 dev x", 7), "part of our /24");
    assert!(subnet_clashes("10.231.0.0/16 dev x", 200), "all of 10.231");
    assert!(
        !subnet_clashes("10.0.0.0/8 via 192.0.2.1", 3),
        "broader: ours wins"
    );
    assert!(!subnet_clashes("default via 192.0.2.1 dev eth0", 3));
    assert!(
        subnet_clashes("local 10.231.3.9 dev lo", 3),
        "a bare address"
    );
}

#[test]
fn topology_partitions_and_heals() {
    require_namespaces();
    let _serial = support::shared::exclusive();
    let mut topo = Topology::create("netns-test");
    let id = topo.id().to_string();
    assert!(
        id.len() == 4 && format!("pgwc{id}v255").len() <= 15,
        "interface names must fit in 15 characters"
    );
    let a = topo.add_host("a");
    let b = topo.add_host("b");
    let c = topo.add_host("c");
    let root = topo.root_addr();
    topo.check_fabric();

    // `ip netns exec` execs: the child's pid is the program's, inside the namespace.
    let echo_pids: Vec<i32> = [&a, &b, &c].into_iter().map(start_echo).collect();
    for (host, &pid) in [&a, &b, &c].into_iter().zip(&echo_pids) {
        let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("read the server's exe");
        assert!(
            exe.to_string_lossy().contains("python3"),
            "pid {pid} is {exe:?}, not python: ip netns exec did not exec"
        );
        assert_ne!(net_ns_of(pid), net_ns_of(std::process::id() as i32));
        assert!(host.pids().contains(&pid), "{pid} not in {}", host.netns());
    }
    // The agents' way in: setpriv as postgres, wrapped into the namespace; setpriv execs too.
    let mut sleeper = a.wrap(&runner_command(Path::new("/bin/sleep"), Path::new("/tmp")));
    sleeper.arg("600");
    let sleeper_pid = a.spawn(&mut sleeper).expect("spawn sleep via setpriv");
    if let Some((uid, _)) = runner_ids() {
        support::wait_until(Duration::from_secs(5), "setpriv to exec sleep", || {
            (uid_of(sleeper_pid) == Some(uid)).then_some(())
        });
        assert_eq!(
            std::fs::read_to_string(format!("/proc/{sleeper_pid}/comm"))
                .expect("comm of the sleeper")
                .trim(),
            "sleep"
        );
    }

    // Everything reaches everything.
    expect_from(&a, &[&b, &c], &Reach::Open);
    expect_from(&b, &[&a, &c], &Reach::Open);
    let mut established =
        TcpStream::connect(SocketAddr::V4(a.socket(ECHO_PORT))).expect("root -> a connects");
    echo(&mut established, b"before", DROP_TIMEOUT).expect("echo from a before the partition");

    // Partition a from b and from the root namespace: both directions, existing connections
    // included; c is not affected.
    a.block(&[b.addr(), root]);
    expect_from(&a, &[&b], &Reach::Timeout);
    expect_from(&b, &[&a], &Reach::Timeout);
    expect_from(&a, &[&c], &Reach::Open);
    expect_from(&c, &[&a, &b], &Reach::Open);
    assert_eq!(
        probe_from_root(a.socket(ECHO_PORT), DROP_TIMEOUT),
        Reach::Timeout
    );
    assert_eq!(
        probe_from_root(c.socket(ECHO_PORT), DROP_TIMEOUT),
        Reach::Open
    );
    assert!(
        echo(&mut established, b"during", DROP_TIMEOUT).is_err(),
        "an established connection must stall during the partition"
    );

    // Heal: new connections work, and the stalled one delivers (dropped, not reset).
    a.heal();
    assert!(a.fault_rules().is_empty(), "heal leaves no chaos table");
    expect_from(&a, &[&b, &c], &Reach::Open);
    expect_from(&b, &[&a], &Reach::Open);
    assert_eq!(
        probe_from_root(a.socket(ECHO_PORT), DROP_TIMEOUT),
        Reach::Open
    );
    let started = Instant::now();
    read_echo(&mut established, b"during", Duration::from_secs(20))
        .expect("the stalled connection recovers after the heal (TCP retransmission)");
    eprintln!(
        "stalled connection recovered {:.1}s after the heal",
        started.elapsed().as_secs_f64()
    );

    // One way: a drops what it sends to c. TCP needs both directions, so both fail; the
    // counters show it is a's output that drops, and b is untouched.
    a.block_outgoing_to(&[c.addr()]);
    expect_from(&a, &[&c], &Reach::Timeout);
    expect_from(&c, &[&a], &Reach::Timeout);
    expect_from(&b, &[&a], &Reach::Open);
    let faults = a.faults();
    assert!(faults.drop_from.is_empty());
    assert_eq!(
        faults.drop_to.iter().copied().collect::<Vec<Ipv4Addr>>(),
        [c.addr()]
    );
    let rules = a.fault_rules();
    assert!(
        rules.contains(&c.addr().to_string()) && rules.contains("counter packets"),
        "{rules}"
    );
    let (dropped_in, dropped_out) = a.dropped_packets();
    assert!(dropped_in == 0 && dropped_out > 0, "{rules}");
    a.heal();
    expect_from(&c, &[&a], &Reach::Open);

    // The other way: a drops what c sends. c's SYN never gets an answer: a's output stays
    // silent, which only a drop on input explains.
    a.block_incoming_from(&[c.addr()]);
    expect_from(&c, &[&a], &Reach::Timeout);
    expect_from(&a, &[&c], &Reach::Timeout);
    let (dropped_in, dropped_out) = a.dropped_packets();
    assert!(dropped_in > 0 && dropped_out == 0, "{}", a.fault_rules());
    a.heal();
    expect_from(&a, &[&c], &Reach::Open);

    // Teardown removes every namespace, link and process of the run.
    assert!(!leftovers(&id).is_empty());
    drop(topo);
    assert_eq!(
        leftovers(&id),
        Vec::<String>::new(),
        "run {id} left objects"
    );
    for pid in echo_pids.iter().chain([&sleeper_pid]) {
        assert!(!pid_alive(*pid), "pid {pid} survived the teardown");
    }
}

/// A run with one host and a process in it, as a test about to crash would leave it.
fn doomed_run(label: &str) -> (Topology, i32) {
    let mut topo = Topology::create(label);
    let host = topo.add_host("x");
    let mut cmd = host.command("/bin/sleep");
    cmd.arg("600");
    let pid = host.spawn(&mut cmd).expect("spawn sleep in the doomed run");
    (topo, pid)
}

/// Leaves `topo` behind as a crashed run would: never torn down, owner gone. The owner file
/// keeps our pid with another start time, which is also how a reused pid looks.
fn crash(topo: Topology) -> String {
    let id = topo.id().to_string();
    let mut owner = read_owner(&id).expect("owner file of a live run");
    owner.start += 1;
    std::fs::write(registry_path(&id), owner.render()).expect("rewrite the owner file");
    std::mem::forget(topo);
    id
}

#[test]
fn sweeps_remove_dead_runs_only() {
    require_namespaces();
    // Topology::create sweeps too: keep the other test's runs out of this one's way.
    let _serial = support::shared::exclusive();
    let mut live = Topology::create("netns-sweep-live");
    live.add_host("keep");
    let (first, first_pid) = doomed_run("netns-sweep-victim-1");
    let (second, second_pid) = doomed_run("netns-sweep-victim-2");
    let (first, second) = (crash(first), crash(second));

    let removed = sweep_leftovers();
    for id in [&first, &second] {
        assert!(removed.contains(id), "run {id} not swept: {removed:?}");
        assert_eq!(leftovers(id), Vec::<String>::new(), "run {id}");
    }
    assert!(
        !removed.contains(&live.id().to_string()),
        "a live run was swept"
    );
    assert!(!pid_alive(first_pid) && !pid_alive(second_pid));

    // The script: same rules, idempotent, leaves live runs alone.
    let (third, third_pid) = doomed_run("netns-sweep-victim-3");
    let third = crash(third);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/chaos-net-clean");
    for round in 0..2 {
        let out = run_capture(&mut Command::new(&script), Duration::from_secs(60));
        assert!(out.success(), "chaos-net-clean round {round}: {out:?}");
    }
    assert_eq!(leftovers(&third), Vec::<String>::new());
    assert!(!pid_alive(third_pid), "the script killed the run's process");
    assert!(
        !leftovers(live.id()).is_empty(),
        "the script must not touch a live run"
    );
    live.check_fabric();
}
