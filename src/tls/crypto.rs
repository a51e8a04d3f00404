//! The one place that names the cryptography library: rustls's
//! `CryptoProvider` (handshakes, record encryption, key loading, certificate
//! verification) and the primitives forklb uses itself (session ticket
//! sealing, OCSP CertID and client-CA digests, the dashboard's admin token
//! HMAC). Both come from the same library, so switching it is this file and
//! the dependencies in Cargo.toml.
//!
//! aws-lc-rs, not ring: with an RSA-2048 certificate a full handshake costs
//! about half the CPU (AWS-LC signs with AVX-512 IFMA / AVX2 code where ring
//! has only generic Montgomery multiplication), ECDSA and bulk AES-GCM /
//! ChaCha20 cost about the same. Measured with `bench/tls_providers.py`
//! (README, "TLS performance"). Building it needs only a C compiler, as ring
//! did (aws-lc-sys compiles AWS-LC with the `cc` crate and prebuilt
//! assembly and bindings on Linux: no cmake, Go, Perl, NASM or clang).
//!
//! ring's API and aws-lc-rs's agree for what is used here (`aead`, `hmac`,
//! `rand`, `digest`), so the callers name `primitives::...` and do not
//! change with the library.

pub use aws_lc_rs as primitives;

use rustls::crypto::CryptoProvider;
use std::sync::Arc;

/// rustls's provider of the library: its default cipher suites (TLS 1.3
/// AES-256-GCM, AES-128-GCM, ChaCha20-Poly1305; the same for TLS 1.2 with
/// ECDHE), key exchange groups (X25519, P-256, P-384, then the hybrid
/// X25519MLKEM768), signature verification and key loading. rustls follows
/// the client's order of groups, so a client that lists X25519MLKEM768
/// first (browsers do) gets the post-quantum hybrid: measured with rustls
/// clients, 5 interleaved rounds of 2,000 ECDSA full handshakes with one
/// request each, the worker's CPU per handshake was 187 µs against 158 µs
/// with X25519 (+18 %). A listener's `tls.groups` narrows or reorders the
/// groups (`groups.rs`).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
