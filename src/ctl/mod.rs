//! Operator commands behind `pgwardenctl` (patronictl's equivalents). They read the lock
//! store directly, like patronictl, so they work while agents are down.

pub mod list;
