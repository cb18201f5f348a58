//! Matching a sighting against the flagged targets: the copy-on-write hotlist and the live
//! snapshot the pipeline reads, and the sweep index over targets' known locations.

pub mod hotlist;
pub mod sweep;
pub mod targets;
