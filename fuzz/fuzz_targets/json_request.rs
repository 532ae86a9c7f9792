//! JSON requests (and, on the same bytes, JSON replies): decode, and round-trip what decodes.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| codec_checks::check_json_payload(data));
