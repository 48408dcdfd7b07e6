//! [`Timestamp`]: when an event happened, on the wall clock, to the microsecond (EVT-1).

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A point on the wall clock (UTC), to the microsecond: the time of an [`Event`](super::Event).
///
/// Microseconds since the Unix epoch in one `i64` (negative before 1970): the precision events
/// serialize, so an event read back compares equal to the one written. It is `Copy`, ordered,
/// hashable and half the size of a `SystemTime`, and the engine dates an occurrence with one
/// addition to its run's anchor instead of `SystemTime` arithmetic. Convert with
/// [`to_system_time`](Self::to_system_time) / `From<SystemTime>` (truncating to the microsecond).
/// It displays, serializes and parses as RFC 3339 UTC with microseconds and `Z`.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use cadence_core::event::Timestamp;
///
/// let t = Timestamp::from(UNIX_EPOCH + Duration::from_nanos(1_777_636_800_000_123_999));
/// assert_eq!(t.as_unix_micros(), 1_777_636_800_000_123);
/// assert_eq!(t.to_string(), "2026-05-01T12:00:00.000123Z");
/// assert_eq!("2026-05-01T12:00:00.000123Z".parse::<Timestamp>().unwrap(), t);
/// assert_eq!(t.to_system_time(), UNIX_EPOCH + Duration::from_micros(1_777_636_800_000_123));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Timestamp = Timestamp(0);

    /// The present, truncated to the microsecond.
    pub fn now() -> Self {
        SystemTime::now().into()
    }

    /// `micros` microseconds after the Unix epoch (before it, when negative).
    pub const fn from_unix_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch (negative before it).
    pub const fn as_unix_micros(self) -> i64 {
        self.0
    }

    /// As a `SystemTime` (exact: a `SystemTime` holds every microsecond a timestamp can).
    pub fn to_system_time(self) -> SystemTime {
        let d = Duration::from_micros(self.0.unsigned_abs());
        if self.0 >= 0 {
            UNIX_EPOCH + d
        } else {
            UNIX_EPOCH - d
        }
    }

    /// The time from `earlier` to `self`, or `None` if `earlier` is later.
    pub fn duration_since(self, earlier: Timestamp) -> Option<Duration> {
        let micros = self.0.checked_sub(earlier.0)?;
        u64::try_from(micros).ok().map(Duration::from_micros)
    }
}

impl From<SystemTime> for Timestamp {
    /// Truncates to the microsecond (towards the past), saturating at the `i64` range.
    fn from(t: SystemTime) -> Self {
        let micros = |d: Duration| i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Timestamp(micros(d)),
            Err(e) => {
                let before = e.duration();
                let whole = micros(before);
                // Towards the past: a partial microsecond before the epoch counts as a whole.
                let partial = i64::from(before.subsec_nanos() % 1_000 != 0);
                Timestamp(whole.saturating_add(partial).saturating_neg())
            }
        }
    }
}

impl From<Timestamp> for SystemTime {
    fn from(t: Timestamp) -> Self {
        t.to_system_time()
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339, UTC, microseconds, `Z` (as events serialize).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&humantime::format_rfc3339_micros(self.to_system_time()), f)
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Timestamp {
    type Err = humantime::TimestampError;

    /// Parses RFC 3339 UTC (`2026-05-01T12:00:00.000123Z`); finer digits are truncated.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        humantime::parse_rfc3339(s).map(Timestamp::from)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|e| serde::de::Error::custom(format_args!("invalid timestamp {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_times_truncate_to_the_microsecond_towards_the_past() {
        // EVT-1
        let after = UNIX_EPOCH + Duration::new(5, 1_999);
        assert_eq!(Timestamp::from(after).as_unix_micros(), 5_000_001);
        let before = UNIX_EPOCH - Duration::new(0, 1_500);
        assert_eq!(Timestamp::from(before).as_unix_micros(), -2);
        let exact = UNIX_EPOCH - Duration::from_micros(3);
        assert_eq!(Timestamp::from(exact).as_unix_micros(), -3);
        for t in [0, 1, -1, 1_777_636_800_000_123, -86_400_000_000] {
            let t = Timestamp::from_unix_micros(t);
            assert_eq!(Timestamp::from(t.to_system_time()), t);
        }
    }

    #[test]
    fn text_and_serde_round_trip_as_rfc3339_micros() {
        // EVT-1
        let t = Timestamp::from_unix_micros(1_777_636_800_000_123);
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, r#""2026-05-01T12:00:00.000123Z""#);
        assert_eq!(serde_json::from_str::<Timestamp>(&json).unwrap(), t);
        assert!(serde_json::from_str::<Timestamp>(r#""yesterday""#).is_err());
        assert_eq!(
            "2026-05-01T12:00:00.000123999Z"
                .parse::<Timestamp>()
                .unwrap(),
            t
        );
    }

    #[test]
    fn durations_between_timestamps() {
        let (a, b) = (
            Timestamp::from_unix_micros(10),
            Timestamp::from_unix_micros(25),
        );
        assert_eq!(b.duration_since(a), Some(Duration::from_micros(15)));
        assert_eq!(a.duration_since(b), None);
        assert!(a < b);
    }
}
