//! pgwarden: PostgreSQL high availability agent.
pub mod config;
