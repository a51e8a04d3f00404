//! The certificate expiry warning given at `-t`, at start and at reload.
//!
//! A warning, not an error: nginx loads expired certificates too, and
//! refusing one would turn a forgotten renewal into an outage of every name
//! the listener serves (a reload would fail, a restart would not start).
//! Clients that check dates refuse the expired certificate themselves.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Certificates expiring within this many days are reported before they
/// expire: two weeks leaves time to renew (Let's Encrypt renews at 30 days
/// left, so a working renewal never triggers it).
pub const WARN_DAYS: i64 = 14;

const DAY: i64 = 86_400;

/// Seconds since the Unix epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// The warning for the certificate in `path` expiring at `not_after`
/// (seconds since the epoch), seen at `now`; `None` while it has more than
/// [`WARN_DAYS`] days left.
pub fn warning(path: &Path, not_after: i64, now: i64) -> Option<String> {
    let left = not_after.saturating_sub(now);
    if left > WARN_DAYS * DAY {
        return None;
    }
    let when = utc(not_after);
    Some(if left <= 0 {
        format!(
            "certificate {} expired on {when} (clients that check dates refuse it): renew it",
            path.display()
        )
    } else {
        let days = left / DAY;
        let within = match days {
            0 => "less than a day".to_owned(),
            1 => "1 day".to_owned(),
            n => format!("{n} days"),
        };
        format!(
            "certificate {} expires on {when}, in {within}: renew it",
            path.display()
        )
    })
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
pub fn utc(secs: i64) -> String {
    let (y, mo, d) = crate::log::civil_from_days(secs.div_euclid(DAY));
    let rem = secs.rem_euclid(DAY);
    format!(
        "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN_2_2020: i64 = 1_577_923_200;

    #[test]
    fn expired_soon_and_fine() {
        let p = Path::new("/etc/a.crt");
        let expired = warning(p, JAN_2_2020, JAN_2_2020 + 1).unwrap();
        assert!(expired.contains("/etc/a.crt"), "{expired}");
        assert!(
            expired.contains("expired on 2020-01-02 00:00:00 UTC"),
            "{expired}"
        );
        let soon = warning(p, JAN_2_2020, JAN_2_2020 - 5 * DAY - 60).unwrap();
        assert!(
            soon.contains("expires on 2020-01-02 00:00:00 UTC, in 5 days"),
            "{soon}"
        );
        let today = warning(p, JAN_2_2020, JAN_2_2020 - 60).unwrap();
        assert!(today.contains("less than a day"), "{today}");
        assert!(warning(p, JAN_2_2020, JAN_2_2020 - 14 * DAY).is_some());
        assert!(warning(p, JAN_2_2020, JAN_2_2020 - 14 * DAY - 1).is_none());
    }

    #[test]
    fn extreme_dates_do_not_panic() {
        let p = Path::new("x");
        assert!(warning(p, i64::MIN, 0).is_some());
        assert!(warning(p, i64::MAX, 0).is_none());
        assert!(warning(p, 0, i64::MAX).is_some());
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }
}
