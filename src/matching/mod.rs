//! Matching a sighting against the flagged targets: the copy-on-write hotlist and the live
//! snapshot the pipeline reads.

pub mod hotlist;
pub mod targets;
