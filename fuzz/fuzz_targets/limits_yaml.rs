//! Fuzz target: see `bulwark_fuzz::limits_yaml` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| bulwark_fuzz::limits_yaml::check(data));
