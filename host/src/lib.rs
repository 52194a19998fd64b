//! hookrouter
