//! The interface outside systems depend on: payloads, topic names, how timestamps are
//! written, and the parsing of what arrives (sightings, plates, identity numbers). Pure: no
//! I/O.

pub mod decode;
pub mod model;
pub mod person_id;
pub mod plate;
pub mod task;
pub mod timestamp;
