//! Patroni-compatible configuration (placeholder, being written).
