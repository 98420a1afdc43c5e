//! The contract's data, as plain Rust: one type per WIT type of `pgwarden:policy/types@0.1.0`,
//! field for field. The host builds these, policies decide on them, and traces store them.
//! Nothing here does IO.

#[cfg(feature = "serde")]
use serde::{Deserialize, Serialize};

/// What a member's PostgreSQL is, as it reports itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Role {
    /// Read-write PostgreSQL.
    Primary,
    /// A standby.
    Replica,
    /// The leader of a standby cluster.
    StandbyLeader,
    /// Not known.
    Unknown,
}

/// `synchronous_mode` (`Strict`: `synchronous_mode_strict`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum SynchronousMode {
    /// Asynchronous replication.
    Off,
    /// Synchronous replication, writes continue without a standby.
    On,
    /// Synchronous replication, writes block without a standby.
    Strict,
    /// `ANY n` quorum commit.
    Quorum,
}

impl SynchronousMode {
    /// Any synchronous mode.
    pub fn is_synchronous(self) -> bool {
        self != SynchronousMode::Off
    }
}

/// One member of the cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct Member {
    /// Member name.
    pub name: String,
    /// What its PostgreSQL is.
    pub role: Role,
    /// Patroni's state text (`running`, `streaming`, `stopped`, ...).
    pub state: String,
    /// Streaming from the leader.
    pub streaming: bool,
    /// Timeline, when known.
    pub timeline: Option<u32>,
    /// WAL received (a primary: its write position).
    pub received_lsn: Option<u64>,
    /// WAL replayed (a primary: its write position).
    pub replayed_lsn: Option<u64>,
    /// Bytes behind the leader's last known position.
    pub lag_bytes: Option<u64>,
    /// Tags, values as text.
    pub tags: Vec<(String, String)>,
    /// Recorded in `/sync`.
    pub is_sync: bool,
    /// `failover_priority` (≤ 0: never leads).
    pub failover_priority: i64,
    /// Milliseconds since its member key was last written.
    pub heartbeat_age_ms: Option<u64>,
    /// Answered the host's REST probe (`None`: not probed).
    pub reachable: Option<bool>,
}

impl Member {
    /// A tag's value.
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// A boolean tag (`true`/`false`, as YAML writes them); absent or unparsable is false.
    pub fn flag(&self, key: &str) -> bool {
        self.tag(key)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    /// Best known WAL position: the larger of received and replayed.
    pub fn wal_position(&self) -> Option<u64> {
        match (self.received_lsn, self.replayed_lsn) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        }
    }

    /// May lead at all: `failover_priority` > 0 and no `nofailover` tag.
    pub fn can_lead(&self) -> bool {
        self.failover_priority > 0 && !self.flag("nofailover")
    }

    /// May be a synchronous standby: no `nosync` or `nostream` tag and `sync_priority`
    /// (default 1) > 0.
    pub fn can_be_sync(&self) -> bool {
        !self.flag("nosync") && !self.flag("nostream") && self.sync_priority() > 0
    }

    /// `sync_priority` (default 1): the higher, the more preferred as synchronous standby.
    pub fn sync_priority(&self) -> i64 {
        self.tag("sync_priority")
            .and_then(|p| p.parse::<i64>().ok())
            .unwrap_or(1)
    }

    /// Answered a probe and reports a running read-write PostgreSQL.
    pub fn is_live_primary(&self) -> bool {
        self.reachable == Some(true) && self.role == Role::Primary && self.state == "running"
    }
}

/// The leader lease.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct Lease {
    /// Member named in the leader key.
    pub holder: Option<String>,
    /// The calling node holds it.
    pub mine: bool,
    /// For our own lease: milliseconds left before the demotion deadline.
    pub time_left_ms: Option<u64>,
}

/// The `params` entry in which the host passes `/sync.quorum` in quorum mode.
pub const SYNC_QUORUM_PARAM: &str = "pgwarden.sync_quorum";

/// Dynamic configuration values, in milliseconds and bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct Config {
    /// `ttl`.
    pub ttl_ms: u64,
    /// `loop_wait`.
    pub loop_wait_ms: u64,
    /// `retry_timeout`.
    pub retry_timeout_ms: u64,
    /// `maximum_lag_on_failover`.
    pub maximum_lag_on_failover: u64,
    /// `maximum_lag_on_syncnode` (`None`: unlimited).
    pub maximum_lag_on_syncnode: Option<u64>,
    /// `synchronous_mode`.
    pub synchronous_mode: SynchronousMode,
    /// `synchronous_node_count`.
    pub synchronous_node_count: u32,
    /// `check_timeline`.
    pub check_timeline: bool,
    /// `policy.params`.
    pub params: Vec<(String, String)>,
}

impl Config {
    /// A policy parameter.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

impl Default for Config {
    /// Patroni's defaults.
    fn default() -> Config {
        Config {
            ttl_ms: 30_000,
            loop_wait_ms: 10_000,
            retry_timeout_ms: 10_000,
            maximum_lag_on_failover: 1_048_576,
            maximum_lag_on_syncnode: None,
            synchronous_mode: SynchronousMode::Off,
            synchronous_node_count: 1,
            check_timeline: false,
            params: Vec::new(),
        }
    }
}

/// A manual switchover or failover.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct Switchover {
    /// Leader to move away from (`None`: failover).
    pub leader: Option<String>,
    /// Member to promote (`None`: the healthiest).
    pub candidate: Option<String>,
    /// The operator overrides the policy's refusals.
    pub override_policy: bool,
}

