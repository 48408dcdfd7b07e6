//! How the engine measures durations and dates occurrences (GEN-3, EVT-1).
//!
//! # Durations follow tokio's clock
//!
//! Every duration a hook sees (a note's attempt, a measure, a run) is measured on tokio's
//! clock, so on paused tokio time (tests) it is exactly the paused time that passed. Reading
//! tokio's clock costs a `clock_gettime` (≈ 20–35 ns on the machines we measure on, twice per
//! observed note), so when tokio's clock is *live* the engine reads the same physical time
//! through the CPU's invariant time-stamp counter instead (`quanta`, ≈ 12 ns, calibrated against
//! the monotonic clock):
//!
//! - A run tree decides once, at its first measured occurrence: two consecutive readings of
//!   tokio's clock that are equal mean the clock is paused (a live clock always moves between
//!   two reads), and the run tree then reads tokio's clock throughout.
//! - The counter is used only where the kernel itself keeps time with it (Linux with
//!   `current_clocksource` = `tsc`) and once `quanta` has calibrated it, which happens on a
//!   short-lived background thread (`cadence-clock`, ≈ 1 ms, at most 200 ms) started when the
//!   first cadence with hooks is built (or by the first attempt with a timeout, whose start is
//!   a reading of this clock); until it is done, and everywhere else, tokio's clock is read.
//!
//! A run that pauses tokio's clock after its first measured occurrence keeps measuring real
//! time; no test needs that.
//!
//! # Occurrence times are one wall-clock reading plus elapsed time
//!
//! A run tree reads the wall clock once, at the first occurrence any hook dates
//! ([`HookContext::at`](crate::HookContext::at)), together with its duration clock: its
//! anchor. The time of every occurrence is that anchor plus the time elapsed since, taken from
//! the reading the engine made to measure a duration when there is one. So an occurrence that
//! ends a note costs no clock read of its own, and within one run tree:
//!
//! - times never go backwards and are spaced exactly as the measured durations say
//!   (`at(note end) − at(note start) = duration`, to the microsecond), whatever NTP does to the
//!   wall clock meanwhile;
//! - on paused tokio time, times advance with the paused clock, from the wall-clock time at
//!   which the run tree was first dated.
//!
//! Times are truncated to the microsecond, the precision events serialize (EVT-1).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
use std::time::Duration;

use once_cell::race::OnceBox;
use tokio::time::Instant;

use crate::event::Timestamp;

/// What a run tree shares across its runs: the occurrence counter (EVT-3), a serial, the
/// clock its durations are measured on and the wall-clock anchor of its occurrence times.
///
/// Only observed runs (and attempts with a timeout, which count from a reading of its clock)
/// need any of it, so it is allocated on first use: a run nobody observes carries one word in
/// its future.
#[derive(Debug, Default)]
pub(crate) struct RunTree(OnceBox<Tree>);

#[derive(Debug)]
struct Tree {
    seq: AtomicU64,
    /// Unique to this run tree for the life of the process: lets hooks recognise the root
    /// run's id without comparing text.
    serial: u64,
    clock: Source,
    anchor: OnceLock<WallAnchor>,
}

/// A reading of a run tree's duration clock: only comparable within that run tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp(u64);

/// Where a run tree reads time.
#[derive(Debug)]
enum Source {
    /// Tokio's clock; stamps are nanoseconds since `origin`.
    Tokio { origin: Instant },
    /// The calibrated time-stamp counter; stamps are raw counter values.
    Counter(&'static quanta::Clock),
}

impl Source {
    fn detect() -> Source {
        let (a, b) = (Instant::now(), Instant::now());
        match (a != b).then(counter).flatten() {
            Some(clock) => Source::Counter(clock),
            None => Source::Tokio { origin: a },
        }
    }
}

impl RunTree {
    #[inline]
    fn tree(&self) -> &Tree {
        self.0.get_or_init(|| {
            static NEXT: AtomicU64 = AtomicU64::new(1);
            Box::new(Tree {
                seq: AtomicU64::new(0),
                serial: NEXT.fetch_add(1, Ordering::Relaxed),
                clock: Source::detect(),
                anchor: OnceLock::new(),
            })
        })
    }

    /// The run tree's occurrence counter (EVT-3).
    #[inline]
    pub(crate) fn seq(&self) -> &AtomicU64 {
        &self.tree().seq
    }

    /// Unique to this run tree for the life of the process (never 0).
    #[inline]
    pub(crate) fn serial(&self) -> u64 {
        self.tree().serial
    }

    /// Reads the run tree's duration clock.
    #[inline]
    pub(crate) fn now(&self) -> Stamp {
        self.tree().now()
    }

    /// The time since `t0` and the reading it was measured at (which also dates the occurrence
    /// that reports it); zero and no reading without `t0`.
    #[inline]
    pub(crate) fn lap(&self, t0: Option<Stamp>) -> (Duration, Option<Stamp>) {
        match t0 {
            Some(t0) => {
                let tree = self.tree();
                let now = tree.now();
                (Duration::from_nanos(tree.nanos_between(t0, now)), Some(now))
            }
            None => (Duration::ZERO, None),
        }
    }

