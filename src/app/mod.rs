//! The application layer: the context every entry point (MQTT, HTTP, timers, CLI) shares and
//! the actions they call.

pub mod status;
