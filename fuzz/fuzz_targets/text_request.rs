//! Text alias requests (`RESERVE A 7ABC123`): decode, and round-trip what decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| codec_checks::check_text_payload(data));
