#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mofo::fuzzing::text_data(data));
