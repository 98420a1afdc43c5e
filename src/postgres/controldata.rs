//! Reading `pg_controldata` output: system identifier, cluster state, checkpoint timeline.

use crate::core::view::ControlState;
use crate::core::Timeline;

/// The fields of pg_controldata the agent uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ControlData {
    /// "Database system identifier".
    pub sysid: String,
    /// "Database cluster state".
    pub state: ControlState,
    /// "Latest checkpoint's TimeLineID".
    pub timeline: Timeline,
}

/// Parse pg_controldata's text (C locale).
pub fn parse(text: &str) -> Option<ControlData> {
    let mut sysid = None;
    let mut state = None;
    let mut timeline = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key.trim() {
            "Database system identifier" => sysid = Some(value.to_string()),
            "Database cluster state" => {
                state = Some(match value {
                    "shut down" => ControlState::ShutDown,
                    "shut down in recovery" => ControlState::ShutDownInRecovery,
                    "in production" => ControlState::InProduction,
                    "in archive recovery" => ControlState::InArchiveRecovery,
                    other => ControlState::Other(other.to_string()),
                })
            }
            "Latest checkpoint's TimeLineID" => timeline = value.parse().ok().map(Timeline),
            _ => {}
        }
    }
    Some(ControlData {
        sysid: sysid?,
        state: state?,
        timeline: timeline?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_fields_we_need() {
        let text = "pg_control version number:            1300\n\
                    Database system identifier:           7441234567890123456\n\
                    Database cluster state:               shut down in recovery\n\
                    Latest checkpoint's TimeLineID:       3\n";
        let cd = parse(text).expect("parses");
        assert_eq!(cd.sysid, "7441234567890123456");
        assert_eq!(cd.state, ControlState::ShutDownInRecovery);
        assert_eq!(cd.timeline, Timeline(3));
        assert_eq!(parse("garbage"), None);
    }
}
