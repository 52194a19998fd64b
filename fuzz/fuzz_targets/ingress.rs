//! The ingress path from headers and body to an `Event`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookrouter_core::fuzzing::ingress(data));
