//! Fuzz target: see `bulwark_fuzz::jwt_verify` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulwark_fuzz::jwt_verify::check(data));
