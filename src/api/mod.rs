//! The HTTP API: parse, call the application layer, serialise.

pub mod http;
