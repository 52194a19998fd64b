//! Signature verification: every scheme, any headers and body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookrouter_core::fuzzing::verify(data));
