//! `router.toml` parsing and validation.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookrouter_core::fuzzing::config(data));
