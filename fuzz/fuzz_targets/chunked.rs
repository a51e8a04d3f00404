//! The chunked scanner: never panics, and gives the same answer whether the
//! input arrives at once or split at arbitrary points, and whether the body
//! is scanned (relayed verbatim) or de-chunked (payload alone).
#![no_main]

use forklb::http::chunked::ChunkedScanner;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.is_empty() {
        return;
    }
    // The first byte picks the split step for the second pass.
    let step = usize::from(data[0] % 7) + 1;
    let body = &data[1..];

    let mut whole = ChunkedScanner::new();
    let whole_result = whole.scan(body);

    let mut split = ChunkedScanner::new();
    let mut consumed = 0;
    let mut split_err = None;
    for piece in body.chunks(step) {
        match split.scan(piece) {
            Ok(n) => {
                consumed += n;
                if split.is_done() {
                    break;
                }
            }
            Err(e) => {
                split_err = Some(e);
                break;
            }
        }
    }
    // De-chunking, in pieces of the same step: the same end, the same
    // errors, and as many payload bytes as the scanner counted.
    let mut de = ChunkedScanner::new();
    let mut de_taken = 0;
    let mut payload = 0;
    let mut de_err = None;
    let mut rest = body;
    let mut pending = 0;
    while !de.is_done() {
        if pending == 0 {
            if rest.is_empty() {
                break;
            }
            pending = step.min(rest.len());
        }
        let (piece, _) = rest.split_at(pending);
        match de.dechunk(piece) {
            Ok((framing, data)) => {
                assert!(framing + data <= piece.len());
                de_taken += framing + data;
                payload += data;
                rest = &rest[framing + data..];
                pending -= framing + data;
                if framing + data == 0 {
                    break;
                }
            }
            Err(e) => {
                de_err = Some(e);
                break;
            }
        }
    }
    assert_eq!(de_err, split_err);
    if de_err.is_none() {
        assert_eq!(de_taken, consumed);
        assert_eq!(de.is_done(), split.is_done());
        assert_eq!(payload as u64, split.data_total());
    }
    match whole_result {
        Ok(n) => {
            assert!(split_err.is_none(), "split scan failed where whole succeeded");
            assert_eq!(n, consumed);
            assert_eq!(whole.is_done(), split.is_done());
            assert_eq!(whole.data_total(), split.data_total());
            assert!(n <= body.len());
            if !whole.is_done() {
                assert_eq!(n, body.len());
            }
        }
        Err(e) => assert_eq!(Some(e), split_err),
    }
});
