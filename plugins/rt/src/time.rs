//! The two date forms RT uses: `2024-05-01T09:14:57Z` in REST 2.0 bodies, and
//! `2024-05-01 09:14:57` (UTC) in its database, which JSON searches compare against verbatim.

use std::time::UNIX_EPOCH;

/// Parses `YYYY-MM-DDTHH:MM:SSZ` (or with a space for `T`) into milliseconds since the epoch.
///
/// RT writes unset dates as `1970-01-01T00:00:00Z`, which gives 0.
pub fn parse_rt_datetime_ms(value: &str) -> Option<u64> {
    let value = value.trim();
    let value = value.strip_suffix('Z').unwrap_or(value);
    let (date, time) = value.split_once(['T', ' '])?;
    let mut date_parts = date.splitn(3, '-');
    let mut time_parts = time.splitn(3, ':');
    let next = |parts: &mut core::str::SplitN<'_, char>, digits: usize| -> Option<i64> {
        let part = parts.next()?;
        (part.len() == digits && part.bytes().all(|b| b.is_ascii_digit()))
            .then(|| part.parse().ok())?
    };
    let year = next(&mut date_parts, 4)?;
    let month = next(&mut date_parts, 2)?;
    let day = next(&mut date_parts, 2)?;
    let hour = next(&mut time_parts, 2)?;
    let minute = next(&mut time_parts, 2)?;
    let second = next(&mut time_parts, 2)?;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    if hour > 23 || minute > 59 || second > 60 {
        return None;
    }
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    u64::try_from(secs).ok().map(|s| s * 1000)
}

/// Formats epoch milliseconds the way RT stores dates: `YYYY-MM-DD HH:MM:SS`, UTC.
pub fn format_db_datetime(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

/// Parses an HTTP `Date` header into epoch milliseconds.
pub fn parse_http_date_ms(value: &str) -> Option<u64> {
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    let since = at.duration_since(UNIX_EPOCH).ok()?;
    u64::try_from(since.as_millis()).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rest2_dates() {
        assert_eq!(parse_rt_datetime_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rt_datetime_ms("2012-04-04T09:14:57Z"),
            Some(1_333_530_897_000)
        );
        assert_eq!(
            parse_rt_datetime_ms("2024-02-29 23:59:59"),
            Some(1_709_251_199_000)
        );
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "24-02-29T00:00:00Z",
            "x",
        ] {
            assert_eq!(parse_rt_datetime_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_database_dates_and_round_trips() {
        assert_eq!(format_db_datetime(0), "1970-01-01 00:00:00");
        assert_eq!(format_db_datetime(1_709_251_199_999), "2024-02-29 23:59:59");
        for ms in [0, 951_782_400_000, 1_333_530_897_000, 4_102_444_800_000] {
            assert_eq!(parse_rt_datetime_ms(&format_db_datetime(ms)), Some(ms));
        }
    }

    #[test]
    fn parses_http_dates() {
        assert_eq!(
            parse_http_date_ms("Wed, 25 Nov 2026 00:36:28 GMT"),
            parse_rt_datetime_ms("2026-11-25T00:36:28Z")
        );
        assert_eq!(parse_http_date_ms("yesterday"), None);
    }
}
