//! The application layer: the context every entry point (MQTT, HTTP, timers, CLI) shares and
//! the actions they call, one file per topic.

pub mod auth;
pub mod consolidation;
pub mod context;
pub mod locate;
pub mod status;
pub mod sweep;
pub mod targets;

pub use context::App;
