//! The simulator clock, and the datetime formats Salesforce reads and writes.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Wall-clock time plus an offset tests can move forward (token lifetimes, query locators,
/// getUpdated windows), optionally frozen so several writes share one millisecond.
#[derive(Debug)]
pub(crate) struct Clock {
    offset_ms: AtomicI64,
    frozen_ms: AtomicI64,
}

const NOT_FROZEN: i64 = i64::MIN;

impl Default for Clock {
    fn default() -> Self {
        Self {
            offset_ms: AtomicI64::new(0),
            frozen_ms: AtomicI64::new(NOT_FROZEN),
        }
    }
}

impl Clock {
    pub(crate) fn now_ms(&self) -> i64 {
        let frozen = self.frozen_ms.load(Ordering::Relaxed);
        let base = if frozen == NOT_FROZEN {
            wall_ms()
        } else {
            frozen
        };
        base + self.offset_ms.load(Ordering::Relaxed)
    }

    pub(crate) fn freeze(&self) {
        let _ = self.frozen_ms.compare_exchange(
            NOT_FROZEN,
            wall_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    pub(crate) fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 4);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4))
        .unwrap_or(0)
}

/// `2024-05-01T09:14:57.123+0000`: how the REST API writes datetime fields.
pub(crate) fn sf_datetime(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}+0000",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
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

/// Seconds since the epoch of `YYYY-MM-DDThh:mm:ss`.
fn parse_date_time(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 19 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if part.bytes().all(|c| c.is_ascii_digit()) {
            part.parse().ok()
        } else {
            None
        }
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 59 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se)
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
