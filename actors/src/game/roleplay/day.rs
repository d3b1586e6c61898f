//! The roleplay day: a player's daily XP counters reset at midnight in
//! their own IANA time zone (chrono-tz, so DST changes move midnight with
//! the clocks). The day a player's counters belong to only ever moves
//! forward: switching to a time zone where it is still yesterday does not
//! give a second day's XP, and switching to one where it is already
//! tomorrow starts tomorrow's counters, once.

use chrono::{DateTime, NaiveDate};
use chrono_tz::Tz;

/// The date it is at `now_ms` (Unix ms) in `tz`.
pub fn local_day(now_ms: i64, tz: Tz) -> NaiveDate {
    DateTime::from_timestamp_millis(now_ms)
        .unwrap_or_default()
        .with_timezone(&tz)
        .date_naive()
}

/// The day the counters belong to after a post at `now_ms`: today if that
/// is after `last_reset` (the counters start again), else `last_reset`.
pub fn counting_day(last_reset: Option<NaiveDate>, now_ms: i64, tz: Tz) -> (NaiveDate, bool) {
    let today = local_day(now_ms, tz);
    match last_reset {
        Some(d) if d >= today => (d, false),
        _ => (today, true),
    }
}

/// A time zone by its IANA name (`Europe/Paris`, `America/New_York`, `UTC`).
pub fn parse_tz(name: &str) -> Option<Tz> {
    name.trim().parse().ok()
}

/// Every IANA time zone name, for a front door's suggestions.
pub fn names() -> impl Iterator<Item = &'static str> {
    chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Unix ms of a UTC date and time.
    fn utc(y: i32, m: u32, d: u32, h: u32, min: u32) -> i64 {
        NaiveDate::from_ymd_opt(y, m, d)
            .and_then(|d| d.and_hms_opt(h, min, 0))
            .map(|t| t.and_utc().timestamp_millis())
            .unwrap()
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn midnight_is_local() {
        let tokyo = parse_tz("Asia/Tokyo").unwrap();
        let la = parse_tz("America/Los_Angeles").unwrap();
        // 2026-03-01 16:00 UTC: already the 2nd in Tokyo, still the 1st in LA.
        let t = utc(2026, 3, 1, 16, 0);
        assert_eq!(local_day(t, tokyo), date(2026, 3, 2));
        assert_eq!(local_day(t, la), date(2026, 3, 1));
        assert_eq!(local_day(t, Tz::UTC), date(2026, 3, 1));
    }

    #[test]
    fn midnight_follows_daylight_saving_time() {
        let ny = parse_tz("America/New_York").unwrap();
        // DST starts 2026-03-08 (UTC−5 → UTC−4): midnight of the 9th is 04:00 UTC.
        assert_eq!(local_day(utc(2026, 3, 9, 3, 59), ny), date(2026, 3, 8));
        assert_eq!(local_day(utc(2026, 3, 9, 4, 0), ny), date(2026, 3, 9));
        // Before it, midnight of the 8th was 05:00 UTC.
        assert_eq!(local_day(utc(2026, 3, 8, 4, 59), ny), date(2026, 3, 7));
        assert_eq!(local_day(utc(2026, 3, 8, 5, 0), ny), date(2026, 3, 8));
        // DST ends 2026-11-01 (UTC−4 → UTC−5): midnight of the 2nd is 05:00 UTC.
        assert_eq!(local_day(utc(2026, 11, 2, 4, 59), ny), date(2026, 11, 1));
        assert_eq!(local_day(utc(2026, 11, 2, 5, 0), ny), date(2026, 11, 2));
    }

    #[test]
    fn the_counting_day_never_goes_back() {
        let tokyo = parse_tz("Asia/Tokyo").unwrap();
        let t = utc(2026, 3, 1, 16, 0);
        // Counted in Tokyo (the 2nd), then moved to UTC (the 1st): still the 2nd.
        assert_eq!(
            counting_day(Some(date(2026, 3, 2)), t, Tz::UTC),
            (date(2026, 3, 2), false)
        );
        assert_eq!(
            counting_day(Some(date(2026, 3, 1)), t, tokyo),
            (date(2026, 3, 2), true)
        );
        assert_eq!(counting_day(None, t, Tz::UTC), (date(2026, 3, 1), true));
    }

    #[test]
    fn time_zone_names_are_iana_names() {
        assert!(parse_tz("Europe/Paris").is_some());
        assert!(parse_tz("UTC").is_some());
        assert!(parse_tz("Mars/Olympus").is_none());
        assert!(parse_tz("").is_none());
    }
}
