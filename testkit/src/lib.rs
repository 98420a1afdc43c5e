//! Integration-test harness: real etcd, real PostgreSQL 15 and pgwarden agents on loopback.
//!
//! A library of the workspace, compiled once; the test binaries and benches name it
//! `support` (`use pgwarden_testkit as support;`).

pub mod chaos;
pub mod cluster;
pub mod etcd;
pub mod guests;
pub mod haproxy;
pub mod http;
pub mod netns;
pub mod process;
pub mod shared;
pub mod sql;
pub mod tls;

pub use cluster::{Cluster, ClusterBuilder, NodeSpec};
pub use etcd::{EtcdCluster, Kv};
pub use process::{wait_check, wait_until};
pub use sql::{AckWriter, WriterReport};
