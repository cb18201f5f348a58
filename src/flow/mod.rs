//! The running data flow: the ingest pipeline (batch, group commit, in-order acks) and the
//! timers (deadlines, housekeeping).

pub mod pipeline;
pub mod timers;
