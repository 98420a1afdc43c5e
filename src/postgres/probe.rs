//! Observing the local PostgreSQL: data directory, postmaster process, and SQL state.
//! Read-only; bounded by short timeouts so a hung server shows as "not answering".

use std::path::Path;
use std::time::Duration;

use super::controldata;
use super::settings::PgSettings;
use super::{process, PgError};
use crate::core::view::{
    DataDir, PendingParameter, PgObservation, ReplicationPeer, ServerObservation,
};
use crate::core::{Lsn, Timeline};

/// Look at the local PostgreSQL.
pub async fn observe(settings: &PgSettings) -> PgObservation {
    let data_dir = read_data_dir(settings).await;
    let postmaster_alive = postmaster_pid(&settings.data_dir).is_some_and(pid_alive);
    let (server, silent) = if postmaster_alive {
        match query_server(settings).await {
            Ok(server) => (Some(server), false),
            Err(PgError::Timeout { .. }) => (None, true),
            Err(_) => (None, false),
        }
    } else {
        (None, false)
    };
    PgObservation {
        data_dir,
        postmaster_alive,
        server,
        silent,
    }
}

/// The data directory's state.
pub async fn read_data_dir(settings: &PgSettings) -> DataDir {
    if !settings.data_dir.join("PG_VERSION").exists()
        || !settings.data_dir.join("global/pg_control").exists()
    {
        return DataDir::Empty;
    }
    match read_control_data(settings).await {
        Ok(cd) => DataDir::Initialized {
            sysid: cd.sysid,
            state: cd.state,
            timeline: cd.timeline,
            standby_signal: settings.data_dir.join("standby.signal").exists(),
        },
        Err(error) => {
            tracing::warn!(%error, "pg_controldata failed");
            DataDir::Unreadable(error.to_string())
        }
    }
}

/// Run `pg_controldata` on the data directory.
pub async fn read_control_data(settings: &PgSettings) -> Result<controldata::ControlData, PgError> {
    let args = vec!["-D".to_string(), settings.data_dir.display().to_string()];
    let text = process::run(
        &settings.bin("pg_controldata"),
        &args,
        &[],
        Duration::from_secs(10),
    )
    .await?;
    controldata::parse(&text).ok_or_else(|| {
        PgError::BadInput(format!(
            "pg_controldata on {}: unexpected output",
            settings.data_dir.display()
        ))
    })
}

/// PID of the postmaster from `postmaster.pid`.
pub fn postmaster_pid(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    text.lines().next()?.trim().parse().ok()
}

/// Whether a postmaster with this pid is running: the process exists, is not a zombie, and
/// is a PostgreSQL server (a stale `postmaster.pid` after a reboot may name a reused pid).
pub fn pid_alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the command name, which is in parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z") | Some("X") | None) {
        return false;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| String::from_utf8_lossy(&c).contains("postgres"))
        .unwrap_or(false)
}

/// Connect to the local server as the superuser.
pub async fn connect(
    settings: &PgSettings,
    timeout: Duration,
) -> Result<tokio_postgres::Client, PgError> {
    let mut config = tokio_postgres::Config::new();
    config
        .host(&settings.local_host)
        .port(settings.port)
        .user(&settings.superuser.username)
        .dbname("postgres")
        .application_name("pgwarden")
        .connect_timeout(timeout);
    if let Some(pw) = &settings.superuser.password {
        config.password(pw);
    }
    let (client, connection) = tokio::time::timeout(timeout, config.connect(tokio_postgres::NoTls))
        .await
        .map_err(|_| PgError::Timeout {
            what: "connect to local PostgreSQL".into(),
            after: timeout,
        })?
        .map_err(|source| PgError::Sql {
            what: "connect to local PostgreSQL".into(),
            source,
        })?;
    tokio::spawn(async move {
        let _ = connection.await; // ends with the client; errors surface on queries
    });
    Ok(client)
}

