//! The sensor port: split the bytes into lines, parse each as a command and as a reply, and
//! round-trip what parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| codec_checks::check_sensor_stream(data));
