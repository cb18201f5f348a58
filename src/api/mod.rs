//! The HTTP API: parse, call the application layer, serialise; who may call it (`auth`) and
//! the audit of what they did (`audit`).

pub mod audit;
pub mod auth;
pub mod http;
pub mod shared;