const STATE_QUERY: &str = "SELECT pg_is_in_recovery(), \
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE pg_current_wal_lsn()::text END, \
    CASE WHEN pg_is_in_recovery() THEN NULL ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END, \
    pg_last_wal_receive_lsn()::text, pg_last_wal_replay_lsn()::text, pg_last_xact_replay_timestamp()::text, \
    current_setting('synchronous_standby_names'), current_setting('server_version_num')::int, \
    pg_postmaster_start_time()::text, (SELECT timeline_id FROM pg_control_checkpoint())::int, \
    CASE WHEN pg_is_in_recovery() THEN pg_is_wal_replay_paused() ELSE false END";

/// Parameters whose new value waits for a restart: the value in effect, and the one the
/// configuration files set (their last line for it, which `pg_file_settings` marks "setting
/// could not be applied" exactly because it waits; read only when something is pending, as
/// `pg_file_settings` parses the files).
const PENDING_RESTART_QUERY: &str = "SELECT s.name, current_setting(s.name), \
    (SELECT f.setting FROM pg_file_settings f WHERE f.name = s.name \
     ORDER BY f.seqno DESC LIMIT 1) \
    FROM pg_settings s WHERE s.pending_restart ORDER BY s.name";

async fn query_server(settings: &PgSettings) -> Result<ServerObservation, PgError> {
    let timeout = Duration::from_secs(3);
    let client = connect(settings, timeout).await?;
    let sql = |what: &str| {
        let what = what.to_string();
        move |source| PgError::Sql { what, source }
    };
    let work = async {
        let row = client
            .query_one(STATE_QUERY, &[])
            .await
            .map_err(sql("state query"))?;
        let in_recovery: bool = row.get(0);
        let lsn = |i: usize| {
            row.get::<_, Option<String>>(i)
                .as_deref()
                .and_then(Lsn::parse)
        };
        let current = lsn(1);
        let received = lsn(3);
        let replayed = lsn(4);
        let checkpoint_tli: i32 = row.get(9);
        let mut obs = ServerObservation {
            in_recovery,
            timeline: Timeline(row.get::<_, Option<i32>>(2).unwrap_or(checkpoint_tli) as u32),
            wal_position: current.or(received.max(replayed)).unwrap_or_default(),
            received,
            replayed,
            replayed_timestamp: row.get(5),
            receiver_status: None,
            receiver_upstream: None,
            replication: Vec::new(),
            synchronous_standby_names: row.get(6),
            slots: Vec::new(),
            server_version: row.get::<_, i32>(7) as u32,
            postmaster_start_time: row.get(8),
            pending_restart: Vec::new(),
            replay_paused: row.get(10),
        };
        if in_recovery {
            let rows = client
                .query("SELECT status, sender_host, sender_port, received_tli FROM pg_stat_wal_receiver", &[])
                .await
                .map_err(sql("pg_stat_wal_receiver"))?;
            // A standby's checkpoint timeline lags until its next restartpoint. The WAL it
            // holds tells which timeline it has reached: a segment of timeline N exists only
            // once the standby received (or replayed into) WAL of N. A history file does not
            // say as much: the WAL receiver fetches it before asking to stream, and a standby
            // that holds WAL past the point where N forked keeps it while refusing N. Taking
            // the history file's word hid exactly that divergence.
            if let Some(tli) = newest_segment_timeline(&settings.data_dir) {
                obs.timeline = obs.timeline.max(tli);
            }
            if let Some(r) = rows.first() {
                obs.receiver_status = r.get(0);
                let host: Option<String> = r.get(1);
                let port: Option<i32> = r.get(2);
                obs.receiver_upstream = host.map(|h| format!("{h}:{}", port.unwrap_or_default()));
                if let Some(tli) = r.get::<_, Option<i32>>(3) {
                    obs.timeline = obs.timeline.max(Timeline(tli as u32));
                }
            }
        } else {
            let rows = client
                .query(
                    "SELECT application_name, state, sync_state, flush_lsn::text, replay_lsn::text, usename::text, host(client_addr), sync_priority, reply_time::text, pid FROM pg_stat_replication",
                    &[],
                )
                .await
                .map_err(sql("pg_stat_replication"))?;
            obs.replication = rows
                .iter()
                .map(|r| ReplicationPeer {
                    application_name: r.get::<_, Option<String>>(0).unwrap_or_default(),
                    state: r.get::<_, Option<String>>(1).unwrap_or_default(),
                    sync_state: r.get::<_, Option<String>>(2).unwrap_or_default(),
                    flush_lsn: r
                        .get::<_, Option<String>>(3)
                        .as_deref()
                        .and_then(Lsn::parse),
                    replay_lsn: r
                        .get::<_, Option<String>>(4)
                        .as_deref()
                        .and_then(Lsn::parse),
                    usename: r.get(5),
                    client_addr: r.get(6),
                    sync_priority: r.get::<_, Option<i32>>(7).unwrap_or_default(),
                    reply_time: r.get(8),
                    pid: r.get(9),
                })
                .collect();
        }
        let rows = client
            .query(
                "SELECT slot_name::text FROM pg_replication_slots WHERE slot_type = 'physical'",
                &[],
            )
            .await
            .map_err(sql("pg_replication_slots"))?;
        obs.slots = rows.iter().map(|r| r.get::<_, String>(0)).collect();
        // Not worth failing the probe for (that would report PostgreSQL down).
        match client.query(PENDING_RESTART_QUERY, &[]).await {
            Ok(rows) => {
                obs.pending_restart = rows
                    .iter()
                    .map(|r| PendingParameter {
                        name: r.get(0),
                        old_value: r.get(1),
                        new_value: r.get::<_, Option<String>>(2).unwrap_or_else(|| "?".into()),
                    })
                    .collect()
            }
            Err(error) => tracing::warn!(%error, "reading pending_restart parameters failed"),
        }
        Ok(obs)
    };
    tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| PgError::Timeout {
            what: "probe queries".into(),
            after: timeout,
        })?
}

