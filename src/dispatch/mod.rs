//! The dispatch rules, pure: which court requests and which assists, what a batch of matched
//! sightings does to tasks (`plan`), what the courts are told (`notify`), and how a task's
//! status may change.

pub mod notify;
pub mod plan;
pub mod policy;
pub mod route;
pub mod workflow;
