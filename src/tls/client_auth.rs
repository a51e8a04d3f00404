//! Client certificates (mTLS) on a listener: the verifier built from
//! `client_auth: {ca, required}`, and the verified certificate's subject as
//! nginx's `$ssl_client_s_dn` shows it.

use super::crypto::primitives::digest;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::RootCertStore;
use std::fmt::Write;
use std::path::Path;
use std::sync::Arc;
use x509_parser::asn1_rs::ToDer;

/// A listener's client certificate verification.
pub struct Verification {
    pub verifier: Arc<dyn ClientCertVerifier>,
    /// What the verification depends on (`required` and the CA
    /// certificates): the listener's session tickets are keyed by it
    /// (`ticket::SharedTicketer::for_context`).
    pub context: Vec<u8>,
}

/// A verifier of client certificates chaining to the certificates in `ca`.
/// `required: false` lets clients without a certificate in; one that is
/// offered must verify either way.
pub fn verifier(ca: &Path, required: bool) -> Result<Verification, String> {
    let chain = super::certs::read_chain(ca).map_err(|e| e.0)?;
    let mut context = vec![u8::from(required)];
    for c in &chain {
        context.extend_from_slice(digest::digest(&digest::SHA256, c).as_ref());
    }
    let mut roots = RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(chain);
    if added == 0 {
        return Err(format!("no usable CA certificate in {}", ca.display()));
    }
    let builder = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::provider());
    let builder = if required {
        builder
    } else {
        builder.allow_unauthenticated()
    };
    let verifier = builder
        .build()
        .map_err(|e| format!("cannot use the CA certificates in {}: {e}", ca.display()))?;
    Ok(Verification { verifier, context })
}

/// The subject of a certificate in RFC 2253 form, as nginx's
/// `$ssl_client_s_dn` (OpenSSL's XN_FLAG_RFC2253): the most specific RDN
/// first (`CN=client,O=Org,C=FR`), attributes of one RDN joined by `+`.
/// An unparsable certificate gives an empty string (rustls verified it, so
/// this does not happen in practice).
pub fn subject_dn(der: &[u8]) -> String {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return String::new();
    };
    let mut out = String::new();
    let rdns: Vec<_> = cert.subject().iter().collect();
    for (i, rdn) in rdns.iter().rev().enumerate() {
        if i > 0 {
            out.push(',');
        }
        for (j, atv) in rdn.iter().enumerate() {
            if j > 0 {
                out.push('+');
            }
            let oid = atv.attr_type();
            match short_name(&oid.to_id_string()) {
                Some(n) => out.push_str(n),
                None => out.push_str(&oid.to_id_string()),
            }
            out.push('=');
            match atv.as_str() {
                Ok(s) => escape_into(&mut out, s),
                // Not a string type: RFC 2253 §2.4, `#` and the DER in hex.
                Err(_) => {
                    out.push('#');
                    for b in atv.attr_value().to_der_vec().unwrap_or_default() {
                        let _ = write!(out, "{b:02X}");
                    }
                }
            }
        }
    }
    out
}

/// OpenSSL's short names for the attribute types it abbreviates.
fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.4" => "SN",
        "2.5.4.5" => "serialNumber",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "2.5.4.12" => "title",
        "2.5.4.42" => "GN",
        "2.5.4.46" => "dnQualifier",
        "0.9.2342.19200300.100.1.1" => "UID",
        "0.9.2342.19200300.100.1.25" => "DC",
        "1.2.840.113549.1.9.1" => "emailAddress",
        _ => return None,
    })
}

/// RFC 2253 §2.4 escaping: `,+"\<>;` anywhere, `#` or a space first, a
/// space last; control characters and every byte of a non-ASCII one as
/// `\XX`, as nginx writes them: the value goes into a header field, which
/// carries ASCII, and two subjects must never come out alike (`adminé`
/// lost its `é` on the way and read as `admin`).
fn escape_into(out: &mut String, s: &str) {
    let last = s.chars().count().saturating_sub(1);
    for (i, c) in s.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' => {
                out.push('\\');
                out.push(c);
            }
            '#' | ' ' if i == 0 => {
                out.push('\\');
                out.push(c);
            }
            ' ' if i == last => out.push_str("\\ "),
            c if c.is_control() || !c.is_ascii() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "\\{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_is_most_specific_first_and_escaped() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CountryName, "FR");
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Acme, Inc.");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, " client+1");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            subject_dn(cert.der()),
            "CN=\\ client\\+1,O=Acme\\, Inc.,C=FR"
        );
    }

    #[test]
    fn non_ascii_characters_are_escaped_byte_by_byte() {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "adminé");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(subject_dn(cert.der()), "CN=admin\\C3\\A9");
    }

    #[test]
    fn garbage_gives_an_empty_subject() {
        assert_eq!(subject_dn(&[]), "");
        assert_eq!(subject_dn(&[0x30, 0x03, 1, 2, 3]), "");
    }
}
