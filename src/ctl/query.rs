//! `pgwardenctl query`: SQL on a member chosen as patronictl chooses it (by name, or by
//! role: the leader by default), printed as patronictl prints it (`tsv` by default).

use std::time::Duration;

use tokio_postgres::SimpleQueryMessage;

use super::list::{self, Format};
use super::ops::RoleFilter;
use super::session::{timestamp, Session};
use crate::core::view::{ClusterView, MemberInfo};
use crate::postgres::conf::parse_conn_url;

/// How long connecting to a member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// `query`'s options, patronictl's.
#[derive(Clone, Debug)]
pub struct QueryOptions {
    /// The SQL to run (`-c`, or the text of `--file`).
    pub sql: String,
    /// The member to query.
    pub member: Option<String>,
    /// The role the member must have (default: the leader).
    pub role: Option<RoleFilter>,
    /// Database user (default: `PGUSER`, else the OS user, as libpq).
    pub username: Option<String>,
    /// Password (prompted with `--password`; else `PGPASSWORD`).
    pub password: Option<String>,
    /// Database (default: the one in the member's `conn_url`).
    pub dbname: Option<String>,
    /// Output format (patronictl's default for `query` is `tsv`).
    pub format: Format,
    /// The `tsv` column delimiter.
    pub delimiter: String,
    /// Run again every so often until interrupted.
    pub watch: Option<Duration>,
}

/// What one run printed: a header (absent for a message) and rows.
struct Answer {
    columns: Option<Vec<String>>,
    rows: Vec<Vec<Option<String>>>,
    failed: bool,
}

impl Session {
    /// `patronictl query`: runs the SQL and prints the rows; exits 1 when no member could be
    /// reached or the SQL failed (the message is printed as patronictl prints it).
    pub fn query(&self, options: &QueryOptions) -> anyhow::Result<bool> {
        loop {
            let started = std::time::Instant::now();
            let view = self.view()?;
            let answer = self.block_on(run(&view, options));
            print!("{}", render(&answer, options));
            let Some(every) = options.watch else {
                return Ok(!answer.failed);
            };
            std::thread::sleep(every.saturating_sub(started.elapsed()));
        }
    }
}

/// The members to try, in order: the one named, else by role (the leader first).
fn candidates<'a>(view: &'a ClusterView, options: &QueryOptions) -> Vec<&'a MemberInfo> {
    if let Some(name) = &options.member {
        return view.members.get(name).into_iter().collect();
    }
    let leader = view.leader_name();
    let mut members: Vec<&MemberInfo> = view.members.values().collect();
    members.sort_by_key(|m| Some(m.name.as_str()) != leader);
    match options.role.unwrap_or(RoleFilter::Leader) {
        RoleFilter::Leader | RoleFilter::Primary => members
            .into_iter()
            .filter(|m| Some(m.name.as_str()) == leader)
            .collect(),
        RoleFilter::Replica => members
            .into_iter()
            .filter(|m| Some(m.name.as_str()) != leader)
            .collect(),
        RoleFilter::Any => members,
    }
}

/// Connects to the first candidate whose PostgreSQL has the role asked for and runs the SQL.
async fn run(view: &ClusterView, options: &QueryOptions) -> Answer {
    let message = |text: String| Answer {
        columns: None,
        rows: vec![vec![Some(timestamp()), Some(text)]],
        failed: true,
    };
    let mut client = None;
    let mut last_error = None;
    // As patronictl: a role asked for is checked on the server; none asked, whoever the
    // member is (the leader by default) is queried as it is.
    let wanted_recovery = match options.role {
        None | Some(RoleFilter::Any) => None,
        Some(RoleFilter::Replica) => Some(true),
        Some(RoleFilter::Leader | RoleFilter::Primary) => Some(false),
    };
    for member in candidates(view, options) {
        let c = match connect(member, options).await {
            Ok(c) => c,
            Err(error) => {
                last_error = Some(format!("{}: {error}", member.name));
                continue;
            }
        };
        if let Some(want) = wanted_recovery {
            let in_recovery = c
                .query_one("SELECT pg_catalog.pg_is_in_recovery()", &[])
                .await
                .ok()
                .map(|row| row.get::<_, bool>(0));
            if in_recovery != Some(want) {
                continue;
            }
        }
        client = Some(c);
        break;
    }
    let Some(client) = client else {
        let text = match (&options.member, options.role) {
            (Some(member), _) => format!("No connection to member {member} is available"),
            (None, Some(role)) => format!("No connection to role {} is available", role.name()),
            (None, None) => "No reachable member for the cluster".to_string(),
        };
        // Why, when a connection failed (a wrong password reads differently from a
        // member of the wrong role).
        return message(match last_error {
            Some(error) => format!("{text} ({error})"),
            None => text,
        });
    };
    match client.simple_query(&options.sql).await {
        Ok(messages) => {
            let mut columns = None;
            let mut rows = Vec::new();
            for m in messages {
                match m {
                    SimpleQueryMessage::RowDescription(description) => {
                        // A later statement's rows replace an earlier one's (patronictl
                        // prints the last result).
                        columns = Some(description.iter().map(|c| c.name().to_string()).collect());
                        rows.clear();
                    }
                    SimpleQueryMessage::Row(row) => rows.push(
                        (0..row.len())
                            .map(|i| row.get(i).map(str::to_owned))
                            .collect(),
                    ),
                    _ => {}
                }
            }
            Answer {
                columns,
                rows,
                failed: false,
            }
        }
        Err(error) => {
            let code = error.code().map(|c| c.code().to_string());
            match code {
                Some(code) => message(format!("ERROR, SQLSTATE: {code}")),
                None => message(format!("ERROR: {error}")),
            }
        }
    }
}

