//! Registered Rhai functions, one module per domain.

pub mod admin;
pub mod audit;
pub mod data;
pub mod deprovision;
pub mod membership;
