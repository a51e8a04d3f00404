//! A certificate's stapled OCSP response (`certificates[].ocsp`): a DER
//! OCSPResponse file (RFC 6960 §4.2.1), as `openssl ocsp -respout` writes
//! it, sent in the handshake as is. It is checked when the configuration
//! is loaded (start, `-t`, HUP), so a stale or foreign response is never
//! stapled: clients that honour stapling would fail on it. Checked:
//!
//! * `responseStatus` is `successful` and the response is a basic one;
//! * one of its SingleResponses is for this certificate: same serial number
//!   and the hash of the certificate's issuer name (and of the issuer's key,
//!   when the chain in the cert file holds the issuer);
//! * that response says `good` (a `revoked` staple makes clients refuse the
//!   certificate) and its `nextUpdate`, when present, is not past.
//!
//! The responder's signature is not verified: the file is the operator's,
//! placed next to the certificate, like nginx's `ssl_stapling_file`.

use super::crypto::primitives::digest;
use super::der::{self, DerError, Reader};
use rustls::pki_types::CertificateDer;
use std::path::Path;

/// id-pkix-ocsp-basic (1.3.6.1.5.5.7.48.1.1), DER contents.
const OCSP_BASIC: &[u8] = &[0x2b, 0x06, 0x01, 0x05, 0x05, 0x07, 0x30, 0x01, 0x01];
/// id-sha1 (1.3.14.3.2.26).
const SHA1: &[u8] = &[0x2b, 0x0e, 0x03, 0x02, 0x1a];
/// id-sha256 (2.16.840.1.101.3.4.2.1).
const SHA256: &[u8] = &[0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01];

/// Why an OCSP response file is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OcspError {
    Read(String),
    Malformed(DerError),
    /// `responseStatus` other than successful (0).
    Status(u8),
    /// Not an id-pkix-ocsp-basic response.
    NotBasic,
    /// The certificate itself could not be parsed.
    Certificate(String),
    /// No SingleResponse for this certificate's serial and issuer.
    NotForCertificate,
    Revoked,
    Unknown,
    /// `nextUpdate` (seconds since the epoch) is past.
    Expired(i64),
    BadTime,
}

/// An error with the file it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub path: String,
    pub error: OcspError,
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.path;
        match &self.error {
            OcspError::Read(e) => write!(f, "cannot read OCSP response file {p}: {e}"),
            OcspError::Malformed(e) => write!(f, "OCSP response {p} is not a DER OCSPResponse: {e}"),
            OcspError::Status(s) => write!(
                f,
                "OCSP response {p} has responseStatus {s} ({}), not successful",
                status_name(*s)
            ),
            OcspError::NotBasic => write!(f, "OCSP response {p} is not a basic OCSP response"),
            OcspError::Certificate(e) => write!(f, "OCSP response {p}: cannot parse the certificate: {e}"),
            OcspError::NotForCertificate => write!(
                f,
                "OCSP response {p} is not for this certificate (no response with its serial number and issuer)"
            ),
            OcspError::Revoked => write!(f, "OCSP response {p} says the certificate is revoked"),
            OcspError::Unknown => write!(f, "OCSP response {p} says the certificate status is unknown"),
            OcspError::Expired(t) => write!(
                f,
                "OCSP response {p} has expired (nextUpdate {} is past)",
                super::expiry::utc(*t)
            ),
            OcspError::BadTime => write!(f, "OCSP response {p} has a malformed time"),
        }
    }
}

fn status_name(s: u8) -> &'static str {
    match s {
        1 => "malformedRequest",
        2 => "internalError",
        3 => "tryLater",
        5 => "sigRequired",
        6 => "unauthorized",
        _ => "unknown status",
    }
}

impl From<DerError> for OcspError {
    fn from(e: DerError) -> OcspError {
        OcspError::Malformed(e)
    }
}

/// Reads `path` and checks it is a current, good response for the leaf of
/// `chain` at `now` (seconds since the epoch); returns the bytes to staple.
pub fn load(path: &Path, chain: &[CertificateDer<'_>], now: i64) -> Result<Vec<u8>, FileError> {
    let fail = |error| FileError {
        path: path.display().to_string(),
        error,
    };
    let der = std::fs::read(path).map_err(|e| fail(OcspError::Read(e.to_string())))?;
    check(&der, chain, now).map_err(fail)?;
    Ok(der)
}

/// What identifies a certificate in an OCSP CertID.
struct Subject<'a> {
    serial: &'a [u8],
    issuer_name: &'a [u8],
    /// The issuer's subjectPublicKey bits, when the chain holds the issuer.
    issuer_key: Option<&'a [u8]>,
}

/// The checks of the module documentation.
pub fn check(der: &[u8], chain: &[CertificateDer<'_>], now: i64) -> Result<(), OcspError> {
    let leaf = chain
        .first()
        .ok_or_else(|| OcspError::Certificate("empty chain".into()))?;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| OcspError::Certificate(e.to_string()))?;
    let issuer_der = cert.issuer().as_raw();
    // The issuer is the chain certificate whose subject is the leaf's
    // issuer; its key is hashed into the CertID too.
    let parsed: Vec<_> = chain[1..]
        .iter()
        .filter_map(|c| x509_parser::parse_x509_certificate(c).ok().map(|(_, c)| c))
        .collect();
    let issuer_key = parsed
        .iter()
        .find(|c| c.subject().as_raw() == issuer_der)
        .map(|c| c.public_key().subject_public_key.data.as_ref());
    let subject = Subject {
        serial: cert.raw_serial(),
        issuer_name: issuer_der,
        issuer_key,
    };
    let single = find_single(der, &subject)?;
    match single.status {
        CertStatus::Good => {}
        CertStatus::Revoked => return Err(OcspError::Revoked),
        CertStatus::Unknown => return Err(OcspError::Unknown),
    }
    if let Some(next) = single.next_update {
        if next < now {
            return Err(OcspError::Expired(next));
        }
    }
    Ok(())
}

