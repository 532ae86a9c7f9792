//! The pub/sub port: split the bytes into lines, parse each as a `SUBSCRIBE` command and as a
//! server line (`OK`, `ERR`, event), and round-trip what parses.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| codec_checks::check_pubsub_stream(data));
