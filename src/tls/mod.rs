//! TLS with rustls (the provider and library named in `crypto`): termination on listeners (`server`),
//! HTTPS to upstreams (`client`, its certificate check `upstream_verify`), session tickets shared by the workers
//! (`ticket`), certificate files (`certs`), the choice among them for a
//! ClientHello (`resolve`), the expiry warning (`expiry`) and the
//! non-blocking session the proxy reads and writes (`stream`); listener
//! policy: client certificates (`client_auth`), stapled OCSP responses
//! (`ocsp`, read with the small DER reader `der`), versions (`versions`)
//! and key exchange groups (`groups`).
//!
//! Everything is built when the configuration is loaded — in the master,
//! before it forks and while it may still read root-only key files — so
//! `-t` and a reload check the files, and workers only use the result.

pub mod certs;
pub mod client;
pub mod client_auth;
pub mod crypto;
pub mod der;
pub mod expiry;
pub mod groups;
pub mod ocsp;
pub mod resolve;
pub mod server;
pub mod stream;
pub mod ticket;
pub mod upstream_verify;
pub mod versions;

pub use crypto::provider;
pub use stream::TlsStream;

/// Pseudo-random bytes for the parsers' garbage tests (xorshift32: the
/// same bytes on every run, so a failure reproduces).
#[cfg(test)]
pub(crate) struct Noise(pub u32);

#[cfg(test)]
impl Noise {
    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 17;
                self.0 ^= self.0 << 5;
                self.0 as u8
            })
            .collect()
    }
}
