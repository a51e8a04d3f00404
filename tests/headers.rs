//! Header rewriting: hop-by-hop headers removed both ways, X-Forwarded-For
//! and X-Forwarded-Proto, Host kept or replaced by `host_header`, and Date
//! (the upstream's kept, added where missing, on forklb's own responses too).

mod support;

use support::*;

/// forklb may announce its own connection handling upstream or to the
/// client (`close`, `keep-alive`), but never pass on the other side's.
fn assert_own_connection_header_only(headers: &[(String, String)], what: &str) {
    for (n, v) in headers {
        if n.eq_ignore_ascii_case("connection") {
            for t in v.split(',') {
                let t = t.trim();
                assert!(
                    t.eq_ignore_ascii_case("close") || t.eq_ignore_ascii_case("keep-alive"),
                    "{what}: foreign Connection token {t:?} passed on: {headers:?}"
                );
            }
        }
    }
}

const HOP_BY_HOP: [&str; 5] = ["keep-alive", "proxy-connection", "te", "trailer", "upgrade"];

#[test]
fn hop_by_hop_request_headers_are_removed() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(
        b"GET /hop HTTP/1.1\r\nHost: x\r\n\
          Connection: keep-alive, X-Custom-Hop, x-other-hop\r\n\
          X-Custom-Hop: secret\r\nX-Other-Hop: secret2\r\n\
          Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
          TE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\n\
          X-End-To-End: kept\r\n\r\n",
    )
    .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 1);
    let seen = &reqs[0];
    for name in HOP_BY_HOP.iter().chain(&["x-custom-hop", "x-other-hop"]) {
        assert!(
            !seen.has_header(name),
            "backend received hop-by-hop header {name}: {:?}",
            seen.headers
        );
    }
    assert_own_connection_header_only(&seen.headers, "request");
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    assert_eq!(seen.header("host"), Some("x"));
}

/// A Connection header cannot take the forwarding fields an edge proxy
/// added, nor the request's credentials, off the request (nginx and HAProxy
/// keep them): behind an HAProxy, `Connection: X-Forwarded-For` from the
/// client would erase the real client's address. Other fields it names go.
#[test]
fn connection_cannot_remove_forwarding_fields_or_credentials() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));
    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(
        b"GET /keep HTTP/1.1\r\nHost: x\r\n\
          Connection: X-Forwarded-For, X-Real-IP, Forwarded, Authorization, Cookie, X-Gone\r\n\
          X-Forwarded-For: 203.0.113.7\r\nX-Real-IP: 203.0.113.7\r\n\
          Forwarded: for=203.0.113.7\r\nAuthorization: Basic dTpw\r\n\
          Cookie: s=1\r\nX-Gone: hop\r\n\r\n",
    )
    .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 200, "{r:?}");
    let reqs = b1.requests();
    let seen = &reqs[0];
    assert_eq!(
        seen.header("x-forwarded-for"),
        Some("203.0.113.7, 127.0.0.1"),
        "{:?}",
        seen.headers
    );
    for (name, value) in [
        ("x-real-ip", "203.0.113.7"),
        ("forwarded", "for=203.0.113.7"),
        ("authorization", "Basic dTpw"),
        ("cookie", "s=1"),
    ] {
        assert_eq!(seen.header(name), Some(value), "{name}: {:?}", seen.headers);
    }
    assert!(!seen.has_header("x-gone"), "{:?}", seen.headers);
}

#[test]
fn hop_by_hop_response_headers_are_removed() {
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            scripts: vec![Script::new(
                "/hop",
                b"HTTP/1.1 200 OK\r\nConnection: X-Resp-Hop\r\nX-Resp-Hop: secret\r\n\
                  Keep-Alive: timeout=5, max=100\r\nProxy-Connection: keep-alive\r\n\
                  TE: trailers\r\nTrailer: X-Checksum\r\nUpgrade: h2c\r\n\
                  X-Kept: yes\r\nContent-Length: 2\r\n\r\nok",
                Then::KeepAlive,
            )],
            ..Default::default()
        },
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    let r = c.get("/hop").expect("response");
    assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
    for name in HOP_BY_HOP.iter().chain(&["x-resp-hop"]) {
        assert!(
            r.header(name).is_none(),
            "client received hop-by-hop header {name}: {:?}",
            r.headers
        );
    }
    assert_own_connection_header_only(&r.headers, "response");
    assert_eq!(r.header("x-kept"), Some("yes"));
    // Still a working keep-alive connection.
    let r = c.get("/next").expect("next");
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"));
}

