//! Fuzz target: see `bulwark_fuzz::jwks` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulwark_fuzz::jwks::check(data));
