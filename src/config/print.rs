//! `forklb -T`: the validated configuration printed in the file's shape
//! ([`super::raw`]), every default filled in, so the output means the same
//! when read back.

use super::raw::{self, ListenerTls, NamedMap, RedirectAction, ReturnAction, RouteAction};
use super::routing::{Action, Route};
use super::scalars::RedirectTarget;
use super::units::{ByteSize, HumanDuration};
use super::validated::{Config, Listener, Upstream};
use std::time::Duration;

impl Config {
    /// The effective configuration as YAML.
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(&self.to_raw())
            .unwrap_or_else(|e| format!("# cannot print configuration: {e}\n"))
    }

    /// Back to the file's shape. Defaults that depend on other keys are
    /// written as their effective values (`upgrade_sock`, `upgrade_grace`).
    fn to_raw(&self) -> raw::Config {
        let t = &self.timeouts;
        raw::Config {
            version: self.version,
            workers: self.workers,
            daemon: self.daemon,
            pid_file: self.pid_file.clone(),
            error_log: self.error_log.clone(),
            log_level: self.log_level,
            upgrade_sock: Some(self.upgrade_sock_path().to_owned()),
            upgrade_grace: Some(HumanDuration(self.upgrade_grace())),
            upgrade_timeout: HumanDuration(self.upgrade_timeout),
            user: self.user.clone(),
            group: self.group.clone(),
            worker_connections: self.worker_connections,
            shutdown_timeout: HumanDuration(self.shutdown_timeout),
            admin: self.admin.clone(),
            state_file: self.state_file.clone(),
            access_log: self.access_log.clone(),
            timeouts: raw::Timeouts {
                client_header: HumanDuration(t.client_header),
                client_body: HumanDuration(t.client_body),
                client_send: HumanDuration(t.client_send),
                keepalive: HumanDuration(t.keepalive),
                connect: HumanDuration(t.connect),
                upstream_read: HumanDuration(t.upstream_read),
                upstream_write: HumanDuration(t.upstream_write),
                queue: HumanDuration(t.queue),
            },
            limits: raw::Limits {
                max_header_bytes: ByteSize(self.max_header_bytes as u64),
                max_body_bytes: ByteSize(self.max_body_bytes),
            },
            http2: raw::Http2 {
                max_concurrent_streams: self.http2.max_concurrent_streams.into(),
                initial_window_size: ByteSize(self.http2.initial_window_size.into()),
                max_header_list_size: ByteSize(self.http2.max_header_list_size.into()),
            },
            listeners: self
                .listeners
                .iter()
                .map(|l| self.raw_listener(l))
                .collect(),
            upstreams: NamedMap(
                self.upstreams
                    .iter()
                    .map(|u| (u.name.clone(), raw_upstream(u)))
                    .collect(),
            ),
        }
    }

    fn raw_listener(&self, l: &Listener) -> raw::Listener {
        raw::Listener {
            name: l.name.clone(),
            bind: l.addrs.iter().map(|a| a.to_string()).collect(),
            http2: l.http2,
            h2c: l.h2c,
            proxy_protocol: l.proxy_protocol,
            tls: l.tls.as_ref().map(|_| ListenerTls {
                certificates: l.certificates.clone(),
                protocols: l.protocols.clone(),
                groups: l.groups.clone(),
                client_auth: l.client_auth.clone(),
            }),
            routes: l.routes.iter().map(|r| self.raw_route(r)).collect(),
        }
    }

    fn raw_route(&self, r: &Route) -> raw::Route {
        let action = match &r.action {
            Action::Upstream(u) => RouteAction::Upstream(self.upstreams[*u].name.clone()),
            Action::Return {
                status,
                content_type,
                body,
            } => RouteAction::Return(ReturnAction {
                status: *status,
                // Built from the file's string: always UTF-8.
                body: String::from_utf8_lossy(body).into_owned(),
                content_type: content_type.clone(),
            }),
            Action::Redirect { status, to } => RouteAction::Redirect(RedirectAction {
                to: RedirectTarget(to.clone()),
                status: *status,
            }),
            Action::Metrics(format) => RouteAction::Metrics(*format),
            Action::Stats(stats) => RouteAction::Stats(raw::StatsAction {
                allow: stats.allow.iter().map(|c| c.to_string()).collect(),
                admin: stats.admin,
            }),
        };
        let rules = |e: &crate::http::header_rules::Edits| {
            let map = |l: &[(String, crate::http::header_rules::Template)]| {
                raw::NamedMap(
                    l.iter()
                        .map(|(n, t)| (n.clone(), t.source().to_owned()))
                        .collect(),
                )
            };
            (!e.is_empty()).then(|| raw::HeaderRules {
                set: map(&e.set),
                add: map(&e.add),
                remove: e.remove.clone(),
            })
        };
        raw::Route {
            host: r.host.to_text(),
            // Every default filled in: an absent path prints as its `/`.
            path: Some(r.path.clone()),
            allow: r
                .access
                .iter()
                .flat_map(|a| &a.allow)
                .map(|c| c.to_string())
                .collect(),
            deny: r
                .access
                .iter()
                .flat_map(|a| &a.deny)
                .map(|c| c.to_string())
                .collect(),
            action,
            request_headers: r.headers.as_ref().and_then(|h| rules(&h.request)),
            response_headers: r.headers.as_ref().and_then(|h| rules(&h.response)),
            limit_req: r.limit_req.as_ref().map(|l| l.spec.clone()),
            limit_conn: r.limit_conn.as_ref().map(|l| l.spec.clone()),
        }
    }
}

fn raw_upstream(u: &Upstream) -> raw::Upstream {
    raw::Upstream {
        protocol: u.protocol,
        balance: u.balance,
        hash_key: (u.balance == raw::Balance::Hash).then(|| u.hash_key.clone()),
        keepalive: u.keepalive,
        retries: u.retries,
        max_fails: u.max_fails,
        fail_timeout: HumanDuration(Duration::from_millis(u.fail_timeout_ms)),
        host_header: u.host_header.clone(),
        send_proxy: u.send_proxy.map(|v| match v {
            crate::proxy_proto::Version::V1 => raw::SendProxy::V1,
            crate::proxy_proto::Version::V2 => raw::SendProxy::V2,
        }),
        tls: u.tls_settings.clone(),
        health: u.health.as_ref().map(|h| raw::Health {
            kind: h.kind,
            path: h.path.clone(),
            interval: HumanDuration(h.interval),
            timeout: HumanDuration(h.timeout),
            rise: h.rise,
            fall: h.fall,
            expect_status: h.expect,
        }),
        resolve: u.resolve.map(HumanDuration),
        servers: u
            .servers
            .iter()
            .map(|s| raw::Server {
                name: s.name.clone(),
                addr: s.addr_text.clone(),
                weight: s.weight,
                backup: s.backup,
                maxconn: s.maxconn,
            })
            .collect(),
    }
}
