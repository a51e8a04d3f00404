//! Flood defences: per-connection budgets of frames that cost us work but
//! carry no request (RFC 9113 §10.5). Each is counted in one-second
//! windows on the clock the caller passes to `recv`; going over ends the
//! connection with GOAWAY(ENHANCE_YOUR_CALM) and a reason the glue logs
//! with the client's address.

use std::time::{Duration, Instant};

const WINDOW: Duration = Duration::from_secs(1);

/// What a frame is counted as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Each needs an answer (PING ack).
    Ping,
    /// Each needs an answer (SETTINGS ack) and may touch every stream.
    Settings,
    Priority,
    /// DATA without payload and without END_STREAM.
    EmptyData,
    WindowUpdate,
    /// Unknown frame types, which we ignore.
    Unknown,
    /// CONTINUATION frames adding nothing to the block.
    EmptyContinuation,
    /// Streams the client reset, or that we refused (CVE-2023-44487).
    Reset,
}

impl Kind {
    /// Per second. Browsers send a handful of each; the floods send
    /// thousands. WINDOW_UPDATE is generous: a fast download sends one per
    /// stream per window half.
    fn max(self) -> u32 {
        match self {
            Kind::Ping | Kind::Settings => 100,
            Kind::Priority => 1000,
            Kind::EmptyData | Kind::EmptyContinuation => 100,
            Kind::WindowUpdate => 10_000,
            Kind::Unknown => 200,
            Kind::Reset => 100,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Kind::Ping => "PING flood",
            Kind::Settings => "SETTINGS flood",
            Kind::Priority => "PRIORITY flood",
            Kind::EmptyData => "empty DATA flood",
            Kind::WindowUpdate => "WINDOW_UPDATE flood",
            Kind::Unknown => "unknown frame flood",
            Kind::EmptyContinuation => "CONTINUATION flood",
            Kind::Reset => "rapid reset (streams reset or refused)",
        }
    }
}

const KINDS: usize = 8;

fn index(kind: Kind) -> usize {
    kind as usize
}

/// Counters for one connection.
#[derive(Debug, Clone)]
pub struct Budgets {
    start: Option<Instant>,
    counts: [u32; KINDS],
    /// Over the connection's life: streams opened and streams reset, for
    /// the ratio test that catches a slower rapid reset.
    opened: u64,
    resets: u64,
    /// WINDOW_UPDATEs earned by the DATA frames we sent (one for the
    /// stream and one for the connection each): a client that gives back
    /// the window of what it received is not flooding, however fast it
    /// reads; only the ones beyond count against the budget.
    window_credit: u64,
}

/// Earned WINDOW_UPDATEs kept at most.
const WINDOW_CREDIT_MAX: u64 = 1 << 20;

impl Default for Budgets {
    fn default() -> Budgets {
        Budgets {
            start: None,
            counts: [0; KINDS],
            opened: 0,
            resets: 0,
            window_credit: 0,
        }
    }
}

/// A budget exceeded: the reason for the log line and GOAWAY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exceeded(pub &'static str);

/// After this many streams, resets of over 3/4 of them end the connection
/// whatever their rate.
const RATIO_MIN_STREAMS: u64 = 1000;

impl Budgets {
    /// Counts one frame of `kind` at `now`.
    pub fn hit(&mut self, kind: Kind, now: Instant) -> Result<(), Exceeded> {
        if kind == Kind::WindowUpdate && self.window_credit > 0 {
            self.window_credit -= 1;
            return Ok(());
        }
        match self.start {
            Some(start) if now.saturating_duration_since(start) < WINDOW => {}
            _ => {
                self.start = Some(now);
                self.counts = [0; KINDS];
            }
        }
        let count = self
            .counts
            .get_mut(index(kind))
            .ok_or(Exceeded("budget index"))?;
        *count = count.saturating_add(1);
        if kind == Kind::Reset {
            self.resets += 1;
            if self.opened >= RATIO_MIN_STREAMS && self.resets * 4 > self.opened * 3 {
                return Err(Exceeded("rapid reset (over 3/4 of the streams reset)"));
            }
        }
        if *count > kind.max() {
            return Err(Exceeded(kind.what()));
        }
        Ok(())
    }

    pub fn stream_opened(&mut self) {
        self.opened += 1;
    }

    /// We sent `frames` DATA frames: as many WINDOW_UPDATEs per stream
    /// and per connection are what a reader sends back.
    pub fn data_frames_sent(&mut self, frames: u64) {
        self.window_credit = self
            .window_credit
            .saturating_add(frames.saturating_mul(2))
            .min(WINDOW_CREDIT_MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_limits_window_resets() {
        let t0 = Instant::now();
        let mut b = Budgets::default();
        for _ in 0..100 {
            b.hit(Kind::Ping, t0).unwrap();
        }
        assert_eq!(b.hit(Kind::Ping, t0), Err(Exceeded("PING flood")));
        // A second later the budget is full again.
        let mut b = Budgets::default();
        for i in 0..300u64 {
            b.hit(Kind::Ping, t0 + Duration::from_millis(i * 20))
                .unwrap();
        }
    }

    #[test]
    fn h2_limits_window_updates_for_data_sent_are_free() {
        let t0 = Instant::now();
        let mut b = Budgets::default();
        b.data_frames_sent(20_000);
        // A fast reader: one per stream and one per connection per frame,
        // all in one second, then the budget on top.
        for _ in 0..(40_000 + 10_000) {
            b.hit(Kind::WindowUpdate, t0).unwrap();
        }
        assert_eq!(
            b.hit(Kind::WindowUpdate, t0),
            Err(Exceeded("WINDOW_UPDATE flood"))
        );
    }

    #[test]
    fn h2_limits_reset_ratio() {
        let t0 = Instant::now();
        let mut b = Budgets::default();
        for i in 0..5000u64 {
            b.stream_opened();
            if i % 2 == 0 || i > 1000 {
                let r = b.hit(Kind::Reset, t0 + Duration::from_secs(i));
                if i > 1999 {
                    assert!(r.is_err());
                    return;
                }
                r.unwrap();
            }
        }
        panic!("ratio never tripped");
    }
}
