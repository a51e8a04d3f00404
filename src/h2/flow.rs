//! Flow control (RFC 9113 §5.2, §6.9): what we may still send, and what the
//! peer may still send us.
//!
//! Receiving is credit-based on what the application has *forwarded*, not on
//! what we parsed: bytes are re-granted only through [`RecvWindow::consumed`],
//! so a slow upstream bounds what we buffer for a stream.

use super::frame::MAX_WINDOW;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overflow;

/// What we may send. Signed: a smaller SETTINGS_INITIAL_WINDOW_SIZE can make
/// a stream's window negative (§6.9.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendWindow(i64);

impl SendWindow {
    pub fn new(size: u32) -> SendWindow {
        SendWindow(i64::from(size))
    }

    /// A WINDOW_UPDATE; above 2^31-1 is a FLOW_CONTROL_ERROR.
    pub fn grant(&mut self, increment: u32) -> Result<(), Overflow> {
        self.adjust(i64::from(increment))
    }

    /// A change of SETTINGS_INITIAL_WINDOW_SIZE, by the difference.
    pub fn adjust(&mut self, delta: i64) -> Result<(), Overflow> {
        let next = self.0 + delta;
        if next > i64::from(MAX_WINDOW) {
            return Err(Overflow);
        }
        self.0 = next;
        Ok(())
    }

    pub fn available(&self) -> usize {
        usize::try_from(self.0.max(0)).unwrap_or(0)
    }

    /// `n` must be at most `available()`.
    pub fn take(&mut self, n: usize) {
        self.0 -= i64::try_from(n).unwrap_or(i64::MAX).min(self.0.max(0));
    }
}

/// What the peer may still send us, and what we owe it back.
///
/// Invariant: `window + held <= target` (in the steady state): `held` is
/// what arrived but the application has not forwarded yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvWindow {
    /// What the peer may still send before our next WINDOW_UPDATE.
    window: i64,
    /// Received, not yet reported forwarded.
    held: u64,
    /// The window we aim to keep open.
    target: u32,
}

impl RecvWindow {
    /// `window`: what the peer currently believes (65535 before it has our
    /// SETTINGS); `target`: what we want to keep open.
    pub fn new(window: u32, target: u32) -> RecvWindow {
        RecvWindow {
            window: i64::from(window),
            held: 0,
            target,
        }
    }

    /// A DATA frame of `n` bytes (padding included) arrived; more than the
    /// window is a FLOW_CONTROL_ERROR.
    pub fn receive(&mut self, n: u32) -> Result<(), Overflow> {
        if i64::from(n) > self.window {
            return Err(Overflow);
        }
        self.window -= i64::from(n);
        self.held += u64::from(n);
        Ok(())
    }

    /// The application forwarded `n` bytes (or they were dropped: padding,
    /// a reset stream). Returns the WINDOW_UPDATE increment to send, if the
    /// window is short of its target by half of it (32 KiB at most): batching
    /// saves frames without stalling a fast sender.
    pub fn consumed(&mut self, n: usize) -> Option<u32> {
        self.held = self.held.saturating_sub(n as u64);
        self.update()
    }

    /// Changes the target (the connection's grows with the open streams).
    pub fn set_target(&mut self, target: u32) -> Option<u32> {
        self.target = target.min(MAX_WINDOW);
        self.update()
    }

    /// The peer's view changed by `delta` (our SETTINGS acknowledged).
    pub fn adjust(&mut self, delta: i64) {
        self.window += delta;
    }

    fn update(&mut self) -> Option<u32> {
        let open = self.window + i64::try_from(self.held).unwrap_or(i64::MAX);
        let owed = i64::from(self.target) - open;
        if owed > 0 && owed >= i64::from((self.target / 2).clamp(1, 1 << 15)) {
            self.window += owed;
            return u32::try_from(owed).ok();
        }
        None
    }

    pub fn held(&self) -> u64 {
        self.held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h2_flow_send_window_overflow_and_negative() {
        let mut w = SendWindow::new(65_535);
        assert_eq!(w.grant(MAX_WINDOW - 65_535), Ok(()));
        assert_eq!(w.grant(1), Err(Overflow));
        let mut w = SendWindow::new(3);
        w.take(3);
        w.adjust(-1).unwrap();
        assert_eq!(w.available(), 0);
        w.grant(2).unwrap();
        assert_eq!(w.available(), 1);
    }

    #[test]
    fn h2_flow_recv_regrants_only_forwarded_bytes() {
        let mut w = RecvWindow::new(100, 100);
        assert_eq!(w.receive(60), Ok(()));
        assert_eq!(w.receive(41), Err(Overflow));
        // Not forwarded yet: nothing re-granted however long we wait.
        assert_eq!(w.consumed(0), None);
        assert_eq!(w.consumed(10), None); // window 40 + held 50 -> owed 10 < 50
        assert_eq!(w.consumed(50), Some(60));
        assert_eq!(w.receive(100), Ok(()));
        assert_eq!(w.receive(1), Err(Overflow));
    }

    #[test]
    fn h2_flow_connection_target_grows() {
        let mut w = RecvWindow::new(65_535, 65_535);
        assert_eq!(w.set_target(4 * 65_535), Some(3 * 65_535));
        assert_eq!(w.set_target(65_535), None);
    }
}