async fn connect(
    member: &MemberInfo,
    options: &QueryOptions,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (host, port) = parse_conn_url(&member.conn_url).unwrap_or(("localhost".into(), 5432));
    let dbname = options
        .dbname
        .clone()
        .or_else(|| {
            member
                .conn_url
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('/'))
                .map(|(_, db)| db.split('?').next().unwrap_or_default().to_string())
                .filter(|db| !db.is_empty())
        })
        .unwrap_or_else(|| "postgres".into());
    let user = options
        .username
        .clone()
        .or_else(|| std::env::var("PGUSER").ok())
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "postgres".into());
    let mut config = tokio_postgres::Config::new();
    config
        .host(&host)
        .port(port)
        .user(&user)
        .dbname(&dbname)
        .application_name("pgwardenctl")
        .connect_timeout(CONNECT_TIMEOUT);
    if let Some(password) = options
        .password
        .clone()
        .or_else(|| std::env::var("PGPASSWORD").ok())
    {
        config.password(password);
    }
    let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        let _ = connection.await; // ends with the client
    });
    Ok(client)
}

/// The answer in the chosen format (a trailing newline included).
fn render(answer: &Answer, options: &QueryOptions) -> String {
    let cell = |v: &Option<String>| v.clone().unwrap_or_else(|| "None".into());
    let rows: Vec<Vec<String>> = answer
        .rows
        .iter()
        .map(|r| r.iter().map(cell).collect())
        .collect();
    // A message has no header of its own: named here (patronictl prints `[{}]` in JSON).
    let columns: Vec<&str> = match &answer.columns {
        Some(columns) => columns.iter().map(String::as_str).collect(),
        None => vec!["timestamp", "message"],
    };
    let text = match options.format {
        Format::Tsv => {
            let mut lines = Vec::new();
            if answer.columns.is_some() {
                lines.push(columns.join(&options.delimiter));
            }
            lines.extend(rows.iter().map(|r| r.join(&options.delimiter)));
            lines.join("\n")
        }
        Format::Json | Format::Yaml => {
            let values: Vec<Vec<serde_json::Value>> = answer
                .rows
                .iter()
                .map(|r| r.iter().map(|v| serde_json::json!(v)).collect())
                .collect();
            if options.format == Format::Json {
                list::json_records(&columns, &values, false)
            } else {
                list::yaml_records(&columns, &values, false)
            }
        }
        Format::Pretty | Format::Topology => list::pretty_table("", &columns, &rows, |_| false),
    };
    format!("{}\n", text.trim_end_matches('\n'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(format: Format) -> QueryOptions {
        QueryOptions {
            sql: String::new(),
            member: None,
            role: None,
            username: None,
            password: None,
            dbname: None,
            format,
            delimiter: "\t".into(),
            watch: None,
        }
    }

    #[test]
    fn rows_print_as_patronictl_prints_them() {
        let answer = Answer {
            columns: Some(vec!["id".into(), "note".into()]),
            rows: vec![
                vec![Some("1".into()), None],
                vec![Some("2".into()), Some("x".into())],
            ],
            failed: false,
        };
        assert_eq!(
            render(&answer, &options(Format::Tsv)),
            "id\tnote\n1\tNone\n2\tx\n"
        );
        assert_eq!(
            render(&answer, &options(Format::Json)),
            "[{\"id\": \"1\", \"note\": null}, {\"id\": \"2\", \"note\": \"x\"}]\n"
        );
        let pretty = render(&answer, &options(Format::Pretty));
        assert!(
            pretty.contains("| id | note |\n+----+------+\n| 1  | None |"),
            "{pretty}"
        );
    }

    #[test]
    fn a_message_prints_in_every_format() {
        let answer = Answer {
            columns: None,
            rows: vec![vec![
                Some("2026-12-07 12:00:00".into()),
                Some("ERROR, SQLSTATE: 42703".into()),
            ]],
            failed: true,
        };
        for format in [
            Format::Tsv,
            Format::Json,
            Format::Yaml,
            Format::Pretty,
            Format::Topology,
        ] {
            let text = render(&answer, &options(format));
            assert!(
                text.contains("ERROR, SQLSTATE: 42703"),
                "{format:?}: {text}"
            );
        }
        assert_eq!(
            render(&answer, &options(Format::Tsv)),
            "2026-12-07 12:00:00\tERROR, SQLSTATE: 42703\n",
            "tsv prints no header for a message, as patronictl"
        );
    }

    #[test]
    fn the_leader_is_asked_unless_a_member_or_role_is_named() {
        let mut view = ClusterView::default();
        for name in ["a", "b", "c"] {
            view.members.insert(
                name.into(),
                MemberInfo {
                    name: name.into(),
                    ..MemberInfo::default()
                },
            );
        }
        view.leader = Some(crate::core::view::LeaderKey {
            name: "b".into(),
            lease: 1,
            create_revision: crate::core::Revision(1),
        });
        let names = |o: &QueryOptions| -> Vec<String> {
            candidates(&view, o)
                .iter()
                .map(|m| m.name.clone())
                .collect()
        };
        let mut o = options(Format::Tsv);
        assert_eq!(names(&o), ["b"]);
        o.role = Some(RoleFilter::Replica);
        assert_eq!(names(&o), ["a", "c"]);
        o.role = Some(RoleFilter::Any);
        assert_eq!(names(&o), ["b", "a", "c"]);
        o.member = Some("c".into());
        assert_eq!(names(&o), ["c"]);
    }
}
