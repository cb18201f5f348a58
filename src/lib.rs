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
//!  operators ─► http (/api/v1) ─► store, targets          ops ─► /metrics /healthz /readyz
//! ```
//!
//! # Layout
//!
//! Pure steps (no I/O):
//! - [`datum`] — WGS-84 ⇄ GCJ-02 ⇄ BD-09, great-circle distance.
//! - [`plate`] — PRC plate normalisation, OCR-confusable classes, compact keys.
//! - [`person_id`] — resident identity numbers (ISO 7064 MOD 11-2).
//! - [`hotlist`] — sharded copy-on-write index of flagged plates and persons, fuzzy lookup.
//! - [`decode`] — raw MQTT payload → validated [`model::Sighting`], or a dead-letter reason.
//! - [`targets`] — the live hotlist snapshot and matching a sighting against it.
//! - [`locate`] — which court's area holds a point (grid + R-tree over real polygons).
//! - [`route`] — requesting court, assisting court, routing, distance.
//! - [`workflow`] — the task state machine.
//!
//! Data and contract:
//! - [`geodata`] — loading and validating jurisdictions (GeoJSON) and courts (CSV).
//! - [`check`] — `check-data`: cross-checks such as overlapping jurisdictions.
//! - [`model`], [`task`] — the contract's payloads and topic names; [`timestamp`] — how
//!   their timestamps are written.
//!
//! I/O:
//! - [`store`] — SQLite / PostgreSQL persistence, outbox, rules enforced in the database.
//! - [`mqtt`] — ingest (manual acks, persistent session) and the outbox publisher.
//! - [`pipeline`] — batches, group commit, in-order acks.
//! - [`http`] — the axum API. [`metrics`] — every Prometheus metric, in one place.
//! - [`broker`] — the embedded MQTT broker. [`service`] — wiring and graceful shutdown.
//! - [`config`], [`cli`], [`demo`] — settings, commands, the self-contained demo.
//! - [`simulate`] — the load generator and its check of what comes back (issue 5's benches).

pub mod broker;
pub mod check;
pub mod cli;
pub mod config;
pub mod datum;
pub mod decode;
pub mod demo;
pub mod geodata;
pub mod hotlist;
pub mod http;
pub mod locate;
pub mod metrics;
pub mod model;
pub mod mqtt;
pub mod person_id;
pub mod pipeline;
pub mod plate;
pub mod route;
pub mod service;
pub mod simulate;
pub mod status;
pub mod store;
pub mod targets;
pub mod task;
pub mod timers;
pub mod timestamp;
pub mod workflow;
