//! leadrelay: routes sightings of flagged debtors' vehicles and persons to the command
//! center of the court that can act on them, within milliseconds, and tracks each task
//! until the car is seized or the person found.
//!
//! # Data flow
//!
//! ```text
//!  camera / plate feeds
//!        │ MQTT sightings/{source}                         command centers
//!        ▼                                                       ▲ dispatch/{court}/tasks|updates
//!  mqtt (ingest) ─► pipeline: decode ─► targets ─► locate ─► route ─► store ─► mqtt (publisher)
//!        ▲            (pure)    (match)   (pure)    (pure)   (group   (outbox,
//!        │                                                   commit)   PUBACK)
//!        └──────────── ack, only after the effect is durable ◄─┘
//!  command centers ─► dispatch/{court}/status ─► pipeline ─► workflow ─► store ─► publisher
//!  operators ─► http (/api/v1) ─► app actions ─► store, targets   ops ─► /metrics /healthz /readyz
//! ```
//!
//! # Layout
//!
//! Each folder is one layer; a module imports only from the layers listed before it.
//!
//! - [`clock`] — where every "now" comes from: the system clock, or a manual one in tests.
//! - [`geo`] — datums, jurisdictions and courts as loaded and checked, point location (pure).
//! - [`contract`] — the payloads, topics and timestamps outside systems rely on; decoding of
//!   sightings, plates and identity numbers (pure).
//! - [`dispatch`] — routing, the task state machine (pure).
//! - [`matching`] — the hotlist of flagged targets and matching a sighting against it (pure).
//! - [`metrics`] — every Prometheus metric, described once.
//! - [`store`] — SQLite / PostgreSQL persistence, the outbox, rules enforced in the database.
//! - [`mqtt`] — ingest (manual acks, persistent session), the outbox publisher, the embedded
//!   broker.
//! - [`app`] — the application context and the actions every entry point calls.
//! - [`flow`] — the ingest pipeline (batches, group commit, in-order acks), the deadline timers
//!   and housekeeping.
//! - [`api`] — the axum HTTP API.
//! - [`service`] — settings, wiring and graceful shutdown.
//! - [`tools`] — the self-contained demo and the load generator.
//! - [`cli`] — the commands of the binary.

pub mod api;
pub mod app;
pub mod cli;
pub mod clock;
pub mod contract;
pub mod dispatch;
pub mod flow;
pub mod geo;
pub mod matching;
pub mod metrics;
pub mod mqtt;
pub mod service;
pub mod store;
pub mod tools;