/// Everything a policy may look at.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct ClusterView {
    /// The host's monotonic clock, milliseconds.
    pub now_ms: u64,
    /// The calling node.
    pub me: String,
    /// Every member, sorted by name.
    pub members: Vec<Member>,
    /// The leader lease.
    pub lease: Lease,
    /// The last leader the host saw, as last seen.
    pub last_leader: Option<Member>,
    /// For how long the leader key has been free.
    pub leaderless_ms: Option<u64>,
    /// Timeline according to `/history`.
    pub cluster_timeline: Option<u32>,
    /// The leader's last published WAL position.
    pub leader_lsn: Option<u64>,
    /// The leader that recorded `/sync`.
    pub sync_leader: Option<String>,
    /// Members recorded in `/sync`.
    pub sync_standbys: Vec<String>,
    /// A pending manual switchover or failover.
    pub switchover: Option<Switchover>,
    /// Dynamic configuration.
    pub config: Config,
}

impl ClusterView {
    /// A member by name.
    pub fn member(&self, name: &str) -> Option<&Member> {
        self.members.iter().find(|m| m.name == name)
    }

    /// The calling node's own entry.
    pub fn myself(&self) -> Option<&Member> {
        self.member(&self.me)
    }

    /// Whether `/sync` lets `name` become leader under synchronous mode: it recorded the
    /// set, or is in it (an empty `/sync` restricts nothing).
    pub fn sync_allows(&self, name: &str) -> bool {
        match &self.sync_leader {
            None => true,
            Some(leader) => leader == name || self.sync_standbys.iter().any(|s| s == name),
        }
    }

    /// `/sync.quorum` in quorum mode: votes a candidate needs (passed by the host as the
    /// parameter [`SYNC_QUORUM_PARAM`] until the contract has a field for it).
    pub fn sync_quorum(&self) -> Option<u32> {
        self.config.param(SYNC_QUORUM_PARAM)?.parse().ok()
    }

    /// Members other than the calling node.
    pub fn others(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().filter(move |m| m.name != self.me)
    }
}

/// What happened.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Event {
    /// Periodic wake-up.
    Tick,
    /// The leader key is free and the members were probed: race or not?
    Election,
    /// This member's leader key disappeared.
    LeaderExpired(String),
    /// The leader key is now held by this member.
    LeaderChanged(String),
    /// This node won the leader key.
    LeaseAcquired,
    /// This node lost the leader key.
    LeaseLost,
    /// This member's lag passed `maximum_lag_on_failover`.
    LagExceeded(String),
    /// This member's lag is back under it.
    LagRecovered(String),
    /// `/sync` now records these standbys.
    SyncChanged(Vec<String>),
    /// A member key appeared.
    MemberJoined(String),
    /// A member key disappeared.
    MemberLeft(String),
    /// Local PostgreSQL stopped answering.
    PostgresDown,
    /// Local PostgreSQL answers again.
    PostgresUp,
    /// The lock store did not answer.
    StoreUnreachable(String),
    /// The lock store answers again.
    StoreReachable,
    /// An operator asked for a switchover or failover.
    SwitchoverRequested(Switchover),
}

impl Event {
    /// The WIT case name, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Tick => "tick",
            Event::Election => "election",
            Event::LeaderExpired(_) => "leader-expired",
            Event::LeaderChanged(_) => "leader-changed",
            Event::LeaseAcquired => "lease-acquired",
            Event::LeaseLost => "lease-lost",
            Event::LagExceeded(_) => "lag-exceeded",
            Event::LagRecovered(_) => "lag-recovered",
            Event::SyncChanged(_) => "sync-changed",
            Event::MemberJoined(_) => "member-joined",
            Event::MemberLeft(_) => "member-left",
            Event::PostgresDown => "postgres-down",
            Event::PostgresUp => "postgres-up",
            Event::StoreUnreachable(_) => "store-unreachable",
            Event::StoreReachable => "store-reachable",
            Event::SwitchoverRequested(_) => "switchover-requested",
        }
    }
}

/// Whether to race for the leader key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Race {
    /// Try to take the key.
    Race,
    /// Do not race, and why.
    StandDown(String),
    /// Ask again later.
    Wait(Wait),
}

/// A postponed race.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct Wait {
    /// Milliseconds (the host caps it at `ttl`).
    pub delay_ms: u64,
    /// Why.
    pub reason: String,
}

/// What to do with the local primary.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub enum Fence {
    /// Nothing.
    None,
    /// Clean demotion.
    Demote(String),
    /// Immediate stop.
    Fence(String),
}

/// The answer to one event.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct Decision {
    /// Race or not.
    pub race: Race,
    /// Members in promotion preference order.
    pub preference: Vec<String>,
    /// What to do with the local primary.
    pub fence: Fence,
    /// The synchronous standbys the leader should have (`None`: the host's choice).
    pub sync_standbys: Option<Vec<String>>,
}

impl Decision {
    /// Stand down with a reason, no fence, no preference, keep the sync set.
    pub fn stand_down(reason: impl Into<String>) -> Decision {
        Decision {
            race: Race::StandDown(reason.into()),
            preference: Vec::new(),
            fence: Fence::None,
            sync_standbys: None,
        }
    }
}

/// What a policy says about itself.
#[derive(Clone, Debug, PartialEq, Eq)]
#[cfg_attr(
    feature = "serde",
    derive(Serialize, Deserialize),
    serde(rename_all = "kebab-case")
)]
pub struct Info {
    /// Short name.
    pub name: String,
    /// Its own version.
    pub version: String,
    /// One sentence.
    pub description: String,
}

/// Log levels of the `host.log` import.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Debug.
    Debug,
    /// Info.
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
}
