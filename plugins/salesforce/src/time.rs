//! Salesforce timestamps: the REST API writes `2024-05-01T09:14:57.000+0000`; SOQL takes
//! `2024-05-01T09:14:57Z`.

/// Parses `YYYY-MM-DDThh:mm:ss[.fff](Z|±hhmm|±hh:mm)` into milliseconds since the epoch.
/// `None` for anything else and for dates before 1970.
pub fn parse_ms(value: &str) -> Option<u64> {
    let value = value.trim();
    let b = value.as_bytes();
    if b.len() < 20
        || b[4] != b'-'
        || b[7] != b'-'
        || b[10] != b'T'
        || b[13] != b':'
        || b[16] != b':'
    {
        return None;
    }
    let num = |r: core::ops::Range<usize>| -> Option<i64> {
        let part = value.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut rest = &value[19..];
    let mut millis = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let kept = &fraction[..digits.min(3)];
        millis = kept.parse::<i64>().ok()? * 10_i64.pow(3 - kept.len() as u32);
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first()? {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits: String = rest[1..].chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 || !digits.bytes().all(|c| c.is_ascii_digit()) {
                return None;
            }
            let hours: i64 = digits[..2].parse().ok()?;
            let minutes: i64 = digits[2..].parse().ok()?;
            sign * (hours * 3600 + minutes * 60)
        }
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + s - offset;
    u64::try_from(secs * 1000 + millis).ok()
}

/// A SOQL dateTime literal for `ms`, truncated to the second (SOQL takes no fractions).
pub fn soql_datetime(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(month <= 2), month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rest_datetimes() {
        assert_eq!(
            parse_ms("2012-04-04T09:14:57.123+0000"),
            Some(1_333_530_897_123)
        );
        assert_eq!(parse_ms("2012-04-04T09:14:57Z"), Some(1_333_530_897_000));
        assert_eq!(
            parse_ms("2012-04-04T18:14:57.000+09:00"),
            Some(1_333_530_897_000)
        );
        assert_eq!(
            parse_ms("2012-04-04T18:14:57.000+0900"),
            Some(1_333_530_897_000)
        );
        for bad in [
            "",
            "2012-04-04",
            "2012-04-04T09:14:57",
            "2012-04-04T09:14:57+09",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn formats_soql_literals() {
        assert_eq!(soql_datetime(1_333_530_897_999), "2012-04-04T09:14:57Z");
        assert_eq!(soql_datetime(0), "1970-01-01T00:00:00Z");
        let now = 1_733_000_000_123;
        assert_eq!(parse_ms(&soql_datetime(now)), Some(now / 1000 * 1000));
    }
}
