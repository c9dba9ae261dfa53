#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| statsyard_fuzz::mapping_yaml(data));