#[test]
fn x_forwarded_for_is_the_client_address() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    assert_eq!(http_get(lb.port(), "/xff").status, 200);
    let seen = &b1.requests()[0];
    assert_eq!(seen.header_all("x-forwarded-for"), vec!["127.0.0.1"]);
    assert_eq!(seen.header_all("x-forwarded-proto"), vec!["http"]);
}

#[test]
fn x_forwarded_for_values_are_merged_and_client_appended() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(
        b"GET /xff HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.7\r\n\
          X-Other: 1\r\nx-forwarded-for: 10.0.0.1, 10.0.0.2\r\n\r\n",
    )
    .expect("send");
    assert_eq!(c.read_response().expect("response").status, 200);
    let seen = &b1.requests()[0];
    assert_eq!(
        seen.header_all("x-forwarded-for"),
        vec!["203.0.113.7, 10.0.0.1, 10.0.0.2, 127.0.0.1"],
        "{:?}",
        seen.headers
    );
    assert_eq!(seen.header("x-other"), Some("1"));
}

#[test]
fn x_forwarded_proto_from_the_client_is_replaced_by_http() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    let r = c
        .request("GET", "/xfp", &[("X-Forwarded-Proto", "https")], b"")
        .expect("response");
    assert_eq!(r.status, 200);
    let seen = &b1.requests()[0];
    assert_eq!(
        seen.header_all("x-forwarded-proto"),
        vec!["http"],
        "{:?}",
        seen.headers
    );
}

#[test]
fn host_header_is_kept_by_default() {
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"GET /host HTTP/1.1\r\nHost: Example.TEST:8080\r\n\r\n")
        .expect("send");
    assert_eq!(c.read_response().expect("response").status, 200);
    let seen = &b1.requests()[0];
    assert_eq!(seen.header_all("host"), vec!["Example.TEST:8080"]);
}

#[test]
fn host_header_option_replaces_host() {
    let b1 = Backend::start("b1");
    let cfg = proxy_config(
        1,
        &[("b1", b1.addr(), 1)],
        &["host_header: one.one.one.one"],
    );
    let lb = Forklb::start(&cfg);

    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"GET /host HTTP/1.1\r\nHost: client.example\r\n\r\n")
        .expect("send");
    assert_eq!(c.read_response().expect("response").status, 200);
    // Also for an HTTP/1.0 client without Host.
    let mut c = Conn::open(lb.port()).expect("connect");
    c.send(b"GET /host10 HTTP/1.0\r\n\r\n").expect("send");
    assert_eq!(c.read_response().expect("response").status, 200);
    let reqs = b1.requests();
    assert_eq!(reqs.len(), 2);
    for seen in &reqs {
        assert_eq!(
            seen.header_all("host"),
            vec!["one.one.one.one"],
            "{} {:?}",
            seen.path,
            seen.headers
        );
    }
}

// ---- Date ------------------------------------------------------------------------------

