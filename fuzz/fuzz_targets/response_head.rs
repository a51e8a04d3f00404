//! Upstream response heads: parsing and the client-side rewrite never panic.
#![no_main]

use forklb::http::{self, response, rewrite};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    let head_request = data[0] & 1 == 1;
    let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
    if let Ok(response::Parsed::Complete(resp, _info)) =
        response::parse(&data[1..], &mut headers, head_request)
    {
        let mut out = Vec::new();
        rewrite::write_client_response(
            &mut out,
            &resp,
            rewrite::ResponseMode::Plain { keep_alive: true },
            1,
            b"Sun, 06 Nov 1994 08:49:37 GMT",
        );
    }
});
