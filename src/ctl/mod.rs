//! Operator commands behind `pgwardenctl`: patronictl's equivalents, which read the lock
//! store directly so they work while agents are down, and the policy authoring tools.

pub mod commands;
pub mod edit;
pub mod info;
pub mod list;
pub mod ops;
pub mod policy;
pub mod query;
pub mod session;
pub mod why;
pub mod yaml;
