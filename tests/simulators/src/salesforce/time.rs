//! The datetime formats Salesforce reads and writes (the clock and the calendar are the kit's).

use crate::kit::dates::{iso8601_ms, parse_date_time};

/// `2024-05-01T09:14:57.123+0000`: how the REST API writes datetime fields.
pub(crate) fn sf_datetime(ms: i64) -> String {
    format!("{}+0000", iso8601_ms(ms).trim_end_matches('Z'))
}

/// A SOQL dateTime literal, in the three documented forms only:
/// `YYYY-MM-DDThh:mm:ssZ`, `YYYY-MM-DDThh:mm:ss+hh:mm` and `YYYY-MM-DDThh:mm:ss-hh:mm`.
pub(crate) fn parse_soql_datetime(s: &str) -> Option<i64> {
    if s.len() < 20 {
        return None;
    }
    let (base, zone) = s.split_at(19);
    let secs = parse_date_time(base)?;
    let offset = match zone {
        "Z" => 0,
        _ => parse_offset(zone, true)?,
    };
    Some((secs - offset) * 1000)
}

/// ISO-8601 as REST query parameters carry it (getUpdated `start`/`end`): fractional seconds
/// and `Z`, `+hh:mm` or `+hhmm` offsets are all accepted.
pub(crate) fn parse_iso_lenient(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() < 19 {
        return None;
    }
    let (base, mut rest) = s.split_at(19);
    let secs = parse_date_time(base)?;
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
        _ => parse_offset(rest, false)?,
    };
    Some((secs - offset) * 1000 + millis)
}

/// `+hh:mm` (or `+hhmm` unless `colon_required`) to seconds east of UTC.
fn parse_offset(s: &str, colon_required: bool) -> Option<i64> {
    let sign = match s.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let rest = &s[1..];
    let (h, m) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None if !colon_required && rest.len() == 4 => rest.split_at(2),
        None => return None,
    };
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: i64 = h.parse().ok()?;
    let m: i64 = m.parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    Some(sign * (h * 3600 + m * 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses() {
        assert_eq!(
            sf_datetime(1_333_530_897_123),
            "2012-04-04T09:14:57.123+0000"
        );
        assert_eq!(
            parse_soql_datetime("2012-04-04T09:14:57Z"),
            Some(1_333_530_897_000)
        );
        assert_eq!(
            parse_soql_datetime("2012-04-04T18:14:57+09:00"),
            Some(1_333_530_897_000)
        );
        for bad in [
            "2012-04-04",
            "2012-04-04T09:14:57.000Z",
            "2012-04-04T09:14:57+0900",
            "2012-13-04T09:14:57Z",
        ] {
            assert_eq!(parse_soql_datetime(bad), None, "{bad}");
        }
        assert_eq!(
            parse_iso_lenient("2012-04-04T09:14:57.123+0000"),
            Some(1_333_530_897_123)
        );
        assert_eq!(
            parse_iso_lenient("2012-04-04T09:14:57Z"),
            Some(1_333_530_897_000)
        );
    }
}
