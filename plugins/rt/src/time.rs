//! The two date forms RT uses: `2024-05-01T09:14:57Z` in REST 2.0 bodies, and
//! `2024-05-01 09:14:57` (UTC) in its database, which JSON searches compare against verbatim.

use switchboard_plugin_sdk::time;

/// Parses `YYYY-MM-DDTHH:MM:SSZ` (or with a space for `T`) into milliseconds since the epoch.
///
/// RT writes unset dates as `1970-01-01T00:00:00Z`, which gives 0.
pub use switchboard_plugin_sdk::time::parse_utc_datetime_ms as parse_rt_datetime_ms;

/// Formats epoch milliseconds the way RT stores dates: `YYYY-MM-DD HH:MM:SS`, UTC.
pub fn format_db_datetime(ms: u64) -> String {
    time::format_utc_datetime_secs(ms / 1000)
}

/// Parses an HTTP `Date` header into epoch milliseconds.
pub fn parse_http_date_ms(value: &str) -> Option<u64> {
    time::parse_http_date_secs(value)?.checked_mul(1000)
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
