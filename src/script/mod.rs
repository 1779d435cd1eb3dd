//! The Rhai surface: the engine and its limits, the bridge to async HTTP, and the registered functions.

pub mod arguments;
pub mod bridge;
pub mod bulk_input;
pub mod diagnostic;
pub mod docs;
pub mod engine;
pub mod listing;
pub mod packages;
pub mod stock;
pub mod types;
pub mod watchdog;

pub use engine::Session;
