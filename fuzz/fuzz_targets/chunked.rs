//! The chunked scanner: never panics, and gives the same answer whether the
//! input arrives at once or split at arbitrary points.
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
