#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| statsyard_fuzz::config_js(data));
