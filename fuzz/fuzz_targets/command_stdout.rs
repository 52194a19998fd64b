//! The command ABI's stdout parser, and the forward rule on what it returns.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookrouter_core::fuzzing::command_stdout(data));
