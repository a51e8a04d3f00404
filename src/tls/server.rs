//! TLS termination: the rustls server configuration of a listener, with its
//! certificates chosen by SNI and by what the client offers (`resolve`).

use super::certs;
use super::resolve::{self, CertResolver};
use crate::config::{CertKey, ClientAuth};
use rustls::ServerConfig;
use std::sync::Arc;

/// A listener's TLS configuration and what the operator should hear about
/// its certificates (expiry, names SNI cannot reach). The warnings are
/// returned, not logged: at `-t` and at start the configuration is read
/// before the error log exists.
pub struct Loaded {
    pub config: Arc<ServerConfig>,
    pub warnings: Vec<String>,
}

/// The ALPN protocols a listener offers, in the server's order of
/// preference: rustls picks the first of these the client also offers.
/// `http/1.0` last: a client offering only that is served HTTP/1.0, as
/// nginx negotiates it. Without `http2` a client offering only `h2` gets a
/// `no_application_protocol` alert (RFC 7301 §3.2), as with nginx.
pub fn alpn_protocols(http2: bool) -> Vec<Vec<u8>> {
    let mut protocols = vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()];
    if http2 {
        protocols.insert(0, b"h2".to_vec());
    }
    protocols
}

/// What a listener's `tls:` asks for besides its certificates.
pub struct Policy<'a> {
    /// `protocols:` as written (checked by [`super::versions::parse`]).
    pub protocols: Option<&'a [String]>,
    /// `groups:` as written (checked by [`super::groups::parse`]).
    pub groups: Option<&'a [String]>,
    pub client_auth: Option<&'a ClientAuth>,
}

/// Which key of `tls:` a loading error is about, with the message (which
/// names the file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// `certificates[i]`: its cert or key file.
    Certificate(usize, String),
    /// `certificates[i].ocsp`.
    Ocsp(usize, String),
    Protocols(String),
    Groups(String),
    /// `client_auth.ca`.
    ClientCa(String),
}

/// Builds a listener's TLS configuration from its certificate files and
/// policy; `http2` adds `h2` to the ALPN protocols ([`alpn_protocols`]).
pub fn config(certificates: &[CertKey], policy: &Policy, http2: bool) -> Result<Loaded, LoadError> {
    let versions = super::versions::parse(policy.protocols).map_err(LoadError::Protocols)?;
    let groups = super::groups::parse(policy.groups).map_err(LoadError::Groups)?;
    let now = super::expiry::now();
    let mut loaded = Vec::with_capacity(certificates.len());
    for (i, ck) in certificates.iter().enumerate() {
        let mut c =
            certs::load_pair(&ck.cert, &ck.key).map_err(|e| LoadError::Certificate(i, e.0))?;
        if let Some(path) = &ck.ocsp {
            let der = super::ocsp::load(path, &c.key.cert, now)
                .map_err(|e| LoadError::Ocsp(i, e.to_string()))?;
            let mut key = (*c.key).clone();
            key.ocsp = Some(der);
            c.key = Arc::new(key);
        }
        loaded.push(c);
    }
    let mut warnings = Vec::new();
    for (i, (ck, c)) in certificates.iter().zip(&loaded).enumerate() {
        warnings.extend(super::expiry::warning(&ck.cert, c.not_after, now));
        if resolve::unreachable(&loaded, i) {
            warnings.push(format!(
                "certificate {} has no DNS names (subjectAltName): SNI never selects it",
                ck.cert.display()
            ));
        }
    }
    let mut provider = super::provider();
    if let Some(groups) = groups {
        Arc::make_mut(&mut provider).kx_groups = groups;
    }
    let suites = provider.cipher_suites.clone();
    let builder = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .map_err(|e| LoadError::Protocols(format!("TLS setup failed: {e}")))?;
    let (builder, ticket_context) = match policy.client_auth {
        None => (builder.with_no_client_auth(), None),
        Some(auth) => {
            let v = super::client_auth::verifier(&auth.ca, auth.required)
                .map_err(LoadError::ClientCa)?;
            (
                builder.with_client_cert_verifier(v.verifier),
                Some(v.context),
            )
        }
    };
    let mut cfg = builder.with_cert_resolver(Arc::new(CertResolver::new(loaded, suites)));
    cfg.alpn_protocols = alpn_protocols(http2);
    // The server's order of cipher suites decides, as HAProxy's default
    // and nginx's `ssl_prefer_server_ciphers on` (Debian's nginx.conf):
    // AES-256-GCM, AES-128-GCM, then ChaCha20-Poly1305, whatever order the
    // client lists them in (testssl's "Has server cipher order?" check).
    cfg.ignore_client_order = true;
    // Tickets every worker can open (the key comes from the master); with
    // client_auth, keys of the listener's own (see `for_context`).
    cfg.ticketer = Arc::new(match ticket_context {
        None => super::ticket::SharedTicketer::new(),
        Some(context) => super::ticket::SharedTicketer::for_context(&context),
    });
    // No TLS 1.2 session IDs. rustls keeps ID sessions in a cache of the
    // worker that made them, so a client resuming by ID resumed only when
    // it came back to that worker (10 of 20 with 2 workers, measured with
    // `openssl s_client -tls1_2 -no_ticket -sess_in`). Without a cache
    // rustls sends an empty session ID, and clients resume with tickets,
    // which every worker opens (20 of 20); a client that refuses tickets
    // gets a full handshake every time rather than on one worker in N.
    // TLS 1.3 resumption uses the ticketer, never this cache.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Loaded {
        config: Arc::new(cfg),
        warnings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_offers_h2_first_only_with_http2() {
        assert_eq!(
            alpn_protocols(true),
            vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()]
        );
        assert_eq!(
            alpn_protocols(false),
            vec![b"http/1.1".to_vec(), b"http/1.0".to_vec()]
        );
    }
}
