//! Pool tests against a real cluster.
