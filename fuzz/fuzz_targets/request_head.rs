//! Request heads: parsing and validation must never panic, and whatever is
//! accepted must re-serialize into a head that parses again with the same
//! method, target and framing (no smuggling through our own rewrite).
#![no_main]

use forklb::http::{self, request, rewrite, Framing};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut headers = [httparse::EMPTY_HEADER; http::MAX_HEADERS];
    let Ok(request::Parsed::Complete(req, info)) = request::parse(data, &mut headers) else {
        return;
    };
    let mut host = [0u8; 256];
    let _ = request::host_of(&req, &mut host);
    let mut out = Vec::new();
    rewrite::write_upstream_request(
        &mut out,
        &req,
        &rewrite::UpstreamRequest {
            client_ip: "127.0.0.1".parse().unwrap(),
            proto: "http",
            host_override: None,
            default_host: "upstream",
            keep_alive: true,
            upgrade: info.upgrade,
            framing: info.framing,
        },
    );
    let mut headers2 = [httparse::EMPTY_HEADER; http::MAX_HEADERS + 4];
    match request::parse(&out, &mut headers2) {
        Ok(request::Parsed::Complete(req2, info2)) => {
            assert_eq!(req.method, req2.method);
            // Absolute-form targets go upstream in origin form.
            let target = req.path.unwrap_or("/");
            let origin = request::origin_path(target);
            assert_eq!(Some(origin), req2.path);
            assert_eq!(info2.head_len, out.len());
            // Framing survives the rewrite exactly.
            let expect = match info.framing {
                Framing::Length(n) => Framing::Length(n),
                f => f,
            };
            assert_eq!(info2.framing, expect);
        }
        Ok(request::Parsed::Partial) => panic!("rewritten head is incomplete"),
        Err(e) => panic!("rewritten head is invalid: {}", e.reason),
    }
});
