//! Cron schedules: 5-field crontab or 6 fields with seconds, in a time zone.

use std::str::FromStr;

/// A parsed cron expression.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub expression: String,
    inner: cron::Schedule,
}

#[derive(Debug, thiserror::Error)]
#[error(
    "invalid schedule `{expression}`: {reason} (use 5 crontab fields, or 6 with seconds first)"
)]
pub struct ScheduleError {
    pub expression: String,
    pub reason: String,
}

impl Schedule {
    /// Parses `expression`. The `cron` crate wants seconds first; a 5-field crontab line gets
    /// `0` seconds prepended. `_time_zone` is reserved for the scheduler.
    pub fn parse(expression: &str, _time_zone: Option<&str>) -> Result<Self, ScheduleError> {
        let fields = expression.split_whitespace().count();
        let normalized = match fields {
            5 => format!("0 {expression}"),
            6 | 7 => expression.to_string(),
            n => {
                return Err(ScheduleError {
                    expression: expression.into(),
                    reason: format!("{n} fields"),
                });
            }
        };
        let inner = cron::Schedule::from_str(&normalized).map_err(|e| ScheduleError {
            expression: expression.into(),
            reason: e.to_string(),
        })?;
        Ok(Self {
            expression: expression.to_string(),
            inner,
        })
    }

    pub fn cron(&self) -> &cron::Schedule {
        &self.inner
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
    }
}
