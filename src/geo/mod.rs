//! Where things are: datums, the jurisdictions and courts as loaded and checked, and point
//! location over them. Pure once loaded.

pub mod check;
pub mod datum;
pub mod geodata;
pub mod locate;
