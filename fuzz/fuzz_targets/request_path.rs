#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| taxgate_fuzz::request_path(data));
