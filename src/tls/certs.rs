//! Reading certificate chains and private keys from PEM files, checking
//! that they belong together, and learning what the leaf says about itself:
//! the names it serves (its DNS subject alternative names, for SNI
//! selection) and when it expires (for the expiry warning).

use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

/// A certificate chain with its key, ready to serve.
#[derive(Debug)]
pub struct LoadedCert {
    pub key: Arc<CertifiedKey>,
    /// DNS names from the leaf's subjectAltName, lowercase; `*.example.com`
    /// wildcards kept as written.
    pub names: Vec<String>,
    /// The leaf's notAfter, in seconds since the Unix epoch (UTC).
    pub not_after: i64,
}

/// What went wrong, naming the file (the operator's first question).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertError(pub String);

impl std::fmt::Display for CertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, CertError> {
    std::fs::read(path)
        .map_err(|e| CertError(format!("cannot read {what} file {}: {e}", path.display())))
}

/// Reads every certificate in a PEM file (leaf first, then the chain).
pub fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let pem = read(path, "certificate")?;
    let mut chain = Vec::new();
    for item in CertificateDer::pem_slice_iter(&pem) {
        let cert = item.map_err(|e| {
            CertError(format!(
                "invalid PEM in certificate file {}: {}",
                path.display(),
                pem_problem(&e)
            ))
        })?;
        chain.push(cert);
    }
    if chain.is_empty() {
        return Err(CertError(format!(
            "no certificate found in {} (expected a PEM \"BEGIN CERTIFICATE\" block)",
            path.display()
        )));
    }
    Ok(chain)
}

/// Reads the private key in a PEM file: PKCS#1 (RSA), PKCS#8 or SEC1 (EC).
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, CertError> {
    let pem = read(path, "key")?;
    // Checked before parsing: an encrypted PKCS#8 block is skipped as an
    // unknown label ("no private key found"), and a legacy encrypted block
    // fails as bad PEM or as an unsupported key. Neither tells the operator
    // that a passphrase is the problem.
    if is_encrypted_key(&pem) {
        return Err(CertError(format!(
            "key file {} is encrypted (passphrase-protected) and forklb cannot ask for the \
             passphrase: decrypt it once with `openssl pkey -in {} -out {}.dec` (keep it \
             readable by root only) and name the decrypted file in `key:`",
            path.display(),
            path.display(),
            path.display()
        )));
    }
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = match e {
            rustls_pki_types::pem::Error::NoItemsFound => {
                "no private key found (expected a PEM \"BEGIN PRIVATE KEY\", \"BEGIN RSA PRIVATE KEY\" or \"BEGIN EC PRIVATE KEY\" block)".to_owned()
            }
            other => format!("invalid PEM: {}", pem_problem(&other)),
        };
        CertError(format!("key file {}: {why}", path.display()))
    })
}

/// What is wrong with a PEM file, in words. rustls-pki-types prints the
/// labels and lines it quotes as lists of byte values
/// ("missing section end marker: [67, 69, 82, 84, ...]").
fn pem_problem(e: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    match e {
        Error::MissingSectionEnd { end_marker } => {
            let label = String::from_utf8_lossy(end_marker);
            format!(
                "a {label} section has no end line (\"-----END {label}-----\"): is the file cut off?"
            )
        }
        Error::IllegalSectionStart { line } => {
            let line = String::from_utf8_lossy(line);
            format!(
                "malformed section start line {:?} (expected \"-----BEGIN LABEL-----\")",
                line.trim_end()
            )
        }
        Error::Base64Decode(why) => format!("a section's base64 text is damaged ({why})"),
        other => other.to_string(),
    }
}

/// A PEM file holding a passphrase-protected key: PKCS#8
/// ("ENCRYPTED PRIVATE KEY") or OpenSSL's legacy PKCS#1/SEC1 encryption
/// (a "Proc-Type: 4,ENCRYPTED" header inside the block).
fn is_encrypted_key(pem: &[u8]) -> bool {
    let has = |needle: &[u8]| pem.windows(needle.len()).any(|w| w == needle);
    has(b"-----BEGIN ENCRYPTED PRIVATE KEY-----") || has(b"Proc-Type: 4,ENCRYPTED")
}

