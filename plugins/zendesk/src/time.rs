//! ISO-8601 timestamps as Zendesk writes them (`2012-04-04T09:14:57Z`), to epoch milliseconds.
//!
//! Zendesk always sends UTC with `Z`; the SDK's RFC 3339 parser also takes fractional seconds
//! and `±HH:MM` offsets to be safe.

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into milliseconds since the Unix epoch.
///
/// Returns `None` for anything else, and for dates before 1970.
pub use switchboard_plugin_sdk::time::parse_rfc3339_ms as parse_iso8601_ms;

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
