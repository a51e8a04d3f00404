//! The check of an upstream server's certificate when `verify` is on:
//! rustls's webpki verifier against the trust roots, plus the one case
//! webpki refuses that nginx and HAProxy accept — a self-signed
//! certificate with `CA:TRUE` (OpenSSL 3's default for `req -x509`)
//! pinned by naming exactly that certificate in `ca`.
//!
//! webpki never takes a CA certificate as a server's own
//! (rustls/webpki#205). The exception is narrow: the certificate the
//! server presents must be byte for byte one of the `ca` file's, valid
//! for the server name and within its validity period; the handshake
//! signature is still checked by webpki (the server must hold its key).
//! Certificates from the system roots are never taken this way.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, OtherError, SignatureScheme};
use std::sync::Arc;

/// webpki's verifier, and the certificates of the `ca` file (empty when
/// the system roots are the trust anchors: nothing is pinned then).
#[derive(Debug)]
pub struct UpstreamVerifier {
    webpki: Arc<WebPkiServerVerifier>,
    pinned: Vec<CertificateDer<'static>>,
}

impl UpstreamVerifier {
    pub fn new(webpki: Arc<WebPkiServerVerifier>, pinned: Vec<CertificateDer<'static>>) -> Self {
        UpstreamVerifier { webpki, pinned }
    }

    fn is_pinned(&self, cert: &CertificateDer<'_>) -> bool {
        self.pinned.iter().any(|p| p.as_ref() == cert.as_ref())
    }
}

impl ServerCertVerifier for UpstreamVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(e) if is_ca_used_as_end_entity(&e) => {
                if self.is_pinned(end_entity) {
                    verify_pinned(end_entity, server_name, now)
                } else {
                    Err(CaPresentedAsOwn.into())
                }
            }
            verdict => verdict,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// webpki refused the certificate only because it is a CA's (CA:TRUE).
fn is_ca_used_as_end_entity(e: &rustls::Error) -> bool {
    match e {
        rustls::Error::InvalidCertificate(CertificateError::Other(other)) => matches!(
            other.0.downcast_ref::<webpki::Error>(),
            Some(webpki::Error::CaUsedAsEndEntity)
        ),
        _ => false,
    }
}

/// A pinned certificate is the server's if it names the server and is
/// valid now; its issuer is itself, and the `ca` file vouches for it.
fn verify_pinned(
    cert: &CertificateDer<'_>,
    server_name: &ServerName<'_>,
    now: UnixTime,
) -> Result<ServerCertVerified, rustls::Error> {
    let parsed = ParsedCertificate::try_from(cert)?;
    rustls::client::verify_server_name(&parsed, server_name)?;
    within_validity(cert, now)?;
    Ok(ServerCertVerified::assertion())
}

/// The certificate's notBefore..notAfter holds `now`, with rustls's
/// errors for either side (they name both times).
fn within_validity(cert: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let (_, x509) = x509_parser::parse_x509_certificate(cert.as_ref())
        .map_err(|_| rustls::Error::from(CertificateError::BadEncoding))?;
    let validity = x509.validity();
    let time = now.as_secs();
    let not_before = u64::try_from(validity.not_before.timestamp()).unwrap_or(0);
    let not_after = u64::try_from(validity.not_after.timestamp()).unwrap_or(0);
    if time < not_before {
        return Err(CertificateError::NotValidYetContext {
            time: now,
            not_before: UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_before)),
        }
        .into());
    }
    if time > not_after {
        return Err(CertificateError::ExpiredContext {
            time: now,
            not_after: UnixTime::since_unix_epoch(std::time::Duration::from_secs(not_after)),
        }
        .into());
    }
    Ok(())
}

/// A server presenting a CA certificate that is not pinned in `ca`: what
/// webpki calls CaUsedAsEndEntity, said so that the operator knows the
/// two ways out.
#[derive(Debug)]
pub struct CaPresentedAsOwn;

impl std::fmt::Display for CaPresentedAsOwn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "the server presents a CA certificate (CA:TRUE) as its own: re-issue it with \
             CA:FALSE, or put exactly that certificate in `ca`",
        )
    }
}

impl std::error::Error for CaPresentedAsOwn {}

impl From<CaPresentedAsOwn> for rustls::Error {
    fn from(e: CaPresentedAsOwn) -> Self {
        CertificateError::Other(OtherError(Arc::new(e))).into()
    }
}
