#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| mofo::fuzzing::token_ids_json(data));
