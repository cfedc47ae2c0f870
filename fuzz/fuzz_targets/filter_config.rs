//! Fuzz target: see `bulwark_fuzz::filter_config` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulwark_fuzz::filter_config::check(data));
