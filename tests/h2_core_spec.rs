//! h2spec against the sans-IO core alone (`forklb::h2::ServerConn`), served
//! by a tiny blocking test server in this process: every request is read
//! in full (honouring flow control) and answered 200 with a short body.
//! It checks the protocol core before (and apart from) the worker's glue.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use forklb::h2::{Event, ServerConn, Settings};

const BODY: &[u8] = b"hello from the forklb h2 core\n";

/// A response being written: the body left to send.
struct Answer {
    head_sent: bool,
    body: Vec<u8>,
}

fn serve(mut sock: TcpStream) {
    let _ = sock.set_read_timeout(Some(Duration::from_millis(5)));
    let _ = sock.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = sock.set_nodelay(true);
    let mut conn = ServerConn::new(Settings::default());
    let mut input = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut answers: BTreeMap<u32, Answer> = BTreeMap::new();
    let mut eof = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        while !conn.output().is_empty() {
            match sock.write(conn.output()) {
                Ok(n) => conn.advance_output(n),
                Err(_) => return,
            }
        }
        if conn.is_done() || eof {
            return;
        }
        if conn.wants_read() {
            match sock.read(&mut buf) {
                Ok(0) => eof = true,
                Ok(n) => input.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(_) => return,
            }
        }
        let used = conn.recv(&input, Instant::now());
        input.drain(..used);
        while let Some(event) = conn.next_event() {
            let done = match event {
                Event::Request {
                    stream, end_stream, ..
                } => end_stream.then_some(stream),
                Event::Data {
                    stream,
                    data,
                    end_stream,
                } => {
                    conn.consumed(stream, data.len());
                    end_stream.then_some(stream)
                }
                Event::Trailers { stream, .. } => Some(stream),
                Event::Reset { stream } => {
                    answers.remove(&stream);
                    None
                }
            };
            if let Some(stream) = done {
                answers.insert(
                    stream,
                    Answer {
                        head_sent: false,
                        body: BODY.to_vec(),
                    },
                );
            }
        }
        answers.retain(|&stream, a| {
            if !a.head_sent {
                conn.send_headers(stream, 200, &[(b"content-type", b"text/plain")], false);
                a.head_sent = true;
            }
            let n = conn.send_data(stream, &a.body, true);
            a.body.drain(..n);
            !a.body.is_empty()
        });
    }
}

fn start_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    thread::spawn(move || {
        for sock in listener.incoming().flatten() {
            thread::spawn(move || serve(sock));
        }
    });
    port
}

#[test]
fn h2spec_passes_against_the_core() {
    let h2spec = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/tools/h2spec");
    assert!(h2spec.exists(), "h2spec not found at {}", h2spec.display());
    let port = start_server();
    let out_path = std::env::temp_dir().join(format!("h2spec-core-{port}.txt"));
    let out = std::fs::File::create(&out_path).expect("output file");
    let mut args = vec![
        "-h".to_string(),
        "127.0.0.1".into(),
        "-p".into(),
        port.to_string(),
    ];
    args.extend(["-o".into(), "2".into()]);
    // H2SPEC_STRICT=1 adds h2spec's strict cases (not part of the 146).
    let strict = std::env::var_os("H2SPEC_STRICT").is_some();
    if strict {
        args.push("-S".into());
    }
    let mut child = Command::new(&h2spec)
        .args(&args)
        .stdout(out)
        .stderr(Stdio::null())
        .spawn()
        .expect("run h2spec");
    let deadline = Instant::now() + Duration::from_secs(240);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let report = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    assert!(status.is_some(), "h2spec did not finish in time:\n{report}");
    // "146 tests, 146 passed, 0 skipped, 0 failed"
    let summary = report
        .lines()
        .find(|l| l.contains(" tests, ") && l.contains(" passed"))
        .unwrap_or_else(|| panic!("no h2spec summary:\n{report}"));
    let count = |word: &str| -> u32 {
        summary
            .split(", ")
            .find_map(|part| {
                part.trim()
                    .strip_suffix(word)
                    .map(|n| n.trim().parse().unwrap_or(u32::MAX))
            })
            .unwrap_or(u32::MAX)
    };
    eprintln!("h2spec: {summary}");
    let failures: Vec<&str> = report.lines().filter(|l| l.contains('×')).collect();
    if strict {
        eprintln!("strict failures:\n{}", failures.join("\n"));
        return;
    }
    assert_eq!(
        (count("passed"), count("failed")),
        (146, 0),
        "{summary}\nfailures:\n{}\n\n{report}",
        failures.join("\n")
    );
}
