//! Native unit tests of the default policy.
