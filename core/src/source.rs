//! Sources: how a provider signs its requests and where its events keep their
//! type and id.
//!
//! Owns: the signature schemes ([`verify`]) and the presets with their
//! extractors and envelopes ([`presets`]).
//! Never: reads the environment, the clock or the network.

pub mod presets;
pub mod verify;
