//! HTTPS to upstream servers: the rustls client configuration of an
//! upstream (trust roots and the check of `upstream_verify`, or no
//! verification when asked) and the name each server is verified against
//! and sent as SNI.

use super::upstream_verify::UpstreamVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// Trust anchors: the `ca` file, else the system's store (falling back to
/// the Mozilla set compiled in when the system has none).
struct Anchors {
    store: RootCertStore,
    /// The certificates of the `ca` file, as written: a server presenting
    /// one of them is pinned (see `upstream_verify`). Empty with the
    /// system's store.
    pinned: Vec<CertificateDer<'static>>,
}

fn anchors(ca: Option<&Path>) -> Result<Anchors, String> {
    let mut store = RootCertStore::empty();
    if let Some(ca) = ca {
        let chain = super::certs::read_chain(ca).map_err(|e| e.0)?;
        let (added, _) = store.add_parsable_certificates(chain.iter().cloned());
        if added == 0 {
            return Err(format!("no usable CA certificate in {}", ca.display()));
        }
        return Ok(Anchors {
            store,
            pinned: chain,
        });
    }
    let native = rustls_native_certs::load_native_certs();
    store.add_parsable_certificates(native.certs);
    if store.is_empty() {
        log::warn!("no system CA certificates found; using the built-in Mozilla roots");
        store.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    }
    Ok(Anchors {
        store,
        pinned: Vec::new(),
    })
}

/// webpki's verifier for `anchors`, taking also a pinned self-signed CA
/// certificate as the server's (`upstream_verify`).
fn verifier(
    anchors: Anchors,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<UpstreamVerifier>, String> {
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(anchors.store), provider)
        .build()
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    Ok(Arc::new(UpstreamVerifier::new(webpki, anchors.pinned)))
}

/// A client certificate chain and its key, presented to the servers.
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// Which of the upstream's `cert` and `key` an [`identity`] error is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityError {
    Cert(String),
    Key(String),
}

/// Reads the upstream's `cert` and `key` and checks they belong together;
/// the error names the file, and says which key it was given under.
pub fn identity(cert: &Path, key: &Path) -> Result<Identity, IdentityError> {
    let chain = super::certs::read_chain(cert).map_err(|e| IdentityError::Cert(e.0))?;
    let der = super::certs::read_key(key).map_err(|e| IdentityError::Key(e.0))?;
    // The same checks as a listener's pair: the key loads and is the
    // certificate's (a mismatch is reported on `key`).
    super::certs::load_pair(cert, key).map_err(|e| IdentityError::Key(e.0))?;
    Ok(Identity { chain, key: der })
}

/// The configuration for one upstream's servers, presenting `identity`
/// when a server asks for a certificate, and offering `alpn` (in order of
/// preference: `http/1.1` for HTTP/1.1 upstreams, `h2` alone for
/// `protocol: h2`).
pub fn config(
    verify: bool,
    ca: Option<&Path>,
    identity: Option<Identity>,
    alpn: &[&[u8]],
) -> Result<Arc<ClientConfig>, String> {
    let provider = super::provider();
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("TLS setup failed: {e}"))?;
    let builder = if verify {
        let verifier = verifier(anchors(ca)?, Arc::clone(&provider))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
    };
    let mut cfg = match identity {
        None => builder.with_no_client_auth(),
        Some(id) => builder
            .with_client_auth_cert(id.chain, id.key)
            .map_err(|e| format!("cannot use the client certificate: {e}"))?,
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The name to verify a server against and send as SNI: the configured
/// `sni`, else the host of the server's address. An IP address is verified
/// against the certificate's IP names and sends no SNI (RFC 6066).
pub fn server_name(sni: Option<&str>, addr_text: &str) -> Option<ServerName<'static>> {
    let host = match sni {
        Some(s) => s,
        None => host_of(addr_text),
    };
    ServerName::try_from(host.to_owned()).ok()
}

/// `host` of `host:port` or `[v6]:port`.
fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        Some((h, _)) => h,
        None => addr,
    }
}

/// `verify: false`: any certificate is accepted, but the handshake
/// signatures are still checked (the peer must hold the key it presents).
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_default_to_the_server_host() {
        assert_eq!(
            server_name(None, "one.one.one.one:443"),
            Some(ServerName::try_from("one.one.one.one").unwrap())
        );
        assert_eq!(
            server_name(Some("api.example.com"), "10.0.0.1:443"),
            Some(ServerName::try_from("api.example.com").unwrap())
        );
        assert!(matches!(
            server_name(None, "127.0.0.1:8443"),
            Some(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name(None, "[::1]:8443"),
            Some(ServerName::IpAddress(_))
        ));
    }
}
