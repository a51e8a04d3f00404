//! A `ServerConn` fed the client preface, then arbitrary bytes in arbitrary
//! chunk sizes, with the application's calls in between (answering,
//! sending data, consuming, resetting, draining, reading output partly).
//! Nothing may panic, and the output must stay bounded.
#![no_main]

use std::time::{Duration, Instant};

use forklb::h2::{
    code, ClientConn, ClientEvent, Event, RequestHead, ServerConn, Settings, PREFACE,
};
use libfuzzer_sys::fuzz_target;

/// The client role: two requests, then the server's (arbitrary) bytes.
fn client(seed: u8, body: &[u8]) {
    let mut conn = ClientConn::new(Settings::default());
    let head = RequestHead {
        method: b"POST".to_vec(),
        scheme: b"https".to_vec(),
        authority: Some(b"a".to_vec()),
        path: b"/".to_vec(),
        headers: Vec::new(),
        content_length: None,
    };
    let a = conn.send_request(&head, false);
    conn.send_request(&head, true);
    let t0 = Instant::now();
    let mut input = Vec::new();
    for (i, chunk) in body.chunks(usize::from(seed % 13) + 1).enumerate() {
        input.extend_from_slice(chunk);
        let used = conn.recv(&input, t0 + Duration::from_millis(i as u64));
        input.drain(..used);
        if let Some(a) = a {
            let w = conn.send_window(a);
            assert!(conn.send_data(a, &vec![0; w.min(5000)], false) <= w);
        }
        while let Some(event) = conn.next_event() {
            if let ClientEvent::Data { stream, data, .. } = event {
                conn.consumed(stream, data.len());
            }
        }
        if conn.can_open_stream() && chunk.first() == Some(&0) {
            conn.send_request(&head, true);
        }
        conn.advance_output(conn.output().len());
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&seed, body)) = data.split_first() else {
        return;
    };
    if seed & 0x80 != 0 {
        return client(seed, body);
    }
    let mut conn = ServerConn::new(Settings {
        max_concurrent_streams: 4,
        initial_window_size: 1000,
        max_header_list_size: 4096,
        ..Settings::default()
    });
    let t0 = Instant::now();
    let mut input = PREFACE.to_vec();
    // An empty SETTINGS, so the arbitrary bytes reach the frame handlers.
    input.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
    conn.recv(&input, t0);
    input.clear();
    let step = usize::from(seed % 13) + 1;
    for (i, chunk) in body.chunks(step).enumerate() {
        input.extend_from_slice(chunk);
        let used = conn.recv(&input, t0 + Duration::from_millis(i as u64));
        assert!(used <= input.len());
        input.drain(..used);
        let op = chunk.first().copied().unwrap_or(0);
        while let Some(event) = conn.next_event() {
            match event {
                Event::Request { stream, .. } => {
                    conn.send_headers(stream, 200, &[(b"x-a", b"b")], op & 1 == 1);
                }
                Event::Data { stream, data, .. } => match op % 4 {
                    0 => conn.consumed(stream, data.len()),
                    1 => conn.reset(stream, code::CANCEL),
                    _ => {
                        let w = conn.send_window(stream);
                        let n = conn.send_data(stream, &vec![b'x'; w.min(3000)], op & 2 == 2);
                        assert!(n <= w);
                    }
                },
                Event::Trailers { stream, .. } => conn.send_trailers(stream, &[(b"t", b"v")]),
                Event::Reset { stream } => assert_eq!(conn.send_window(stream), 0),
            }
        }
        if op == 0xff {
            conn.go_away();
        }
        // Read some of our output now and then, like a slow client.
        if op & 8 == 8 {
            let n = conn.output().len() / 2;
            conn.advance_output(n);
        }
        assert!(conn.output().len() < 4 * 1024 * 1024);
        let _ = (
            conn.is_done(),
            conn.wants_read(),
            conn.open_streams(),
            conn.error(),
        );
    }
});
