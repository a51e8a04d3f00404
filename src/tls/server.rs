//! TLS termination: the rustls server configuration of a listener, with its
//! certificates chosen by SNI.

use super::certs::{self, LoadedCert};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::path::PathBuf;
use std::sync::Arc;

/// Picks the first certificate whose names cover the SNI name; the first
/// certificate when none does or the client sent no name.
#[derive(Debug)]
struct SniResolver {
    certs: Vec<LoadedCert>,
}

impl SniResolver {
    fn pick(&self, sni: Option<&str>) -> Option<&LoadedCert> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            let name = name.trim_end_matches('.');
            if let Some(c) = self
                .certs
                .iter()
                .find(|c| c.names.iter().any(|p| certs::name_matches(p, name)))
            {
                return Some(c);
            }
        }
        self.certs.first()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name()).map(|c| Arc::clone(&c.key))
    }
}

/// Builds a listener's TLS configuration from its `(cert, key)` files.
/// The error names the entry (its index) and the file.
pub fn config(pairs: &[(PathBuf, PathBuf)]) -> Result<Arc<ServerConfig>, (usize, String)> {
    let mut loaded = Vec::with_capacity(pairs.len());
    for (i, (cert, key)) in pairs.iter().enumerate() {
        let c = certs::load_pair(cert, key).map_err(|e| (i, e.0))?;
        if c.names.is_empty() && i > 0 {
            log::warn!(
                "certificate {} has no DNS names (subjectAltName): SNI never selects it",
                cert.display()
            );
        }
        loaded.push(c);
    }
    let provider = super::provider();
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| (0, format!("TLS setup failed: {e}")))?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(SniResolver { certs: loaded }));
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Tickets every worker can open (the key comes from the master).
    cfg.ticketer = Arc::new(super::ticket::SharedTicketer::new());
    Ok(Arc::new(cfg))
}
