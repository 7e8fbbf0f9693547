//! Timestamps as helpdesk and social APIs write them, to and from Unix time, on `chrono`
//! (no clock: a plugin gets "now" from the host or the server's `Date` header).
//!
//! Results are `u64`: instants before 1970 give `None`, since cursors and ids are unsigned.

use chrono::{DateTime, SecondsFormat, Utc};

/// Parses an RFC 3339 timestamp (`2012-04-04T09:14:57Z`, `2012-04-04T18:14:57.5+09:00`; `T`,
/// `t` or a space between date and time) into milliseconds since the Unix epoch.
///
/// Strict about the offset: `Z` or `±hh:mm` only. Finer digits than milliseconds are dropped.
pub fn parse_rfc3339_ms(value: &str) -> Option<u64> {
    let at = DateTime::parse_from_rfc3339(value.trim()).ok()?;
    u64::try_from(at.timestamp_millis()).ok()
}

/// Like [`parse_rfc3339_ms`], but also takes an ISO 8601 offset without a colon (`+0000`), as
/// Salesforce writes it.
pub fn parse_iso8601_ms(value: &str) -> Option<u64> {
    let value = value.trim();
    let bytes = value.as_bytes();
    if let Some(sign) = bytes.len().checked_sub(5) {
        if matches!(bytes[sign], b'+' | b'-') && bytes[sign + 1..].iter().all(u8::is_ascii_digit) {
            // `+hhmm` to `+hh:mm`, the only numeric form RFC 3339 has.
            let (head, minutes) = value.split_at(sign + 3);
            return parse_rfc3339_ms(&format!("{head}:{minutes}"));
        }
    }
    parse_rfc3339_ms(value)
}

/// Parses `YYYY-MM-DD HH:MM:SS` (or with `T`), UTC, optionally followed by `Z`, into milliseconds
/// since the Unix epoch: the form SQL databases (RT's among them) store.
pub fn parse_utc_datetime_ms(value: &str) -> Option<u64> {
    let value = value.trim();
    let value = value.strip_suffix('Z').unwrap_or(value);
    // Whole seconds and no offset: exactly `YYYY-MM-DD?HH:MM:SS`.
    if value.len() != 19 || !matches!(value.as_bytes()[10], b'T' | b' ') {
        return None;
    }
    parse_rfc3339_ms(&format!("{value}Z"))
}

/// `2024-01-01T00:00:00Z` for Unix seconds.
pub fn format_rfc3339_secs(secs: u64) -> String {
    utc(secs).to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// `2024-01-01 00:00:00` (UTC) for Unix seconds: the SQL form [`parse_utc_datetime_ms`] reads.
pub fn format_utc_datetime_secs(secs: u64) -> String {
    // NaiveDateTime's Display is this form for whole seconds, without the heavier strftime engine.
    utc(secs).naive_utc().to_string()
}

/// Unix seconds of an HTTP date (`Sun, 06 Nov 1994 08:49:37 GMT`, as in `Date`).
pub fn parse_http_date_secs(value: &str) -> Option<u64> {
    let at = httpdate::parse_http_date(value.trim()).ok()?;
    at.duration_since(std::time::UNIX_EPOCH)
        .ok()
        .map(|d| d.as_secs())
}

/// The instant `secs` after the epoch; past chrono's range (year 262143) it saturates.
fn utc(secs: u64) -> DateTime<Utc> {
    i64::try_from(secs)
        .ok()
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ms(" 2012-04-04T09:14:57Z "),
            Some(1_333_530_897_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2012-04-04t09:14:57z"),
            Some(1_333_530_897_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2012-04-04 09:14:57Z"),
            Some(1_333_530_897_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2024-02-29T23:59:59.5Z"),
            Some(1_709_251_199_500)
        );
        assert_eq!(
            parse_rfc3339_ms("2012-04-04T18:14:57+09:00"),
            Some(1_333_530_897_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2012-04-04T00:14:57-09:00"),
            Some(1_333_530_897_000)
        );
        assert_eq!(
            parse_rfc3339_ms("2012-04-04T09:14:57.123456Z"),
            Some(1_333_530_897_123)
        );
        // A leap second reads as the next second's start.
        assert_eq!(
            parse_rfc3339_ms("2016-12-31T23:59:60Z"),
            parse_rfc3339_ms("2017-01-01T00:00:00Z")
        );
        for bad in [
            "",
            "2012-04-04",
            "2012-04-04T09:14:57",
            "2012-13-04T09:14:57Z",
            "2012-04-04T24:14:57Z",
            "2012-04-04T09:14:57.Z",
            "20x2-04-04T09:14:57Z",
            "12-04-04T09:14:57Z",
            "1969-12-31T23:59:59Z",
            "2012-04-04T09:14:57+0900",
            "2012-04-04T09:14:57+09",
            "2012-04-04T09:14:57Zjunk",
        ] {
            assert_eq!(parse_rfc3339_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn iso8601_also_takes_offsets_without_colon() {
        assert_eq!(
            parse_iso8601_ms("2012-04-04T09:14:57.123+0000"),
            Some(1_333_530_897_123)
        );
        assert_eq!(
            parse_iso8601_ms("2012-04-04T18:14:57.000+0900"),
            Some(1_333_530_897_000)
        );
        assert_eq!(
            parse_iso8601_ms("2012-04-04T18:14:57.000+09:00"),
            Some(1_333_530_897_000)
        );
        assert_eq!(parse_iso8601_ms("2012-04-04T09:14:57+09"), None);
    }

    #[test]
    fn sql_datetimes_round_trip() {
        assert_eq!(parse_utc_datetime_ms("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_utc_datetime_ms("2024-02-29 23:59:59"),
            Some(1_709_251_199_000)
        );
        for bad in [
            "",
            "2024-02-29",
            "2024-13-01T00:00:00Z",
            "24-02-29T00:00:00Z",
            "2024-02-29T23:59:59.5Z",
            "2024-02-29T23:59:59+00:00",
            "x",
        ] {
            assert_eq!(parse_utc_datetime_ms(bad), None, "{bad}");
        }
        assert_eq!(format_utc_datetime_secs(0), "1970-01-01 00:00:00");
        for secs in [0, 951_782_400, 1_333_530_897, 4_102_444_800] {
            let text = format_utc_datetime_secs(secs);
            assert_eq!(parse_utc_datetime_ms(&text), Some(secs * 1000), "{text}");
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(format_rfc3339_secs(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_rfc3339_secs(1_440_417_545), "2015-08-24T11:59:05Z");
        assert_eq!(
            parse_rfc3339_ms(&format_rfc3339_secs(1_709_251_199)),
            Some(1_709_251_199_000)
        );
        // Saturates instead of panicking.
        assert!(!format_rfc3339_secs(u64::MAX).is_empty());
    }

    #[test]
    fn reads_http_dates() {
        assert_eq!(
            parse_http_date_secs("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date_secs("yesterday"), None);
    }
}
