//! What a guest gets for one call: the store data of a fresh `Store` — the resource limiter
//! (memory cap, instance/table/memory counts, remembering a refused memory growth so a
//! following trap can be reported as a memory-limit failure) and the `host.log` import
//! (forwarded to `tracing`, attributed to the policy, with capped length and count).

use std::sync::Arc;

use wasmtime::{ResourceLimiter, StoreLimits, StoreLimitsBuilder};

use super::bindings::pgwarden::policy::{host, types};

/// Core instances a policy component may create (its module plus the adapter shims).
pub const MAX_INSTANCES: usize = 16;
/// Tables a policy component may create.
pub const MAX_TABLES: usize = 16;
/// Linear memories a policy component may create (the cap applies to each).
pub const MAX_MEMORIES: usize = 1;
/// Elements per table.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Longest log message forwarded, in bytes (longer ones are cut).
pub const MAX_LOG_MESSAGE_BYTES: usize = 1024;
/// Log lines forwarded per call (further ones are dropped and counted).
pub const MAX_LOG_LINES_PER_CALL: u32 = 32;

/// The store data of one call.
pub struct GuestState {
    policy: Arc<str>,
    /// The limiter installed with `Store::limiter`.
    pub limiter: GuestLimiter,
    log_lines: u32,
    warnings: Vec<String>,
}

impl GuestState {
    /// State for a call into `policy` with a memory cap of `memory_bytes`.
    pub fn new(policy: Arc<str>, memory_bytes: usize) -> GuestState {
        GuestState {
            policy,
            limiter: GuestLimiter::new(memory_bytes),
            log_lines: 0,
            warnings: Vec::new(),
        }
    }

    /// The warning and error lines the guest logged during the call (a policy's reasons for
    /// what it refused, e.g. a switchover; the host shows them where the decision is used).
    pub fn take_warnings(&mut self) -> Vec<String> {
        std::mem::take(&mut self.warnings)
    }

    /// Log lines the guest wrote but the host dropped (over [`MAX_LOG_LINES_PER_CALL`]).
    pub fn dropped_log_lines(&self) -> u32 {
        self.log_lines.saturating_sub(MAX_LOG_LINES_PER_CALL)
    }
}

/// [`StoreLimits`] plus a record of the memory growth it refused.
pub struct GuestLimiter {
    limits: StoreLimits,
    memory_bytes: usize,
    refused_growth: Option<usize>,
}

impl GuestLimiter {
    fn new(memory_bytes: usize) -> GuestLimiter {
        GuestLimiter {
            limits: StoreLimitsBuilder::new()
                .memory_size(memory_bytes)
                .memories(MAX_MEMORIES)
                .instances(MAX_INSTANCES)
                .tables(MAX_TABLES)
                .table_elements(MAX_TABLE_ELEMENTS)
                .build(),
            memory_bytes,
            refused_growth: None,
        }
    }

    /// The size (bytes) of the last memory growth that was refused, if any.
    pub fn refused_growth(&self) -> Option<usize> {
        self.refused_growth
    }

    /// The memory cap, bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }
}

impl ResourceLimiter for GuestLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum)?;
        if !allowed {
            self.refused_growth = Some(desired);
        }
        Ok(allowed)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.memory_grow_failed(error)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        self.limits.table_grow_failed(error)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl types::Host for GuestState {}

impl host::Host for GuestState {
    fn log(&mut self, level: host::Level, message: String) {
        self.log_lines = self.log_lines.saturating_add(1);
        if self.log_lines > MAX_LOG_LINES_PER_CALL {
            return;
        }
        let message = truncate(&message, MAX_LOG_MESSAGE_BYTES);
        if matches!(level, host::Level::Warn | host::Level::Error) {
            self.warnings.push(message.to_string());
        }
        let policy = &*self.policy;
        match level {
            host::Level::Debug => tracing::debug!(policy, "policy log: {message}"),
            host::Level::Info => tracing::info!(policy, "policy log: {message}"),
            host::Level::Warn => tracing::warn!(policy, "policy log: {message}"),
            host::Level::Error => tracing::error!(policy, "policy log: {message}"),
        }
    }
}

/// `text` cut to at most `max` bytes on a character boundary, marked when cut.
fn truncate(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if text.len() <= max {
        return text.into();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} bytes cut)", &text[..end], text.len() - end).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        assert_eq!(truncate("short", 10), "short");
        let cut = truncate("ééé", 3);
        assert!(cut.starts_with("é…"), "{cut}");
        assert!(cut.ends_with("(4 bytes cut)"), "{cut}");
    }

    #[test]
    fn log_lines_beyond_the_cap_are_dropped() {
        use host::Host as _;
        let mut state = GuestState::new("test".into(), 1 << 20);
        for _ in 0..MAX_LOG_LINES_PER_CALL + 5 {
            state.log(host::Level::Debug, "line".into());
        }
        assert_eq!(state.dropped_log_lines(), 5);
    }

    #[test]
    fn a_refused_growth_is_remembered() {
        let mut limiter = GuestLimiter::new(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 16, None).unwrap_or(false));
        assert_eq!(limiter.refused_growth(), None);
        assert!(!limiter
            .memory_growing(1 << 16, 2 << 20, None)
            .unwrap_or(true));
        assert_eq!(limiter.refused_growth(), Some(2 << 20));
    }
}