/// Loads a certificate/key pair and checks that the key is the
/// certificate's.
pub fn load_pair(cert: &Path, key: &Path) -> Result<LoadedCert, CertError> {
    let chain = read_chain(cert)?;
    let der = read_key(key)?;
    let provider = super::provider();
    let signing = provider.key_provider.load_private_key(der).map_err(|e| {
        CertError(format!(
            "unsupported private key in {}: {e} (RSA, ECDSA P-256/P-384 and Ed25519 are supported)",
            key.display()
        ))
    })?;
    let leaf = leaf_info(&chain[0])
        .map_err(|e| CertError(format!("cannot parse certificate {}: {e}", cert.display())))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            return Err(CertError(format!(
                "the key in {} does not match the certificate in {}",
                key.display(),
                cert.display()
            )))
        }
        Err(e) => {
            return Err(CertError(format!(
                "cannot check the key in {} against the certificate in {}: {e}",
                key.display(),
                cert.display()
            )))
        }
    }
    Ok(LoadedCert {
        key: Arc::new(certified),
        names: leaf.names,
        not_after: leaf.not_after,
    })
}

/// What forklb needs from the leaf certificate.
struct LeafInfo {
    names: Vec<String>,
    not_after: i64,
}

/// The DNS names in the certificate's subjectAltName extension and its
/// notAfter. x509-parser returns an error (never panics) on malformed DER.
fn leaf_info(der: &[u8]) -> Result<LeafInfo, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            if let GeneralName::DNSName(n) = name {
                names.push(n.to_ascii_lowercase());
            }
        }
    }
    Ok(LeafInfo {
        names,
        not_after: cert.validity().not_after.timestamp(),
    })
}

/// True if certificate name `pattern` (maybe `*.example.com`) covers
/// `host` (lowercase). A wildcard stands for exactly one label (RFC 6125).
pub fn name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(label, rest)| !label.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

#[cfg(test)]
mod tests {
    use super::{is_encrypted_key, leaf_info, name_matches, pem_problem};
    use rustls_pki_types::pem::Error as PemError;

    #[test]
    fn pem_problems_quote_labels_and_lines_as_text() {
        let cut = PemError::MissingSectionEnd {
            end_marker: b"CERTIFICATE".to_vec(),
        };
        assert_eq!(
            pem_problem(&cut),
            "a CERTIFICATE section has no end line (\"-----END CERTIFICATE-----\"): is the file cut off?"
        );
        let start = PemError::IllegalSectionStart {
            line: b"-----BEGIN CERTIFICATE---\n".to_vec(),
        };
        assert_eq!(
            pem_problem(&start),
            "malformed section start line \"-----BEGIN CERTIFICATE---\" (expected \"-----BEGIN LABEL-----\")"
        );
        let b64 = PemError::Base64Decode("InvalidCharacter".into());
        assert!(
            pem_problem(&b64).contains("base64"),
            "{}",
            pem_problem(&b64)
        );
    }

    #[test]
    fn garbage_certificates_are_errors() {
        assert!(leaf_info(&[]).is_err());
        assert!(leaf_info(&[0x30, 0x82, 0xff, 0xff, 1, 2, 3]).is_err());
        assert!(leaf_info(&[0x30; 300]).is_err());
        let mut noise = crate::tls::Noise(0x9e37_79b9);
        for len in 0..512 {
            assert!(leaf_info(&noise.bytes(len)).is_err());
        }
    }

    #[test]
    fn encrypted_keys_are_recognised() {
        assert!(is_encrypted_key(
            b"-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n"
        ));
        assert!(is_encrypted_key(
            b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00\n\nMIIB\n"
        ));
        assert!(!is_encrypted_key(
            b"-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"
        ));
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("a.test", "a.test"));
        assert!(!name_matches("a.test", "b.test"));
        assert!(name_matches("*.b.test", "x.b.test"));
        assert!(!name_matches("*.b.test", "b.test"));
        assert!(!name_matches("*.b.test", "y.x.b.test"));
        assert!(!name_matches("*.b.test", ".b.test"));
    }
}