/// Seconds since the Unix epoch of an IMF-fixdate (`Sun, 06 Nov 1994
/// 08:49:37 GMT`), checked strictly: fixed layout, and the day of the week
/// must match the date.
fn parse_imf_fixdate(v: &str) -> Option<i64> {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let b = v.as_bytes();
    if b.len() != 29 || &v[3..5] != ", " || &v[25..] != " GMT" {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        v.get(r)?.bytes().try_fold(0i64, |n, d| {
            d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
        })
    };
    let (day, year) = (num(5..7)?, num(12..16)?);
    let month = MONTHS.iter().position(|m| *m == &v[8..11])? as i64 + 1;
    let (h, m, s) = (num(17..19)?, num(20..22)?, num(23..25)?);
    if [b[7], b[11], b[16]] != [b' '; 3]
        || [b[19], b[22]] != [b':'; 2]
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    // Days since 1970-01-01 (Howard Hinnant's days_from_civil).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    (DAYS[days.rem_euclid(7) as usize] == &v[..3]).then_some(days * 86_400 + h * 3600 + m * 60 + s)
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// The response carries exactly one Date, and it is the current time.
fn assert_fresh_date(r: &Response, before: i64, what: &str) {
    let dates: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("date"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(dates.len(), 1, "{what}: {:?}", r.headers);
    let t = parse_imf_fixdate(dates[0])
        .unwrap_or_else(|| panic!("{what}: not an IMF-fixdate: {:?}", dates[0]));
    let after = unix_now();
    // The worker's cached date may lag its wake-up by a second.
    assert!(
        before - 1 <= t && t <= after,
        "{what}: Date {:?} is not between {before} and {after}",
        dates[0]
    );
}

#[test]
fn imf_fixdate_parser_of_these_tests() {
    assert_eq!(
        parse_imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
        Some(784_111_777)
    );
    assert_eq!(parse_imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
    assert_eq!(
        parse_imf_fixdate("Tue, 29 Feb 2000 00:00:00 GMT"),
        Some(951_782_400)
    );
    assert_eq!(parse_imf_fixdate("Mon, 06 Nov 1994 08:49:37 GMT"), None);
    assert_eq!(parse_imf_fixdate("Sunday, 06-Nov-94 08:49:37 GMT"), None);
}

#[test]
fn relayed_response_without_date_gets_one() {
    // The test backend sends no Date.
    let b1 = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    for i in 0..3 {
        let before = unix_now();
        let r = c.get(&format!("/nodate/{i}")).expect("GET");
        assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{r:?}");
        assert_fresh_date(&r, before, "relayed");
    }
    // And over a second later, the next second's date.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let before = unix_now();
    let r = c.get("/nodate/later").expect("GET");
    assert_fresh_date(&r, before, "relayed, a second later");
}

#[test]
fn upstream_date_is_kept_exactly() {
    let b1 = Backend::start_with(
        "b1",
        BackendOpts {
            scripts: vec![
                Script::new(
                    "/dated",
                    b"HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2001 00:00:00 GMT\r\nContent-Length: 2\r\n\r\nok",
                    Then::KeepAlive,
                ),
                Script::new(
                    "/chunked-dated",
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\ndate: Tue, 02 Jan 2001 00:00:00 GMT\r\n\r\n2\r\nok\r\n0\r\n\r\n",
                    Then::KeepAlive,
                ),
            ],
            ..Default::default()
        },
    );
    let lb = Forklb::start(&proxy_config_for(1, &[&b1]));

    let mut c = Conn::open(lb.port()).expect("connect");
    for (path, date) in [
        ("/dated", "Mon, 01 Jan 2001 00:00:00 GMT"),
        ("/chunked-dated", "Tue, 02 Jan 2001 00:00:00 GMT"),
    ] {
        let r = c.get(path).expect("GET");
        assert_eq!((r.status, r.body_str().as_str()), (200, "ok"), "{r:?}");
        let dates: Vec<&str> = r
            .headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case("date"))
            .map(|(_, v)| v.as_str())
            .collect();
        assert_eq!(dates, vec![date], "{path}: {:?}", r.headers);
    }
}

#[test]
fn local_responses_carry_a_date() {
    let b1 = Backend::start("b1");
    let cfg = ConfigBuilder::new()
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::healthz())
        .route(Route::path("/old/").redirect("https://example.com/new/", 301))
        .route(Route::path("/metrics").metrics())
        .route(Route::path("/down/").upstream("down"))
        .route(Route::path("/app/").upstream("web"))
        .upstream("web", [Srv::addr(b1.addr())])
        .upstream("down", [Srv::addr(refused_addr())])
        .upstream_opt("retries: 0")
        .build();
    let lb = Forklb::start(&cfg);

    let mut c = Conn::open(lb.port()).expect("connect");
    for (path, status) in [
        ("/healthz", 200),
        ("/old/x", 301),
        ("/metrics", 200),
        ("/nowhere", 404),
        ("/down/x", 502),
    ] {
        let before = unix_now();
        let r = c.get(path).expect("GET");
        assert_eq!(r.status, status, "{path}: {r:?}");
        assert_fresh_date(&r, before, path);
    }
    // An error for a request that could not be parsed, too.
    let mut c = Conn::open(lb.port()).expect("connect");
    let before = unix_now();
    c.send(b"GET / HTTP/1.1\r\n\r\n").expect("send");
    let r = c.read_response().expect("400");
    assert_eq!(r.status, 400, "{r:?}");
    assert_fresh_date(&r, before, "400");
}

/// A redirect to `$host` answers an HTTP/1.0 request without Host (valid
/// in HTTP/1.0) with the address it came to, as nginx falls back to its
/// server name: it was a 400.
#[test]
fn a_redirect_to_host_without_a_host_uses_the_address_it_came_to() {
    let yaml = ConfigBuilder::new()
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::path("/r/").redirect("https://$host$request_uri", 301))
        .build();
    let lb = Forklb::start(&yaml);
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(std::time::Duration::from_secs(2));
    c.send(b"GET /r/a?x=1 HTTP/1.0\r\n\r\n").expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(r.header("location"), Some("https://127.0.0.1/r/a?x=1"));
    let mut c = Conn::open(lb.port()).expect("connect");
    c.set_read_timeout(std::time::Duration::from_secs(2));
    c.send(b"GET /r/b HTTP/1.1\r\nHost: Example.com.:8080\r\n\r\n")
        .expect("send");
    let r = c.read_response().expect("response");
    assert_eq!(
        r.header("location"),
        Some("https://example.com/r/b"),
        "{r:?}"
    );
}
