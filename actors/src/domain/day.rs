//! The calendar day every once-a-day rule counts in (the daily claim, the
//! lucky draw, free generation jobs).

/// The wall clock in Unix milliseconds.
pub fn unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Days since 1970-01-01 in UTC, the unit the daily claim is counted in.
pub fn utc_day(now_ms: i64) -> i32 {
    // div_euclid so instants before 1970 still land on the right day.
    i32::try_from(now_ms.div_euclid(86_400_000)).unwrap_or(i32::MAX)
}
