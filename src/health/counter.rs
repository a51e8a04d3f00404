//! HAProxy's health counter. A checked server has a counter `h` in
//! `0..=rise+fall-1` and is UP while it has not fallen:
//!
//! * servers start UP at the bottom of the UP range (`h = rise`), as in
//!   HAProxy: traffic flows at once, and the first failed check takes a
//!   server DOWN (a server broken from the start is out after one check);
//! * a success raises `h` (up to the top); a DOWN server whose counter
//!   reaches `rise` comes UP and its counter jumps to the top;
//! * a failure lowers `h` while it is above `rise`; at or below `rise` the
//!   next failure drops it to 0 and the server goes DOWN (a DOWN server's
//!   failure also resets its progress to 0).
//!
//! So from fully UP (`h = rise+fall-1`, after `fall - 1` successes from the
//! start), exactly `fall` failures in a row make it DOWN, and
//! from DOWN exactly `rise` successes in a row make it UP again.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    None,
    Up,
    Down,
}

/// Applies one check result; returns the new counter, DOWN flag and the
/// transition, if any.
pub fn apply(h: u32, down: bool, ok: bool, rise: u32, fall: u32) -> (u32, bool, Transition) {
    let top = rise + fall - 1;
    if ok {
        let h = (h + 1).min(top);
        if down && h >= rise {
            (top, false, Transition::Up)
        } else {
            (h, down, Transition::None)
        }
    } else if !down && h > rise {
        (h - 1, false, Transition::None)
    } else {
        (
            0,
            true,
            if down {
                Transition::None
            } else {
                Transition::Down
            },
        )
    }
}

/// HAProxy's status words for a checked server: `UP`, `DOWN`, or the
/// transitional `UP n/m` (going down after n of m failures... counted as in
/// HAProxy: how far from falling) and `DOWN n/m` (n of `rise` successes).
pub fn status(h: u32, down: bool, rise: u32, fall: u32) -> String {
    let top = rise + fall - 1;
    if down {
        if h == 0 {
            "DOWN".to_owned()
        } else {
            format!("DOWN {h}/{rise}")
        }
    } else if h >= top {
        "UP".to_owned()
    } else {
        format!("UP {}/{fall}", h + 1 - rise)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        mut h: u32,
        mut down: bool,
        results: &[bool],
        rise: u32,
        fall: u32,
    ) -> (u32, bool, Vec<Transition>) {
        let mut t = Vec::new();
        for &ok in results {
            let (nh, nd, tr) = apply(h, down, ok, rise, fall);
            h = nh;
            down = nd;
            if tr != Transition::None {
                t.push(tr);
            }
        }
        (h, down, t)
    }

    #[test]
    fn fall_failures_take_it_down_rise_successes_bring_it_up() {
        let (rise, fall) = (2, 3);
        let top = rise + fall - 1;
        let (h, down, t) = run(top, false, &[false, false], rise, fall);
        assert!(!down && t.is_empty() && h == top - 2);
        let (h, down, t) = run(top, false, &[false, false, false], rise, fall);
        assert_eq!((h, down, t), (0, true, vec![Transition::Down]));
        let (h, down, t) = run(0, true, &[true], rise, fall);
        assert_eq!((h, down, t.len()), (1, true, 0));
        let (h, down, t) = run(0, true, &[true, true], rise, fall);
        assert_eq!((h, down, t), (top, false, vec![Transition::Up]));
        // A failure while coming up starts over.
        let (h, down, _) = run(0, true, &[true, false, true], rise, fall);
        assert_eq!((h, down), (1, true));
        // A success while going down restores.
        let (h, down, _) = run(top, false, &[false, true, true], rise, fall);
        assert_eq!((h, down), (top, false));
    }

    #[test]
    fn rise_and_fall_of_one() {
        assert_eq!(apply(1, false, false, 1, 1), (0, true, Transition::Down));
        assert_eq!(apply(0, true, true, 1, 1), (1, false, Transition::Up));
    }

    #[test]
    fn status_words() {
        assert_eq!(status(4, false, 2, 3), "UP");
        assert_eq!(status(3, false, 2, 3), "UP 2/3");
        assert_eq!(status(2, false, 2, 3), "UP 1/3");
        assert_eq!(status(0, true, 2, 3), "DOWN");
        assert_eq!(status(1, true, 2, 3), "DOWN 1/2");
    }
}