/// The highest timeline of a WAL segment in `pg_wal` (`TTTTTTTTXXXXXXXXYYYYYYYY`, 24 hex
/// digits; `.partial` and `.history` files do not count).
fn newest_segment_timeline(data_dir: &Path) -> Option<Timeline> {
    std::fs::read_dir(data_dir.join("pg_wal"))
        .ok()?
        .flatten()
        .filter_map(|e| segment_timeline(&e.file_name().to_string_lossy()))
        .max()
}

/// The timeline of a WAL segment file name, `None` for any other file.
fn segment_timeline(name: &str) -> Option<Timeline> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u32::from_str_radix(&name[..8], 16).ok().map(Timeline)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_segment_names_carry_a_timeline() {
        assert_eq!(
            segment_timeline("00000002000000000000000A"),
            Some(Timeline(2))
        );
        assert_eq!(
            segment_timeline("0000001F0000000100000003"),
            Some(Timeline(31))
        );
        assert_eq!(segment_timeline("00000003.history"), None);
        assert_eq!(segment_timeline("000000010000000000000004.partial"), None);
        assert_eq!(segment_timeline("archive_status"), None);
        assert_eq!(segment_timeline("00000001000000000000000G"), None);
    }

    #[test]
    fn a_fetched_history_file_does_not_raise_the_timeline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let wal = dir.path().join("pg_wal");
        std::fs::create_dir_all(&wal).expect("write into the temp dir");
        assert_eq!(newest_segment_timeline(dir.path()), None);
        std::fs::write(wal.join("000000010000000000000003"), b"").expect("write into the temp dir");
        std::fs::write(
            wal.join("00000002.history"),
            b"1\t0/3000060\tno recovery target\n",
        )
        .expect("write into the temp dir");
        assert_eq!(newest_segment_timeline(dir.path()), Some(Timeline(1)));
        std::fs::write(wal.join("000000020000000000000003"), b"").expect("write into the temp dir");
        assert_eq!(newest_segment_timeline(dir.path()), Some(Timeline(2)));
    }
}
