//! leadrelay: routes sightings of flagged debtors' vehicles and persons to the command
//! center of the court that can act on them.
//!
//! (Crate doc with the data-flow drawing is filled in as modules land.)

pub mod check;
pub mod cli;
pub mod datum;
pub mod decode;
pub mod geodata;
pub mod hotlist;
pub mod locate;
pub mod metrics;
pub mod model;
pub mod person_id;
pub mod plate;
pub mod route;
pub mod store;
pub mod task;
pub mod workflow;
