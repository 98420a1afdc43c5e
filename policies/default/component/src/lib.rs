//! The default policy exported as a component. The export lives apart from the rules so
//! policies built on them (`zone-aware`, `strict-zero-loss`) can link the rules without a
//! second `decider` export.
#[cfg(target_arch = "wasm32")]
pgwarden_policy::export_policy!(pgwarden_policy_default::DefaultPolicy);
