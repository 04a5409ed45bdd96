//! taxgate: an authorization gateway for the new e-tax personal login.

pub mod authz;
