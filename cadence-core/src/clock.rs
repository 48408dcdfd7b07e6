//! The wall-clock time of occurrences (GEN-3, EVT-1).
//!
//! A run tree reads the wall clock once, at its first observed occurrence, together with
//! tokio's clock: its [`WallAnchor`]. The time of every later occurrence is that anchor plus
//! the time elapsed since on tokio's clock, taken from the reading the engine already made to
//! measure a duration when there is one. So an occurrence that ends a note costs no clock read
//! of its own, and within one run tree:
//!
//! - times never go backwards and are spaced exactly as the measured durations say
//!   (`at(note end) − at(note start) = duration`, to the microsecond), whatever NTP does to the
//!   wall clock meanwhile;
//! - on paused tokio time (tests), times advance with the paused clock, from the wall-clock
//!   time at which the run tree began.
//!
//! Times are truncated to the microsecond, the precision events serialize (EVT-1).

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// What a run tree shares across its runs: the occurrence counter (EVT-3) and the wall-clock
/// anchor of its occurrence times.
#[derive(Debug, Default)]
pub(crate) struct RunTree {
    pub(crate) seq: AtomicU64,
    anchor: OnceLock<WallAnchor>,
}

impl RunTree {
    /// The anchor, read on first use.
    #[inline]
    pub(crate) fn anchor(&self) -> &WallAnchor {
        self.anchor.get_or_init(WallAnchor::now)
    }
}

/// A wall-clock time and the tokio instant it was read at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WallAnchor {
    /// Since the Unix epoch, truncated to the microsecond.
    wall: Duration,
    mono: Instant,
}

impl WallAnchor {
    fn now() -> Self {
        let mono = Instant::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(truncate)
            .unwrap_or_default();
        WallAnchor { wall, mono }
    }

    /// The wall-clock time of tokio instant `now` (or of the present, read from tokio's clock).
    #[inline]
    pub(crate) fn at(&self, now: Option<Instant>) -> SystemTime {
        let now = now.unwrap_or_else(Instant::now);
        UNIX_EPOCH + self.wall + truncate(now.saturating_duration_since(self.mono))
    }
}

/// `d` truncated to the microsecond.
#[inline]
pub(crate) fn truncate(d: Duration) -> Duration {
    Duration::new(d.as_secs(), d.subsec_micros() * 1_000)
}

/// The present on the wall clock, truncated to the microsecond.
pub(crate) fn wall_now() -> SystemTime {
    UNIX_EPOCH
        + SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(truncate)
            .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn times_advance_with_tokio_clock_from_the_anchor() {
        // GEN-3: durations and times agree, on paused time too.
        let tree = RunTree::default();
        let a = tree.anchor();
        let t0 = a.at(None);
        tokio::time::sleep(Duration::from_millis(10)).await;
        let t1 = a.at(Some(Instant::now()));
        assert_eq!(t1.duration_since(t0).unwrap(), Duration::from_millis(10));
        let micros = t1.duration_since(UNIX_EPOCH).unwrap().subsec_nanos() % 1_000;
        assert_eq!(micros, 0, "truncated to the microsecond");
        // The anchor is read once.
        assert!(std::ptr::eq(a, tree.anchor()));
    }

    #[test]
    fn an_instant_before_the_anchor_is_the_anchor() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            let before = Instant::now();
            let tree = RunTree::default();
            let a = tree.anchor();
            assert!(a.at(Some(before)) <= a.at(None));
        });
    }
}
