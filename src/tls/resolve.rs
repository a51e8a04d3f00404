//! Choosing the certificate for a ClientHello: by name (SNI), then by what
//! the client can verify.
//!
//! Several certificates may serve the same names — ECDSA plus RSA is the
//! common nginx setup: ECDSA is smaller and faster, RSA is for the clients
//! that offer nothing else. Taking the first certificate that matches the
//! name would fail the handshake (handshake_failure) for every client that
//! cannot use that one, so the choice looks at the client's offer:
//!
//! 1. the candidates are the certificates naming the SNI name exactly, else
//!    those whose wildcard covers it (as nginx and HAProxy prefer exact
//!    names); with no SNI, or none covering it, the default certificates:
//!    the first one listed and those serving exactly the same names;
//! 2. of those, the first ECDSA certificate the client can use, else the
//!    first certificate it can use (in the listed order), else the first
//!    candidate (the handshake then fails as it must, with rustls's alert).
//!
//! "Can use" means one of its signature schemes is in the client's
//! signature_algorithms, and, for TLS 1.2, one of the cipher suites both
//! sides have authenticates with its key type (ECDHE-ECDSA or ECDHE-RSA).
//! rustls already narrows the schemes it hands us to the common suites; the
//! suite check states that rule here instead of relying on it.

use super::certs::{self, LoadedCert};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CipherSuite, SignatureAlgorithm, SignatureScheme, SupportedCipherSuite};
use std::sync::Arc;

#[derive(Debug)]
pub struct CertResolver {
    certs: Vec<LoadedCert>,
    /// The cipher suites the server offers (the provider's).
    suites: Vec<SupportedCipherSuite>,
}

impl CertResolver {
    pub fn new(certs: Vec<LoadedCert>, suites: Vec<SupportedCipherSuite>) -> CertResolver {
        CertResolver { certs, suites }
    }

    /// The certificates that may answer `sni`, in the listed order.
    fn candidates(&self, sni: Option<&str>) -> Vec<&LoadedCert> {
        if let Some(name) = sni {
            let name = name.to_ascii_lowercase();
            let name = name.trim_end_matches('.');
            // A certificate naming the host exactly wins over a wildcard
            // covering it, wherever they are listed, as nginx and HAProxy
            // choose (a wildcard default and a dedicated certificate for
            // one host is a common setup).
            let exact: Vec<&LoadedCert> = self
                .certs
                .iter()
                .filter(|c| c.names.iter().any(|p| p.eq_ignore_ascii_case(name)))
                .collect();
            if !exact.is_empty() {
                return exact;
            }
            let by_name: Vec<&LoadedCert> = self
                .certs
                .iter()
                .filter(|c| c.names.iter().any(|p| certs::name_matches(p, name)))
                .collect();
            if !by_name.is_empty() {
                return by_name;
            }
        }
        let Some(first) = self.certs.first() else {
            return Vec::new();
        };
        let defaults = name_set(first);
        self.certs
            .iter()
            .filter(|c| name_set(c) == defaults)
            .collect()
    }

    /// True if a client offering `schemes` and `offered` suites can
    /// authenticate this certificate.
    fn usable(&self, c: &LoadedCert, schemes: &[SignatureScheme], offered: &[CipherSuite]) -> bool {
        let key = &c.key.key;
        key.choose_scheme(schemes).is_some()
            && self
                .suites
                .iter()
                .filter(|s| offered.contains(&s.suite()))
                .any(|s| s.usable_for_signature_algorithm(key.algorithm()))
    }

    fn pick(
        &self,
        sni: Option<&str>,
        schemes: &[SignatureScheme],
        offered: &[CipherSuite],
    ) -> Option<&LoadedCert> {
        let candidates = self.candidates(sni);
        let usable: Vec<&LoadedCert> = candidates
            .iter()
            .copied()
            .filter(|c| self.usable(c, schemes, offered))
            .collect();
        usable
            .iter()
            .find(|c| c.key.key.algorithm() == SignatureAlgorithm::ECDSA)
            .or_else(|| usable.first())
            .or_else(|| candidates.first())
            .copied()
    }
}

/// A certificate's names as a sorted set, to compare with another's.
fn name_set(c: &LoadedCert) -> Vec<&str> {
    let mut names: Vec<&str> = c.names.iter().map(String::as_str).collect();
    names.sort_unstable();
    names.dedup();
    names
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(
            hello.server_name(),
            hello.signature_schemes(),
            hello.cipher_suites(),
        )
        .map(|c| Arc::clone(&c.key))
    }
}