    /// The wall-clock time of reading `at` (or of the present), in microseconds since the Unix
    /// epoch. The first call anchors the run tree: readings from before the anchor date at the
    /// anchor.
    #[inline]
    pub(crate) fn wall_micros(&self, at: Option<Stamp>) -> i64 {
        let tree = self.tree();
        let at = at.unwrap_or_else(|| tree.now());
        let anchor = tree.anchor.get_or_init(|| WallAnchor {
            stamp: at,
            wall: Timestamp::now().as_unix_micros(),
        });
        // Whole microseconds since the anchor (itself whole).
        let since = tree.nanos_between(anchor.stamp, at) / 1_000;
        anchor
            .wall
            .saturating_add(i64::try_from(since).unwrap_or(i64::MAX))
    }
}

impl Tree {
    #[inline]
    fn now(&self) -> Stamp {
        match &self.clock {
            Source::Counter(clock) => Stamp(clock.raw()),
            Source::Tokio { origin } => {
                Stamp(nanos(Instant::now().saturating_duration_since(*origin)))
            }
        }
    }

    /// Nanoseconds from `earlier` to `later` (zero if `later` is not after `earlier`).
    #[inline]
    fn nanos_between(&self, earlier: Stamp, later: Stamp) -> u64 {
        match &self.clock {
            Source::Counter(clock) => clock.delta_as_nanos(earlier.0, later.0),
            Source::Tokio { .. } => later.0.saturating_sub(earlier.0),
        }
    }
}

/// A wall-clock time and the reading of the duration clock it was taken at.
#[derive(Debug)]
struct WallAnchor {
    stamp: Stamp,
    /// Microseconds since the Unix epoch.
    wall: i64,
}

fn nanos(d: Duration) -> u64 {
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// `d` truncated to the microsecond.
#[inline]
pub(crate) fn truncate(d: Duration) -> Duration {
    Duration::new(d.as_secs(), d.subsec_micros() * 1_000)
}

/// Starts calibrating the time-stamp counter (once per process) so that it is ready by the
/// first observed run: called when a cadence with hooks is built.
pub(crate) fn prepare() {
    let _ = counter();
}

/// The calibrated time-stamp counter, once it is ready and trusted (see the module docs).
fn counter() -> Option<&'static quanta::Clock> {
    static CLOCK: OnceLock<Option<quanta::Clock>> = OnceLock::new();
    static CALIBRATE: Once = Once::new();
    if let Some(clock) = CLOCK.get() {
        return clock.as_ref();
    }
    CALIBRATE.call_once(|| {
        let spawned = std::thread::Builder::new()
            .name("cadence-clock".into())
            .spawn(|| {
                let _ = CLOCK.set(kernel_keeps_time_with_tsc().then(quanta::Clock::new));
            });
        if spawned.is_err() {
            let _ = CLOCK.set(None);
        }
    });
    None
}

/// Whether the kernel keeps time with the time-stamp counter (so it found it stable and
/// synchronized across CPUs).
fn kernel_keeps_time_with_tsc() -> bool {
    cfg!(all(
        target_os = "linux",
        any(target_arch = "x86", target_arch = "x86_64")
    )) && std::fs::read_to_string(
        "/sys/devices/system/clocksource/clocksource0/current_clocksource",
    )
    .is_ok_and(|s| s.trim() == "tsc")
}

#[cfg(test)]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use super::*;

    impl RunTree {
        fn wall_time(&self, at: Option<Stamp>) -> SystemTime {
            Timestamp::from_unix_micros(self.wall_micros(at)).to_system_time()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn on_paused_time_durations_and_times_follow_tokio() {
        // GEN-3: durations and times agree, on paused time too.
        let tree = RunTree::default();
        let t0 = tree.now();
        let at0 = tree.wall_time(Some(t0));
        tokio::time::sleep(Duration::from_millis(10)).await;
        let (d, t1) = tree.lap(Some(t0));
        assert_eq!(d, Duration::from_millis(10));
        let at1 = tree.wall_time(t1);
        assert_eq!(at1.duration_since(at0).unwrap(), Duration::from_millis(10));
        let sub = at1.duration_since(UNIX_EPOCH).unwrap().subsec_nanos() % 1_000;
        assert_eq!(sub, 0, "truncated to the microsecond");
        assert!(matches!(tree.tree().clock, Source::Tokio { .. }));
    }

    #[test]
    fn on_live_time_durations_are_real_time_whichever_clock_is_read() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            // Once calibrated (or found unusable), a live run may read the counter.
            let deadline = std::time::Instant::now() + Duration::from_secs(5);
            while counter().is_none()
                && std::time::Instant::now() < deadline
                && kernel_keeps_time_with_tsc()
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            let tree = RunTree::default();
            let (real, t0) = (std::time::Instant::now(), tree.now());
            std::thread::sleep(Duration::from_millis(20));
            let (d, t1) = tree.lap(Some(t0));
            let real = real.elapsed();
            assert!(d >= Duration::from_millis(20), "{d:?}");
            assert!(d <= real + Duration::from_millis(1), "{d:?} vs {real:?}");
            assert_eq!(
                tree.tree().nanos_between(t1.unwrap(), t0),
                0,
                "never negative"
            );
            // Times are spaced as durations.
            let (a0, a1) = (tree.wall_time(Some(t0)), tree.wall_time(t1));
            let spaced = a1.duration_since(a0).unwrap();
            assert!(
                spaced.abs_diff(d) <= Duration::from_micros(1),
                "{spaced:?} vs {d:?}"
            );
            let off = SystemTime::now()
                .duration_since(a1)
                .unwrap_or_else(|e| e.duration());
            assert!(off < Duration::from_secs(1), "a wall-clock time");
        });
    }
}
