//! The times records keep as text (Marathon's ISO-8601 with `Z`), read back in one place.

pub use crate::meta::jiff::Timestamp;

/// A stored time, if there is one and it reads as a time.
pub fn parse(text: Option<&str>) -> Option<Timestamp> {
    text?.parse().ok()
}

/// Seconds from a stored time to `now` (negative when it lies ahead), if there is one.
pub fn seconds_since(text: Option<&str>, now: Timestamp) -> Option<f64> {
    Some(now.duration_since(parse(text)?).as_secs_f64())
}

/// The longest time any field of a record may give, in seconds (10 years): beyond it
/// arithmetic on times overflows, and nobody means it.
pub const MAX_SECONDS: f64 = 315_360_000.0;

/// A duration from a number of seconds a record gives, never panicking: negative or NaN is
/// 0, more than [`MAX_SECONDS`] (infinity included) is `MAX_SECONDS`.
pub fn secs(seconds: f64) -> std::time::Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_secs_f64(seconds.min(MAX_SECONDS))
}

/// Whether `seconds` is a time a record may hold: finite, from 0 to [`MAX_SECONDS`].
pub fn is_seconds(seconds: f64) -> bool {
    seconds.is_finite() && (0.0..=MAX_SECONDS).contains(&seconds)
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_from_any_number_never_panic() {
        use super::{MAX_SECONDS, is_seconds, secs};
        use std::time::Duration;
        assert_eq!(secs(-1.0), Duration::ZERO);
        assert_eq!(secs(f64::NAN), Duration::ZERO);
        assert_eq!(secs(1e300), Duration::from_secs_f64(MAX_SECONDS));
        assert_eq!(secs(f64::INFINITY), Duration::from_secs_f64(MAX_SECONDS));
        assert_eq!(secs(1.5), Duration::from_millis(1500));
        // The cap keeps `now + duration` far from overflowing.
        assert!(
            std::time::Instant::now()
                .checked_add(secs(f64::MAX))
                .is_some()
        );
        assert!(is_seconds(0.0) && is_seconds(MAX_SECONDS));
        assert!(!is_seconds(-1.0) && !is_seconds(1e300) && !is_seconds(f64::NAN));
    }

    use super::*;

    #[test]
    fn stored_times_read_back_and_count_both_ways() {
        let now: Timestamp = "2026-12-01T10:00:10Z".parse().unwrap();
        assert_eq!(
            seconds_since(Some("2026-12-01T10:00:00.000Z"), now),
            Some(10.0)
        );
        assert_eq!(seconds_since(Some("2026-12-01T10:00:15Z"), now), Some(-5.0));
        assert_eq!(seconds_since(Some("yesterday"), now), None);
        assert_eq!(seconds_since(None, now), None);
    }
}
