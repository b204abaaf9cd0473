//! The agency's civil date.
//!
//! Retention counts in calendar days and years of the agency, not of UTC: a file closed
//! at 23:30 UTC on New Year's Eve was closed on 1 January in Germany, so its retention
//! runs from the end of the new year. Every date the records model takes from the clock
//! or from an entry's time goes through here. German agencies are all in one zone.

use chrono::{DateTime, NaiveDate, Utc};
use chrono_tz::Tz;

/// The time zone of the agencies akte serves.
pub const AGENCY_TIME_ZONE: Tz = chrono_tz::Europe::Berlin;

/// The agency's calendar date at the instant `at`.
pub fn civil_date(at: DateTime<Utc>) -> NaiveDate {
    at.with_timezone(&AGENCY_TIME_ZONE).date_naive()
}

/// The agency's calendar date now.
pub fn today() -> NaiveDate {
    civil_date(Utc::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::records::retention::{retention_end, RetentionRule};
    use crate::records::Retention;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .expect("an RFC 3339 time")
            .with_timezone(&Utc)
    }

    fn day(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("a date")
    }

    #[test]
    fn new_years_eve_in_utc_is_new_year_in_berlin() {
        // 23:30 UTC is 00:30 CET: closed in 2025, so 10 years run to the end of 2035.
        let closed = civil_date(at("2024-12-31T23:30:00Z"));
        assert_eq!(closed, day(2025, 1, 1));
        assert_eq!(
            retention_end(
                RetentionRule::EndOfClosingYear,
                closed,
                Retention::Years(10)
            ),
            Some(day(2035, 12, 31))
        );
        // Half an hour earlier it is still 2024 in Berlin too (23:00 UTC is 00:00 CET).
        let closed = civil_date(at("2024-12-31T22:59:59Z"));
        assert_eq!(closed, day(2024, 12, 31));
        assert_eq!(
            retention_end(
                RetentionRule::EndOfClosingYear,
                closed,
                Retention::Years(10)
            ),
            Some(day(2034, 12, 31))
        );
    }

    #[test]
    fn summer_time_is_two_hours_ahead() {
        // 22:30 UTC in July is 00:30 CEST on the next day.
        assert_eq!(civil_date(at("2025-07-14T22:30:00Z")), day(2025, 7, 15));
        assert_eq!(civil_date(at("2025-07-14T21:59:59Z")), day(2025, 7, 14));
    }
}
