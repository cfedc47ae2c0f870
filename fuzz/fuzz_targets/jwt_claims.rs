//! Fuzz target: see `bulwark_fuzz::jwt_claims` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: bulwark_fuzz::jwt_claims::Input| {
    bulwark_fuzz::jwt_claims::check(&input)
});
