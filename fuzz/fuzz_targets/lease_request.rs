//! Fuzz target: see `bulwark_fuzz::lease_request` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulwark_fuzz::lease_request::check(data));
