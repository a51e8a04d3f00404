//! TLS termination: the rustls server configuration of a listener, with its
//! certificates chosen by SNI and by what the client offers (`resolve`).

use super::certs;
use super::resolve::{self, CertResolver};
use rustls::ServerConfig;
use std::path::PathBuf;
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
/// Without `http2` a client offering only `h2` gets a
/// `no_application_protocol` alert (RFC 7301 §3.2), as with nginx.
pub fn alpn_protocols(http2: bool) -> Vec<Vec<u8>> {
    if http2 {
        vec![b"h2".to_vec(), b"http/1.1".to_vec()]
    } else {
        vec![b"http/1.1".to_vec()]
    }
}

/// Builds a listener's TLS configuration from its `(cert, key)` files;
/// `http2` adds `h2` to the ALPN protocols ([`alpn_protocols`]).
/// The error names the entry (its index) and the file.
pub fn config(pairs: &[(PathBuf, PathBuf)], http2: bool) -> Result<Loaded, (usize, String)> {
    let mut loaded = Vec::with_capacity(pairs.len());
    for (i, (cert, key)) in pairs.iter().enumerate() {
        loaded.push(certs::load_pair(cert, key).map_err(|e| (i, e.0))?);
    }
    let now = super::expiry::now();
    let mut warnings = Vec::new();
    for (i, ((cert, _), c)) in pairs.iter().zip(&loaded).enumerate() {
        warnings.extend(super::expiry::warning(cert, c.not_after, now));
        if resolve::unreachable(&loaded, i) {
            warnings.push(format!(
                "certificate {} has no DNS names (subjectAltName): SNI never selects it",
                cert.display()
            ));
        }
    }
    let provider = super::provider();
    let suites = provider.cipher_suites.clone();
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| (0, format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(CertResolver::new(loaded, suites)));
    cfg.alpn_protocols = alpn_protocols(http2);
    // Tickets every worker can open (the key comes from the master).
    cfg.ticketer = Arc::new(super::ticket::SharedTicketer::new());
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
            vec![b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(alpn_protocols(false), vec![b"http/1.1".to_vec()]);
    }
}
