//! The dashboard's admin token: `<issued unix seconds>.<hex HMAC-SHA256>`
//! over the issue time with a secret the master draws once, before it forks
//! any worker. Every worker inherits the same secret, so a token from a page
//! one worker served is good on a POST another worker receives; a reload
//! (HUP) forks from the same master and keeps it, so tokens survive a
//! reload. A new master (binary upgrade, restart) draws a new one: pages
//! then get a fresh token with their next JSON poll. A token expires
//! `VALID_SECS` after it was issued.

// The crypto library of TLS (src/tls/crypto.rs), not a second one.
use crate::tls::crypto::primitives::hmac;
use crate::tls::crypto::primitives::rand::{SecureRandom, SystemRandom};
use std::sync::OnceLock;

/// How long a token is accepted after it was issued.
pub const VALID_SECS: u64 = 3600;

/// A token from the future by more than this is refused (clock skew
/// between workers cannot exist: one clock; this only bounds forgery
/// attempts with a future time, which the HMAC stops anyway).
const FUTURE_SLACK_SECS: u64 = 60;

/// What the MAC covers besides the time: a tag, so that the secret's MACs
/// can never be confused with another use of it.
const CONTEXT: &[u8] = b"forklb-dashboard-token:";

static KEY: OnceLock<Option<hmac::Key>> = OnceLock::new();

/// Draws the secret. The master calls it before forking; a worker that
/// calls `key` without it would draw a secret of its own, valid for its
/// own tokens only, so every entry point goes through here first.
pub fn init() {
    let _ = key();
}

/// The key, or None when the system has no randomness (then no token is
/// issued and every POST is refused: a guessable key would be worse).
fn key() -> Option<&'static hmac::Key> {
    KEY.get_or_init(|| {
        let rng = SystemRandom::new();
        match hmac::Key::generate(hmac::HMAC_SHA256, &rng) {
            Ok(k) => Some(k),
            Err(_) => {
                // `generate` fails only without randomness; try the raw
                // fill once more for the log's sake.
                let mut probe = [0u8; 1];
                let why = if rng.fill(&mut probe).is_err() {
                    "no system randomness"
                } else {
                    "key generation failed"
                };
                log::error!("dashboard admin tokens disabled: {why}");
                None
            }
        }
    })
    .as_ref()
}

fn message(issued: u64) -> Vec<u8> {
    let mut m = CONTEXT.to_vec();
    m.extend_from_slice(issued.to_string().as_bytes());
    m
}

/// A token issued at `now` (unix seconds); None without a key.
pub fn issue(now: u64) -> Option<String> {
    let tag = hmac::sign(key()?, &message(now));
    let mut out = format!("{now}.");
    for b in tag.as_ref() {
        out.push_str(&format!("{b:02x}"));
    }
    Some(out)
}

/// Why a token was refused (logged; the client only sees 403).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Malformed,
    Expired,
    Forged,
    NoKey,
}

impl Refused {
    pub fn reason(self) -> &'static str {
        match self {
            Refused::Malformed => "malformed token",
            Refused::Expired => "expired token",
            Refused::Forged => "invalid token",
            Refused::NoKey => "admin tokens unavailable",
        }
    }
}

/// Checks `token` at `now` (unix seconds). The MAC is compared in constant
/// time (`hmac::verify`).
pub fn check(token: &str, now: u64) -> Result<(), Refused> {
    let key = key().ok_or(Refused::NoKey)?;
    let (issued, hex) = token.split_once('.').ok_or(Refused::Malformed)?;
    if issued.is_empty() || !issued.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refused::Malformed);
    }
    let issued: u64 = issued.parse().map_err(|_| Refused::Malformed)?;
    let tag = decode_hex(hex).ok_or(Refused::Malformed)?;
    hmac::verify(key, &message(issued), &tag).map_err(|_| Refused::Forged)?;
    // Checked after the MAC: an expired token is still a genuine one.
    if issued > now + FUTURE_SLACK_SECS || now.saturating_sub(issued) > VALID_SECS {
        return Err(Refused::Expired);
    }
    Ok(())
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    // A SHA-256 tag: 32 bytes.
    if s.len() != 64 {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16);
    s.as_bytes()
        .chunks(2)
        .map(|p| Some((digit(p[0])? * 16 + digit(p[1])?) as u8))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_check_expire_forge() {
        let t = issue(1_000_000).unwrap();
        assert_eq!(check(&t, 1_000_000), Ok(()));
        assert_eq!(check(&t, 1_000_000 + VALID_SECS), Ok(()));
        assert_eq!(check(&t, 1_000_001 + VALID_SECS), Err(Refused::Expired));
        assert_eq!(check(&t, 1_000_000 - 61), Err(Refused::Expired));
        // Another time with the same MAC: forged.
        let (_, mac) = t.split_once('.').unwrap();
        assert_eq!(
            check(&format!("1000001.{mac}"), 1_000_001),
            Err(Refused::Forged)
        );
        let mut bad = t.clone();
        let last = bad.pop().unwrap();
        bad.push(if last == '0' { '1' } else { '0' });
        assert_eq!(check(&bad, 1_000_000), Err(Refused::Forged));
        for m in ["", ".", "abc", "12.", "12.zz", "-1.00", "1.0"] {
            assert_eq!(check(m, 1_000_000), Err(Refused::Malformed), "{m}");
        }
    }
}
