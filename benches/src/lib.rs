//! Shared fixtures for the benches live here as they arrive.
