//! Length-prefixed frames: `frame::decode` walking a buffer, the same bytes arriving in chunks,
//! and `frame::read_frame` over short reads must all find the same frames and the same end.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| codec_checks::check_frames(data));
