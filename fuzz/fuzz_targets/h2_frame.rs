//! The HTTP/2 frame decoder over arbitrary bytes: never panics, never
//! claims more bytes than it was given; header blocks go on through HPACK
//! and request validation, which must not panic either.
#![no_main]

use forklb::h2::{frame, headers, hpack};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, mut rest)) = data.split_first() else {
        return;
    };
    let max_frame = if pick & 1 == 0 {
        frame::MIN_MAX_FRAME
    } else {
        frame::MAX_MAX_FRAME
    };
    let mut decoder = hpack::Decoder::default();
    while let Ok(Some((f, n))) = frame::decode(rest, max_frame) {
        assert!(n >= frame::HEADER_LEN && n <= rest.len());
        match f {
            frame::Frame::Headers { block, .. } | frame::Frame::Continuation { block, .. } => {
                if let Ok(list) = decoder.decode(block, 4096) {
                    let _ = headers::request(list.clone());
                    let _ = headers::response(list.clone());
                    let _ = headers::trailers(list);
                }
            }
            frame::Frame::Settings { params, .. } => for _ in frame::settings_params(params) {},
            _ => {}
        }
        rest = &rest[n..];
    }
});
