//! The running data flow: the ingest pipeline (batch, group commit, in-order acks), the
//! deadline timers and housekeeping.

pub mod housekeeping;
pub mod pipeline;
pub mod timers;
