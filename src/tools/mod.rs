//! Programs built on the service: the self-contained demo and the load generator.

pub mod demo;
pub mod simulate;