enum CertStatus {
    Good,
    Revoked,
    Unknown,
}

struct Single {
    status: CertStatus,
    next_update: Option<i64>,
}

/// Walks OCSPResponse → BasicOCSPResponse → ResponseData → responses and
/// returns the SingleResponse for `subject`.
fn find_single(der: &[u8], subject: &Subject) -> Result<Single, OcspError> {
    let mut top = Reader::new(der);
    let mut resp = Reader::new(top.expect(der::SEQUENCE)?);
    let status = resp.expect(der::ENUMERATED)?;
    match status {
        [0] => {}
        [s] => return Err(OcspError::Status(*s)),
        _ => return Err(OcspError::Status(u8::MAX)),
    }
    let bytes = resp
        .expect(der::explicit(0))
        .map_err(|_| OcspError::NotBasic)?;
    let mut bytes = Reader::new(Reader::new(bytes).expect(der::SEQUENCE)?);
    if bytes.expect(der::OID)? != OCSP_BASIC {
        return Err(OcspError::NotBasic);
    }
    let basic = bytes.expect(der::OCTET_STRING)?;
    let mut basic = Reader::new(Reader::new(basic).expect(der::SEQUENCE)?);
    let mut data = Reader::new(basic.expect(der::SEQUENCE)?);
    data.optional(der::explicit(0))?; // version
    match data.peek_tag() {
        Some(t) if t == der::explicit(1) || t == der::explicit(2) => {
            data.read()?; // responderID
        }
        Some(found) => {
            return Err(DerError::Unexpected {
                wanted: der::explicit(1),
                found,
            }
            .into())
        }
        None => return Err(DerError::Missing(der::explicit(1)).into()),
    }
    data.expect(der::GENERALIZED_TIME)?; // producedAt
    let mut responses = Reader::new(data.expect(der::SEQUENCE)?);
    while !responses.is_empty() {
        let mut single = Reader::new(responses.expect(der::SEQUENCE)?);
        let cert_id = single.expect(der::SEQUENCE)?;
        let status = single.read()?;
        let status = match status.tag {
            0x80 => CertStatus::Good,
            0xa1 => CertStatus::Revoked,
            0x82 => CertStatus::Unknown,
            found => {
                return Err(DerError::Unexpected {
                    wanted: 0x80,
                    found,
                }
                .into());
            }
        };
        single.expect(der::GENERALIZED_TIME)?; // thisUpdate
        let next_update = match single.optional(der::explicit(0))? {
            Some(t) => Some(
                der::generalized_time(Reader::new(t).expect(der::GENERALIZED_TIME)?)
                    .ok_or(OcspError::BadTime)?,
            ),
            None => None,
        };
        if cert_id_matches(cert_id, subject)? {
            return Ok(Single {
                status,
                next_update,
            });
        }
    }
    Err(OcspError::NotForCertificate)
}

/// CertID ::= SEQUENCE { hashAlgorithm, issuerNameHash, issuerKeyHash,
/// serialNumber }. An unknown hash algorithm cannot match.
fn cert_id_matches(cert_id: &[u8], s: &Subject) -> Result<bool, OcspError> {
    let mut id = Reader::new(cert_id);
    let mut alg = Reader::new(id.expect(der::SEQUENCE)?);
    let alg = alg.expect(der::OID)?;
    let name_hash = id.expect(der::OCTET_STRING)?;
    let key_hash = id.expect(der::OCTET_STRING)?;
    let serial = id.expect(der::INTEGER)?;
    let algorithm = match alg {
        SHA1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        SHA256 => &digest::SHA256,
        _ => return Ok(false),
    };
    let hash = |b: &[u8]| digest::digest(algorithm, b);
    Ok(serial == s.serial
        && hash(s.issuer_name).as_ref() == name_hash
        && s.issuer_key.is_none_or(|k| hash(k).as_ref() == key_hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf() -> CertificateDer<'static> {
        let params = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        CertificateDer::from(params.self_signed(&key).unwrap().der().to_vec())
    }

    #[test]
    fn broken_files_are_errors_not_panics() {
        let chain = [leaf()];
        assert!(matches!(
            check(&[], &chain, 0),
            Err(OcspError::Malformed(_))
        ));
        // OCSPResponse { tryLater }
        assert_eq!(
            check(&[0x30, 0x03, 0x0a, 0x01, 0x03], &chain, 0),
            Err(OcspError::Status(3))
        );
        // successful, without responseBytes
        assert_eq!(
            check(&[0x30, 0x03, 0x0a, 0x01, 0x00], &chain, 0),
            Err(OcspError::NotBasic)
        );
        // Every prefix of a plausible start, and pseudo-random bytes.
        let start = [
            0x30, 0x82, 0x01, 0x00, 0x0a, 0x01, 0x00, 0xa0, 0x82, 0x00, 0xf0, 0x30,
        ];
        for n in 0..start.len() {
            assert!(check(&start[..n], &chain, 0).is_err());
        }
        let mut noise = crate::tls::Noise(0x2545_f491);
        for len in 0..400 {
            let mut bytes = noise.bytes(len);
            if let Some(b) = bytes.first_mut() {
                *b = 0x30;
            }
            assert!(check(&bytes, &chain, 0).is_err());
        }
        assert!(matches!(
            check(&[0x30, 0x03, 0x0a, 0x01, 0x00], &[], 0),
            Err(OcspError::Certificate(_))
        ));
    }
}
