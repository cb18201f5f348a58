//! The HTTP API: parse, call the application layer, serialise; who may call it (`auth`),
//! the audit of what they did (`audit`), and serving it with limits (`serve`); `scrapers` keeps
//! `/metrics` readable while the database cannot check tokens; `events` streams the consoles'
//! events.

pub mod audit;
pub mod auth;
pub mod events;
pub mod http;
pub mod scrapers;
pub mod serve;
pub mod shared;
