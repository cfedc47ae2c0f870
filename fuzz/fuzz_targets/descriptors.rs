//! Fuzz target: see `bulwark_fuzz::descriptors` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: bulwark_fuzz::descriptors::Input| {
    bulwark_fuzz::descriptors::check(&input)
});
