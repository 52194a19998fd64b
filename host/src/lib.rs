//! hookrouter
pub mod event;
pub mod plugins;
