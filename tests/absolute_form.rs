//! Absolute-form request targets (RFC 9112 §3.2.2): accepted, forwarded in
//! origin form, and their authority replaces Host, for routing too.

mod support;

use support::*;

#[test]
fn absolute_form_target_is_forwarded_in_origin_form_with_its_authority_as_host() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b]));
    let mut c = Conn::open(lb.port()).unwrap();
    c.send(b"GET http://Example.COM:8080/x?y=1 HTTP/1.1\r\nHost: other.example\r\n\r\n")
        .unwrap();
    let r = c.read_response().unwrap();
    assert_eq!((r.status, r.body_str().as_str()), (200, "b1"));
    let seen = b.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].method, "GET");
    assert_eq!(seen[0].path, "/x?y=1");
    assert_eq!(seen[0].header("host"), Some("Example.COM:8080"));
}

/// An empty path is `/` (RFC 9110 §4.2.3), before a query too: `http://a?q`
/// goes upstream as `/?q`, and routes as `/`.
#[test]
fn absolute_form_with_an_empty_path_and_a_query_goes_upstream_as_slash_query() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b]));
    let mut c = Conn::open(lb.port()).unwrap();
    for (target, path) in [
        ("http://a.test?x=1", "/?x=1"),
        ("HTTPS://a.test:8443?", "/?"),
        ("http://a.test", "/"),
    ] {
        c.send(format!("GET {target} HTTP/1.1\r\nHost: a.test\r\n\r\n").as_bytes())
            .unwrap();
        let r = c.read_response().unwrap();
        assert_eq!((r.status, r.body_str().as_str()), (200, "b1"), "{target}");
        assert_eq!(b.requests().last().unwrap().path, path, "{target}");
    }
}

#[test]
fn absolute_form_authority_routes_by_host() {
    let api = Backend::start("api");
    let web = Backend::start("web");
    let yaml = ConfigBuilder::new()
        .listener("web", &["127.0.0.1:$PORT"])
        .route(Route::host("api.example").upstream("api"))
        .route(Route::to("web"))
        .upstream("api", [Srv::addr(api.addr())])
        .upstream("web", [Srv::addr(web.addr())])
        .build();
    let lb = Forklb::start(&yaml);
    let mut c = Conn::open(lb.port()).unwrap();
    c.send(b"GET http://api.example/ HTTP/1.1\r\nHost: web.example\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().body_str(), "api");
    c.send(b"GET / HTTP/1.1\r\nHost: api.example\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().body_str(), "api");
    c.send(b"GET / HTTP/1.1\r\nHost: web.example\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().body_str(), "web");
}

#[test]
fn absolute_form_with_userinfo_is_rejected() {
    let b = Backend::start("b1");
    let lb = Forklb::start(&proxy_config_for(1, &[&b]));
    let mut c = Conn::open(lb.port()).unwrap();
    c.send(b"GET http://user@h/ HTTP/1.1\r\nHost: h\r\n\r\n")
        .unwrap();
    assert_eq!(c.read_response().unwrap().status, 400);
    assert_eq!(b.request_count(), 0);
}
