//! Session tickets that every worker can open, so a client resumes its
//! session whichever worker accepts its next connection.
//!
//! The master draws one random secret before it forks (workers inherit it
//! in memory; a reload keeps it, so tickets survive HUP). Ticket keys are
//! derived from it per period of `ROTATE_SECS`: HMAC-SHA256(secret, period
//! number). All workers compute the same key for the same period without
//! talking to each other, keys rotate on their own, and a ticket is accepted
//! during its own period and the next one, then never again.

use super::crypto::primitives::aead::{
    Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN,
};
use super::crypto::primitives::hmac;
use super::crypto::primitives::rand::{SecureRandom, SystemRandom};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

/// How long one ticket key is used to seal new tickets.
pub const ROTATE_SECS: u64 = 12 * 60 * 60;

const PERIOD_LEN: usize = 4;
const TAG_LEN: usize = 16;

static SECRET: OnceLock<[u8; 32]> = OnceLock::new();

/// The process-wide ticket secret, drawn on first use (in the master,
/// when the first TLS listener is configured, before any worker exists).
fn secret() -> &'static [u8; 32] {
    SECRET.get_or_init(|| {
        let mut s = [0u8; 32];
        // Without randomness no safe key exists; zeroes would be worse
        // than no resumption, so fall back to per-process keys below.
        if SystemRandom::new().fill(&mut s).is_err() {
            log::warn!("no system randomness for the TLS ticket key");
        }
        s
    })
}

#[derive(Debug)]
pub struct SharedTicketer {
    secret: [u8; 32],
    rng: SystemRandom,
}

impl SharedTicketer {
    pub fn new() -> SharedTicketer {
        SharedTicketer::with_secret(*secret())
    }

    /// Tickets of a listener that verifies client certificates: sealed with
    /// keys of their own, derived from the secret and `context` (what the
    /// verification depends on). rustls resumes a session without checking
    /// the listener's client_auth again, so a ticket from a listener without
    /// client_auth (or with another CA) must not open here: it would let a
    /// client skip the certificate. A foreign ticket fails to open and the
    /// client does a full handshake, as with an unknown ticket.
    pub fn for_context(context: &[u8]) -> SharedTicketer {
        SharedTicketer::with_secret(derive(secret(), context))
    }

    fn with_secret(secret: [u8; 32]) -> SharedTicketer {
        SharedTicketer {
            secret,
            rng: SystemRandom::new(),
        }
    }

    fn key(&self, period: u32) -> Option<LessSafeKey> {
        let mac_key = hmac::Key::new(hmac::HMAC_SHA256, &self.secret);
        let mut ctx = hmac::Context::with_key(&mac_key);
        ctx.update(b"forklb session ticket key v1");
        ctx.update(&period.to_be_bytes());
        let derived = ctx.sign();
        let unbound = UnboundKey::new(&AES_256_GCM, derived.as_ref()).ok()?;
        Some(LessSafeKey::new(unbound))
    }

    fn seal_at(&self, plain: &[u8], period: u32) -> Option<Vec<u8>> {
        let key = self.key(period)?;
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).ok()?;
        let mut out = Vec::with_capacity(PERIOD_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(&period.to_be_bytes());
        out.extend_from_slice(&nonce);
        let mut body = plain.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(period.to_be_bytes()),
            &mut body,
        )
        .ok()?;
        out.extend_from_slice(&body);
        Some(out)
    }

    fn open_at(&self, ticket: &[u8], now_period: u32) -> Option<Vec<u8>> {
        if ticket.len() < PERIOD_LEN + NONCE_LEN + TAG_LEN {
            return None;
        }
        let (period, rest) = ticket.split_at(PERIOD_LEN);
        let period = u32::from_be_bytes(period.try_into().ok()?);
        if period != now_period && Some(period) != now_period.checked_sub(1) {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let key = self.key(period)?;
        let mut body = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(period.to_be_bytes()), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// HMAC-SHA256(secret, label || context): a secret per context.
fn derive(secret: &[u8; 32], context: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let mut ctx = hmac::Context::with_key(&key);
    ctx.update(b"forklb ticket context v1");
    ctx.update(context);
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.sign().as_ref());
    out
}

impl Default for SharedTicketer {
    fn default() -> Self {
        SharedTicketer::new()
    }
}

fn current_period() -> u32 {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    (secs / ROTATE_SECS) as u32
}

impl rustls::server::ProducesTickets for SharedTicketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        ROTATE_SECS as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.seal_at(plain, current_period())
    }

    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.open_at(cipher, current_period())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_open_in_their_period_and_the_next_only() {
        let t = SharedTicketer::with_secret([7; 32]);
        let sealed = t.seal_at(b"session state", 100).unwrap();
        assert_eq!(t.open_at(&sealed, 100).unwrap(), b"session state");
        assert_eq!(t.open_at(&sealed, 101).unwrap(), b"session state");
        assert!(t.open_at(&sealed, 102).is_none());
        assert!(t.open_at(&sealed, 99).is_none());
    }

    #[test]
    fn another_process_with_the_same_secret_opens_the_ticket() {
        let a = SharedTicketer::with_secret([1; 32]);
        let b = SharedTicketer::with_secret([1; 32]);
        let c = SharedTicketer::with_secret([2; 32]);
        let sealed = a.seal_at(b"x", 5).unwrap();
        assert_eq!(b.open_at(&sealed, 5).unwrap(), b"x");
        assert!(c.open_at(&sealed, 5).is_none());
    }

    #[test]
    fn tickets_of_one_context_do_not_open_in_another() {
        let plain = SharedTicketer::with_secret([4; 32]);
        let mtls = SharedTicketer::with_secret(derive(&[4; 32], b"ca one"));
        let other = SharedTicketer::with_secret(derive(&[4; 32], b"ca two"));
        let again = SharedTicketer::with_secret(derive(&[4; 32], b"ca one"));
        let sealed = plain.seal_at(b"x", 5).unwrap();
        assert!(mtls.open_at(&sealed, 5).is_none());
        let sealed = mtls.seal_at(b"y", 5).unwrap();
        assert!(plain.open_at(&sealed, 5).is_none());
        assert!(other.open_at(&sealed, 5).is_none());
        assert_eq!(again.open_at(&sealed, 5).unwrap(), b"y");
    }

    #[test]
    fn tampered_or_short_tickets_are_refused() {
        let t = SharedTicketer::with_secret([3; 32]);
        let mut sealed = t.seal_at(b"state", 9).unwrap();
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        assert!(t.open_at(&sealed, 9).is_none());
        assert!(t.open_at(&[], 9).is_none());
        assert!(t.open_at(&[0; 20], 9).is_none());
        // A forged period field changes the AAD: refused.
        let mut sealed = t.seal_at(b"state", 9).unwrap();
        sealed[3] = 10;
        assert!(t.open_at(&sealed, 10).is_none());
    }
}
