//! UTC timestamps as RFC 3339 text, without a date library: events carry Unix seconds as an
//! `f64`, and printing them needs only the proleptic Gregorian calendar.

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`, rounded to the millisecond.
///
/// A value that is not finite, or too far from today for a 64-bit millisecond count, is
/// printed as the plain number instead.
pub fn format_utc(unix_seconds: f64) -> String {
    let millis = (unix_seconds * 1000.0).round();
    // Beyond ±2^62 ms (146 million years) the integer arithmetic below could overflow.
    if !millis.is_finite() || millis.abs() > 4.6e18 {
        return format!("{unix_seconds}");
    }
    let millis = millis as i64;
    let secs = millis.div_euclid(1000);
    let milli = millis.rem_euclid(1000);
    let days = secs.div_euclid(86_400);
    let of_day = secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{milli:03}Z",
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// The (year, month, day) of a count of days since 1970-01-01, after Howard Hinnant's
/// `civil_from_days`: shift to 0000-03-01 so the leap day ends each 400-year era.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_instants() {
        assert_eq!(format_utc(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_utc(1712345678.5), "2024-04-05T19:34:38.500Z");
        assert_eq!(format_utc(951_782_400.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(format_utc(1_795_428_000.123), "2026-11-23T10:00:00.123Z");
        assert_eq!(format_utc(4_107_542_399.999_4), "2100-02-28T23:59:59.999Z");
        assert_eq!(format_utc(-1.5), "1969-12-31T23:59:58.500Z");
        assert_eq!(format_utc(0.007), "1970-01-01T00:00:00.007Z");
    }

    #[test]
    fn odd_values_print_as_numbers() {
        assert_eq!(format_utc(f64::NAN), "NaN");
        assert_eq!(format_utc(f64::INFINITY), "inf");
        assert_eq!(format_utc(1e300), 1e300_f64.to_string());
    }

    #[test]
    fn every_day_follows_the_previous_one() {
        let mut previous = civil_from_days(-800_000);
        for days in -799_999..800_000 {
            let (year, month, day) = civil_from_days(days);
            let next_day = (year, month, day) == (previous.0, previous.1, previous.2 + 1);
            let next_month = day == 1 && (year, month) == (previous.0, previous.1 + 1);
            let next_year = (month, day) == (1, 1) && year == previous.0 + 1;
            assert!(
                next_day || next_month || next_year,
                "{previous:?} -> {:?}",
                (year, month, day)
            );
            previous = (year, month, day);
        }
    }
}