/// True if certificate `i` has no DNS names while the first one has some:
/// SNI never selects it and it is not one of the default certificates.
pub fn unreachable(all: &[LoadedCert], i: usize) -> bool {
    let (Some(first), Some(c)) = (all.first(), all.get(i)) else {
        return false;
    };
    i > 0 && c.names.is_empty() && !first.names.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    use SignatureScheme as S;

    /// A certificate entry for `names` whose key is of `alg` (the
    /// certificate bytes are irrelevant to the choice).
    fn entry(names: &[&str], alg: &'static rcgen::SignatureAlgorithm) -> LoadedCert {
        let key = rcgen::KeyPair::generate_for(alg).expect("key");
        let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let signing = super::super::provider()
            .key_provider
            .load_private_key(der)
            .expect("signing key");
        LoadedCert {
            key: Arc::new(CertifiedKey::new(
                vec![CertificateDer::from(vec![0])],
                signing,
            )),
            names: names.iter().map(|n| n.to_string()).collect(),
            not_after: 0,
        }
    }

    fn resolver(certs: Vec<LoadedCert>) -> CertResolver {
        CertResolver::new(certs, super::super::provider().cipher_suites.clone())
    }

    const TLS13: CipherSuite = CipherSuite::TLS13_AES_128_GCM_SHA256;
    const ECDHE_RSA: CipherSuite = CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256;
    const ECDHE_ECDSA: CipherSuite = CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256;

    /// Index of the chosen certificate.
    fn chosen(r: &CertResolver, sni: Option<&str>, s: &[S], suites: &[CipherSuite]) -> usize {
        let c = r.pick(sni, s, suites).expect("a certificate");
        r.certs.iter().position(|x| std::ptr::eq(x, c)).unwrap()
    }

    #[test]
    fn the_client_offer_chooses_among_certificates_for_a_name() {
        // RSA keys cannot be generated with rcgen's ring backend: Ed25519 stands for "the
        // other key type" next to ECDSA here; the integration tests use RSA.
        for order in [[0, 1], [1, 0]] {
            let mut certs: Vec<Option<LoadedCert>> = vec![
                Some(entry(&["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256)),
                Some(entry(&["a.test"], &rcgen::PKCS_ED25519)),
            ];
            let listed: Vec<LoadedCert> = order.iter().map(|&i| certs[i].take().unwrap()).collect();
            let ecdsa = order.iter().position(|&i| i == 0).unwrap();
            let ed = 1 - ecdsa;
            let r = resolver(listed);
            let all = [S::ECDSA_NISTP256_SHA256, S::ED25519, S::RSA_PSS_SHA256];
            for sni in [Some("a.test"), None, Some("other.test")] {
                assert_eq!(
                    chosen(&r, sni, &all, &[TLS13]),
                    ecdsa,
                    "{sni:?}: ECDSA first"
                );
                assert_eq!(chosen(&r, sni, &[S::ED25519], &[TLS13]), ed, "{sni:?}");
                assert_eq!(
                    chosen(&r, sni, &[S::ECDSA_NISTP256_SHA256], &[TLS13]),
                    ecdsa,
                    "{sni:?}"
                );
                // TLS 1.2 with ECDHE-RSA suites only: the ECDSA key cannot sign
                // for them; Ed25519 cannot either, so the first listed is sent.
                assert_eq!(chosen(&r, sni, &all, &[ECDHE_RSA]), 0, "{sni:?}");
                assert_eq!(chosen(&r, sni, &all, &[ECDHE_ECDSA]), ecdsa, "{sni:?}");
            }
        }
    }

    #[test]
    fn names_come_first_and_defaults_share_the_first_names() {
        let r = resolver(vec![
            entry(&["a.test"], &rcgen::PKCS_ED25519),
            entry(&["*.b.test"], &rcgen::PKCS_ECDSA_P256_SHA256),
            entry(&["a.test"], &rcgen::PKCS_ECDSA_P256_SHA256),
        ]);
        let all = [S::ECDSA_NISTP256_SHA256, S::ED25519];
        assert_eq!(chosen(&r, Some("x.b.test"), &all, &[TLS13]), 1);
        // Only b's certificate covers the name: sent even if unusable.
        assert_eq!(chosen(&r, Some("x.b.test"), &[S::ED25519], &[TLS13]), 1);
        assert_eq!(chosen(&r, Some("A.TEST."), &all, &[TLS13]), 2);
        assert_eq!(chosen(&r, None, &all, &[TLS13]), 2);
        assert_eq!(chosen(&r, Some("none.test"), &[S::ED25519], &[TLS13]), 0);
    }

    #[test]
    fn an_exact_name_wins_over_a_wildcard_listed_before_it() {
        let r = resolver(vec![
            entry(&["default.test"], &rcgen::PKCS_ECDSA_P256_SHA256),
            entry(&["*.w.test"], &rcgen::PKCS_ECDSA_P256_SHA256),
            entry(&["x.w.test"], &rcgen::PKCS_ECDSA_P256_SHA256),
        ]);
        let all = [S::ECDSA_NISTP256_SHA256];
        assert_eq!(chosen(&r, Some("x.w.test"), &all, &[TLS13]), 2);
        assert_eq!(chosen(&r, Some("X.W.TEST."), &all, &[TLS13]), 2);
        assert_eq!(chosen(&r, Some("y.w.test"), &all, &[TLS13]), 1);
        assert_eq!(chosen(&r, Some("a.b.w.test"), &all, &[TLS13]), 0);
    }

    #[test]
    fn no_certificates_no_answer() {
        let r = resolver(Vec::new());
        assert!(r.pick(Some("a.test"), &[S::ED25519], &[TLS13]).is_none());
    }

    #[test]
    fn nameless_certificates_after_a_named_first_are_unreachable() {
        let certs = vec![
            entry(&["a.test"], &rcgen::PKCS_ED25519),
            entry(&[], &rcgen::PKCS_ED25519),
        ];
        assert!(!unreachable(&certs, 0));
        assert!(unreachable(&certs, 1));
        assert!(!unreachable(&certs, 2));
    }
}
