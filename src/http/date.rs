//! The `Date` header field (RFC 9110 §6.6.1) in IMF-fixdate form,
//! `Sun, 06 Nov 1994 08:49:37 GMT`, and a per-worker cache of it.
//!
//! A recipient with a clock adds `Date` to a response it forwards without
//! one, and forklb's own responses carry one too (as nginx's do). The text
//! changes once a second, so each worker formats it at most once a second
//! in its event loop and a response only copies 29 bytes.

// The calendar arithmetic the error log and the access log use too.
use crate::log::civil_from_days;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Length of an IMF-fixdate.
pub const LEN: usize = 29;

const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];

fn two_digits(out: &mut [u8], n: u64) {
    out[0] = b'0' + (n / 10 % 10) as u8;
    out[1] = b'0' + (n % 10) as u8;
}

/// The last second with a four-digit year: 9999-12-31 23:59:59.
const MAX_SECS: u64 = 253_402_300_799;

/// Formats seconds since the Unix epoch as an IMF-fixdate. A clock past
/// the year 9999 (gone wild) reads as its last second: the field keeps its
/// fixed length.
pub fn format(unix_secs: u64) -> [u8; LEN] {
    let unix_secs = unix_secs.min(MAX_SECS);
    let days = unix_secs / 86_400;
    let secs = unix_secs % 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let year = year as u64;
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[0..3].copy_from_slice(DAYS[(days % 7) as usize]);
    two_digits(&mut out[5..7], u64::from(day));
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize]);
    two_digits(&mut out[12..14], year / 100);
    two_digits(&mut out[14..16], year);
    two_digits(&mut out[17..19], secs / 3600);
    two_digits(&mut out[20..22], secs / 60 % 60);
    two_digits(&mut out[23..25], secs % 60);
    out
}

/// Seconds since the Unix epoch by the wall clock (0 if it is set before 1970).
fn wall_clock() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

/// The current date, formatted now: for the rare response sent where no
/// `DateCache` is at hand.
pub fn now() -> [u8; LEN] {
    format(wall_clock().as_secs())
}

/// The current date as text, refreshed when the wall-clock second changes.
pub struct DateCache {
    text: [u8; LEN],
    /// The wall-clock second `text` shows.
    secs: u64,
    /// When (by the event loop's clock) the next second may have begun.
    next_check: Instant,
}

impl DateCache {
    pub fn new(now: Instant) -> DateCache {
        let mut cache = DateCache {
            text: format(0),
            secs: u64::MAX,
            next_check: now,
        };
        cache.refresh(now);
        cache
    }

    /// Called by the event loop at every wake-up with the time it read
    /// anyway. Before the next second is due this is one comparison: no
    /// clock read, no formatting.
    pub fn refresh(&mut self, now: Instant) {
        if now < self.next_check {
            return;
        }
        let wall = wall_clock();
        if wall.as_secs() != self.secs {
            self.secs = wall.as_secs();
            self.text = format(self.secs);
        }
        // Wake-ups in the same second skip the clock read. The two clocks
        // may drift apart (NTP slews the wall clock): a check that comes
        // early only reads the clock again.
        self.next_check =
            now + (Duration::from_secs(1) - Duration::from_nanos(wall.subsec_nanos().into()));
    }

    /// The IMF-fixdate of the current second.
    /// The wall-clock second the text is of.
    pub fn unix_secs(&self) -> u64 {
        self.secs
    }

    pub fn text(&self) -> &[u8; LEN] {
        &self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(secs: u64) -> String {
        String::from_utf8(format(secs).to_vec()).unwrap()
    }

    #[test]
    fn known_instants() {
        assert_eq!(fmt(0), "Thu, 01 Jan 1970 00:00:00 GMT");
        // RFC 9110's example.
        assert_eq!(fmt(784_111_777), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(fmt(86_399), "Thu, 01 Jan 1970 23:59:59 GMT");
        assert_eq!(fmt(946_684_800), "Sat, 01 Jan 2000 00:00:00 GMT");
        assert_eq!(fmt(1_234_567_890), "Fri, 13 Feb 2009 23:31:30 GMT");
        assert_eq!(fmt(2_147_483_647), "Tue, 19 Jan 2038 03:14:07 GMT");
        assert_eq!(fmt(4_102_444_800), "Fri, 01 Jan 2100 00:00:00 GMT");
        assert_eq!(fmt(253_402_300_799), "Fri, 31 Dec 9999 23:59:59 GMT");
        assert_eq!(fmt(u64::MAX), "Fri, 31 Dec 9999 23:59:59 GMT");
    }

    #[test]
    fn leap_years() {
        // 2000 is a leap year (divisible by 400).
        assert_eq!(fmt(951_782_400), "Tue, 29 Feb 2000 00:00:00 GMT");
        assert_eq!(fmt(951_868_800), "Wed, 01 Mar 2000 00:00:00 GMT");
        // 2024 is one (divisible by 4); its last day is day 366.
        assert_eq!(fmt(1_709_164_800), "Thu, 29 Feb 2024 00:00:00 GMT");
        assert_eq!(fmt(1_735_603_200), "Tue, 31 Dec 2024 00:00:00 GMT");
        // 2023 is not: 28 February is followed by 1 March.
        assert_eq!(fmt(1_677_542_400), "Tue, 28 Feb 2023 00:00:00 GMT");
        assert_eq!(fmt(1_677_628_800), "Wed, 01 Mar 2023 00:00:00 GMT");
        // 2100 is not (divisible by 100, not by 400).
        assert_eq!(fmt(4_107_456_000), "Sun, 28 Feb 2100 00:00:00 GMT");
        assert_eq!(fmt(4_107_542_400), "Mon, 01 Mar 2100 00:00:00 GMT");
    }

    /// Every day of 400 years (a whole Gregorian cycle) follows the day
    /// before it: the day of the week turns, the date steps by one, and
    /// months have their lengths.
    #[test]
    fn consecutive_days_over_a_cycle() {
        let mut prev = civil_from_days(-1);
        assert_eq!(prev, (1969, 12, 31));
        for d in 0..146_097 {
            let (y, m, day) = civil_from_days(d);
            let (py, pm, pday) = prev;
            if day == 1 {
                let leap = py % 4 == 0 && (py % 100 != 0 || py % 400 == 0);
                let len = match pm {
                    2 if leap => 29,
                    2 => 28,
                    4 | 6 | 9 | 11 => 30,
                    _ => 31,
                };
                assert_eq!(pday, len, "{py}-{pm}");
                if m == 1 {
                    assert_eq!((y, pm), (py + 1, 12));
                } else {
                    assert_eq!((y, m), (py, pm + 1));
                }
            } else {
                assert_eq!((y, m, day), (py, pm, pday + 1));
            }
            prev = (y, m, day);
        }
    }

    #[test]
    fn cache_follows_the_clock() {
        let now = Instant::now();
        let cache = DateCache::new(now);
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let text = cache.text();
        assert!(
            *text == format(wall) || *text == format(wall - 1),
            "{}",
            String::from_utf8_lossy(text)
        );
        assert!(cache.next_check > now);
        assert!(cache.next_check <= now + Duration::from_secs(1));
    }
}
