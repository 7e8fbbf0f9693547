//! Cron schedules: 5-field crontab or 6 fields with seconds, in a time zone.

use std::str::FromStr;

use chrono::{DateTime, TimeZone, Utc};
use chrono_tz::Tz;

/// A parsed cron expression and the time zone its fields are read in.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub expression: String,
    pub time_zone: Tz,
    inner: cron::Schedule,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid schedule `{expression}`: {reason} (use 5 crontab fields, or 6 with seconds first, and an IANA time zone such as `Europe/Paris`)")]
pub struct ScheduleError {
    pub expression: String,
    pub reason: String,
}

impl Schedule {
    /// Parses `expression` in `time_zone` (an IANA name; UTC when `None`). The `cron` crate
    /// wants seconds first; a 5-field crontab line gets `0` seconds prepended.
    pub fn parse(expression: &str, time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let error = |reason: String| ScheduleError {
            expression: expression.into(),
            reason,
        };
        let fields = expression.split_whitespace().count();
        let normalized = match fields {
            5 => format!("0 {expression}"),
            6 | 7 => expression.to_string(),
            n => return Err(error(format!("{n} fields"))),
        };
        let inner = cron::Schedule::from_str(&normalized).map_err(|e| error(e.to_string()))?;
        let time_zone = match time_zone {
            None => Tz::UTC,
            Some(name) => name
                .parse::<Tz>()
                .map_err(|_| error(format!("unknown time zone `{name}`")))?,
        };
        Ok(Self {
            expression: expression.to_string(),
            time_zone,
            inner,
        })
    }

    pub fn cron(&self) -> &cron::Schedule {
        &self.inner
    }

    /// The first slot strictly after `after_ms` (ms since the epoch), or `None` when the
    /// expression has no future slot (such as a fixed year in the past).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let after: DateTime<Utc> = Utc.timestamp_millis_opt(after_ms).single()?;
        let local = after.with_timezone(&self.time_zone);
        self.inner
            .after(&local)
            .next()
            .map(|next| next.with_timezone(&Utc).timestamp_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_five_and_six_fields() {
        assert!(Schedule::parse("*/5 * * * *", None).is_ok());
        assert!(Schedule::parse("*/10 * * * * *", None).is_ok());
        assert!(Schedule::parse("* * *", None).is_err());
        assert!(Schedule::parse("61 * * * *", None).is_err());
        assert!(Schedule::parse("* * * * *", Some("Mars/Olympus")).is_err());
    }

    #[test]
    fn next_slot_in_the_time_zone() {
        // 2024-06-01T00:00:00Z
        let start = 1_717_200_000_000;
        let every_ten = Schedule::parse("*/10 * * * * *", None).expect("parse");
        assert_eq!(every_ten.next_after(start), Some(start + 10_000));
        assert_eq!(every_ten.next_after(start + 1), Some(start + 10_000));
        // 09:00 every day in Tokyo (UTC+9) is 00:00 UTC.
        let tokyo = Schedule::parse("0 9 * * *", Some("Asia/Tokyo")).expect("parse");
        assert_eq!(tokyo.next_after(start - 1), Some(start));
        assert_eq!(tokyo.next_after(start), Some(start + 86_400_000));
    }
}
