//! The HTTP API: parse, call the application layer, serialise; and serving it with limits.

pub mod http;
pub mod serve;
