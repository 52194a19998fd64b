//! hookrouter's pure parts, shared by the router (`host/`) and the fuzz targets.
//!
//! - [`event`]: the one `Event` type between the wire and the plugins, and `Action`.
//! - [`source`]: signature schemes ([`source::verify`]) and provider presets
//!   ([`source::presets`]), used by the config (to build verifiers) and by the
//!   ingress (to check requests).
//! - [`intake`]: a request's headers and body → the stored `Event`, or a `Rejection`.
//! - [`config`]: `router.toml`, its newtypes and `validate()`.
//! - [`forward_policy`]: which forwards may go where (with [`net`]: host
//!   entries and address classes).
//! - [`command_abi`]: the command-module ABI's stdout lines → actions.
//! - [`log_safe`]: request-derived text escaped for text logs.
//! - [`fuzzing`]: the entry points of the fuzz targets, also replayed as tests.
//!
//! Owns: everything that is a pure function of bytes, headers and the environment.
//! Never: opens a socket or a file other than the config it is asked to read,
//! spawns a thread, or links wasmtime.

pub mod command_abi;
pub mod config;
pub mod event;
pub mod forward_policy;
pub mod fuzzing;
pub mod intake;
pub mod json_scan;
pub mod log_safe;
pub mod net;
pub mod source;
