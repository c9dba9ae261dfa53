#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| statsyard_fuzz::dogstatsd_check(data));
