//! hookrouter's pure parts, shared by the router (`host/`) and the fuzz targets.
//!
//! - [`event`]: the one `Event` type between the wire and the plugins, and `Action`.
//! - [`source`]: signature schemes ([`source::verify`]) and provider presets
//!   ([`source::presets`]), used by the config (to build verifiers) and by the
//!   ingress (to check requests).
//! - [`config`]: `router.toml`, its newtypes and `validate()`.
//!
//! Owns: everything that is a pure function of bytes, headers and the environment.
//! Never: opens a socket or a file other than the config it is asked to read,
//! spawns a thread, or links wasmtime.

pub mod config;
pub mod event;
pub mod source;
