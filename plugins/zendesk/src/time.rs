//! ISO-8601 timestamps as Zendesk writes them (`2012-04-04T09:14:57Z`), to epoch milliseconds.
//!
//! Small enough not to pull a date crate into the plugin: Zendesk always sends UTC with `Z`,
//! and the parser also accepts fractional seconds and numeric offsets to be safe.

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into milliseconds since the Unix epoch.
///
/// Returns `None` for anything else, and for dates before 1970.
pub fn parse_iso8601_ms(value: &str) -> Option<u64> {
    let value = value.trim();
    let bytes = value.as_bytes();
    if bytes.len() < 20 || bytes[4] != b'-' || bytes[7] != b'-' || bytes[13] != b':' {
        return None;
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') || bytes[16] != b':' {
        return None;
    }
    let number = |range: core::ops::Range<usize>| -> Option<i64> {
        let digits = value.get(range)?;
        digits
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| digits.parse().ok())?
    };
    let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
    let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    // 60 allows a leap second.
    if second > 60 {
        return None;
    }

    let mut rest = &value[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        // Keep milliseconds; finer digits are dropped.
        let ms_digits = &fraction[..digits.min(3)];
        millis = ms_digits.parse::<i64>().ok()? * 10_i64.pow(3 - ms_digits.len() as u32);
        rest = &fraction[digits..];
    }
    let offset_secs = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (h, m) = rest[1..].split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };

    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset_secs;
    u64::try_from(secs * 1000 + millis).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_zendesk_timestamps() {
        assert_eq!(parse_iso8601_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_iso8601_ms("2012-04-04T09:14:57Z"),
            Some(1_333_530_897_000)
        );
        assert_eq!(
            parse_iso8601_ms("2024-02-29T23:59:59.5Z"),
            Some(1_709_251_199_500)
        );
        assert_eq!(
            parse_iso8601_ms("2012-04-04T18:14:57+09:00"),
            Some(1_333_530_897_000)
        );
        assert_eq!(
            parse_iso8601_ms("2012-04-04T09:14:57.123456Z"),
            Some(1_333_530_897_123)
        );
    }

    #[test]
    fn rejects_other_shapes() {
        for bad in [
            "",
            "2012-04-04",
            "2012-04-04T09:14:57",
            "2012-13-04T09:14:57Z",
            "2012-04-04T09:14:57.Z",
            "20x2-04-04T09:14:57Z",
            "1969-12-31T23:59:59Z",
            "2012-04-04T09:14:57+0900",
        ] {
            assert_eq!(parse_iso8601_ms(bad), None, "{bad}");
        }
    }
}
