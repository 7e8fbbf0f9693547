//! Freshdesk's timestamps (`2024-01-01T00:00:00Z`, always UTC) to and from epoch time, and the
//! server's `Date` header, over the SDK's `time` module.

/// Parses `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into milliseconds since the Unix epoch.
/// `None` for anything else and for dates before 1970.
pub use switchboard_plugin_sdk::time::parse_rfc3339_ms as parse_iso8601_ms;

/// `2024-01-01T00:00:00Z` for Unix seconds, the format `updated_since` takes.
pub use switchboard_plugin_sdk::time::format_rfc3339_secs as iso8601;

/// Unix seconds of an HTTP `Date` header (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub use switchboard_plugin_sdk::time::parse_http_date_secs;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_freshdesk_timestamps() {
        assert_eq!(
            parse_iso8601_ms("2015-08-24T11:59:05Z"),
            Some(1_440_417_545_000)
        );
        assert_eq!(iso8601(1_440_417_545), "2015-08-24T11:59:05Z");
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            parse_iso8601_ms("2014-07-28T16:20:03+05:30"),
            Some(1_406_544_603_000)
        );
        assert_eq!(
            parse_iso8601_ms("2024-02-29T23:59:59.5Z"),
            Some(1_709_251_199_500)
        );
        for bad in [
            "",
            "2015-08-24",
            "2015-08-24T11:59:05",
            "1969-12-31T23:59:59Z",
        ] {
            assert_eq!(parse_iso8601_ms(bad), None, "{bad}");
        }
    }

    #[test]
    fn reads_the_date_header() {
        assert_eq!(
            parse_http_date_secs("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(parse_http_date_secs("yesterday"), None);
    }
}
