//! Programs built on the service: the self-contained demo and the load generator; and the
//! standard output every command writes its results to.

pub mod demo;
pub mod simulate;
pub mod stdout;
