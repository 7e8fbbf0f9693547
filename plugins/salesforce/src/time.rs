//! Salesforce timestamps: the REST API writes `2024-05-01T09:14:57.000+0000`; SOQL takes
//! `2024-05-01T09:14:57Z`.

use switchboard_plugin_sdk::time;

/// Parses `YYYY-MM-DDThh:mm:ss[.fff](Z|±hhmm|±hh:mm)` into milliseconds since the epoch.
/// `None` for anything else and for dates before 1970.
pub fn parse_ms(value: &str) -> Option<u64> {
    // Salesforce always writes an upper-case `T`; the SDK would also take `t` or a space.
    if value.trim().as_bytes().get(10) != Some(&b'T') {
        return None;
    }
    time::parse_iso8601_ms(value)
}

/// A SOQL dateTime literal for `ms`, truncated to the second (SOQL takes no fractions).
pub fn soql_datetime(ms: u64) -> String {
    time::format_rfc3339_secs(ms / 1000)
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
