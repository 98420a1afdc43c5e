//! Where the tools get a policy from: a component file, or the word `default` for the
//! component embedded in this binary, loaded by a [`PolicyEngine`] with the agent's limits
//! (or the ones given on the command line, like the `policy:` section of its configuration).

use std::path::Path;
use std::time::Duration;

use crate::policy::{LoadedPolicy, PolicyEngine, PolicyLimits, DEFAULT_POLICY_COMPONENT};
use crate::policy::{PolicyInfo, EMBEDDED_DEFAULT_LABEL};

/// The word naming the embedded default policy instead of a file.
pub const DEFAULT_WORD: &str = "default";

/// The sandbox limits of a policy call; the agent's defaults unless given.
#[derive(clap::Args, Debug, Clone)]
pub struct LimitArgs {
    /// Fuel per call, as `policy.fuel` of the agent's configuration.
    #[arg(long, value_name = "UNITS", default_value_t = PolicyLimits::default().fuel,
          value_parser = clap::value_parser!(u64).range(1..))]
    fuel: u64,
    /// Linear memory per call in MiB, as `policy.memory_mb`.
    #[arg(long, value_name = "MIB", default_value_t = default_memory_mb(),
          value_parser = clap::value_parser!(u64).range(1..=4096))]
    memory_mb: u64,
    /// Wall-time limit per call in milliseconds, as `policy.timeout_ms`. A busy machine may
    /// need more than the agent's default to replay without timeouts.
    #[arg(long, value_name = "MS", default_value_t = default_timeout_ms(),
          value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
}

fn default_memory_mb() -> u64 {
    u64::try_from(PolicyLimits::default().memory_bytes >> 20).unwrap_or(u64::MAX)
}

fn default_timeout_ms() -> u64 {
    u64::try_from(PolicyLimits::default().timeout.as_millis()).unwrap_or(u64::MAX)
}

impl LimitArgs {
    /// The limits asked for.
    pub fn limits(&self) -> PolicyLimits {
        PolicyLimits {
            fuel: self.fuel,
            memory_bytes: usize::try_from(self.memory_mb)
                .unwrap_or(usize::MAX)
                .saturating_mul(1 << 20),
            timeout: Duration::from_millis(self.timeout_ms),
        }
    }

    /// A policy engine running every call under these limits.
    pub fn engine(&self) -> anyhow::Result<PolicyEngine> {
        Ok(PolicyEngine::new(self.limits())?)
    }
}

/// Load `file` (or the embedded default when it is [`DEFAULT_WORD`]), refusing it when its
/// sha256 is not `expected_sha256`. The loader's errors name the file.
pub fn load(
    engine: &PolicyEngine,
    file: &Path,
    expected_sha256: Option<&str>,
) -> anyhow::Result<LoadedPolicy> {
    let loaded = if file == Path::new(DEFAULT_WORD) {
        engine.load_bytes(
            EMBEDDED_DEFAULT_LABEL,
            DEFAULT_POLICY_COMPONENT,
            expected_sha256,
        )
    } else {
        engine.load_file(file, expected_sha256)
    };
    Ok(loaded?)
}

/// `name version (source)`, how the tools name a loaded policy in headers.
pub fn describe(info: &PolicyInfo) -> String {
    format!("{} {} ({})", info.name, info.version, info.source)
}
