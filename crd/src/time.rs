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

#[cfg(test)]
mod tests {
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
