//! The one error type of the config module: a key path and what is wrong with its value.

/// A configuration value was refused.
///
/// `path` is where the bad value lives: a dotted key path such as `postgresql.listen` or
/// `bootstrap.dcs.ttl`, the name of the environment variable that supplied it (for example
/// `PATRONI_POSTGRESQL_LISTEN`), or a file path / `<yaml>` for syntax and IO errors. `message`
/// names the value and what was expected, so the operator can fix it without reading code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Key path, environment variable name, or source name.
    pub path: String,
    /// What was wrong, naming the offending value.
    pub message: String,
}

impl ConfigError {
    /// Builds an error for `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Joins a key onto a dotted path; an empty prefix yields the bare key.
pub(crate) fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_string()
    } else {
        format!("{prefix}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_path_colon_message() {
        let e = ConfigError::new("postgresql.listen", "\"0.0.0.0\" has no port");
        assert_eq!(e.to_string(), "postgresql.listen: \"0.0.0.0\" has no port");
    }

    #[test]
    fn join_handles_empty_prefix() {
        assert_eq!(join("", "ttl"), "ttl");
        assert_eq!(join("bootstrap.dcs", "ttl"), "bootstrap.dcs.ttl");
    }
}
