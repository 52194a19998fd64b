//! hookrouter

pub mod ingress;
