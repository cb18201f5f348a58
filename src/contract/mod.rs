//! The interface outside systems depend on: payloads, topic names, how timestamps are
//! written, and the parsing of what arrives (sightings, plates, identity numbers). Pure: no
//! I/O, no dependency on any other step. Also the [`clock::Clock`] every "now" is read
//! from, here so that every layer can take one.

pub mod clock;
pub mod decode;
pub mod model;
pub mod person_id;
pub mod plate;
pub mod task;
pub mod timestamp;
