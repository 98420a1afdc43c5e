//! pgwarden: PostgreSQL high availability agent, a drop-in for the Patroni agent.
//!
//! Rooms: `core` decides (pure, sans-IO); `dcs`, `postgres` and `api` are adapters;
//! `runtime` drives the core and executes its effects; `config` parses the Patroni YAML.
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod core;
pub mod ctl;
pub mod dcs;
pub mod logging;
pub mod policy;
pub mod postgres;
pub mod runtime;
pub mod telemetry;
pub mod tls;
pub mod watchdog;
