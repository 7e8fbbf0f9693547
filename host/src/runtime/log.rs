//! The plugin log capability: plugin log lines become `tracing` events of the call's span,
//! with a volume cap per call, each part of a line cut to a bound, and secrets redacted from
//! the message, the field keys and the field values (see [`Redactor`]).

use std::sync::Arc;

use super::bindings::log::Level;
use super::bounds::{Redactor, MAX_LOG_KEY_BYTES, MAX_LOG_MESSAGE_BYTES, MAX_LOG_VALUE_BYTES};

/// Log volume one call may produce before lines are dropped.
#[derive(Debug, Clone, Copy)]
pub struct LogLimits {
    pub max_lines: usize,
    pub max_bytes: usize,
}

impl Default for LogLimits {
    fn default() -> Self {
        Self {
            max_lines: 1_000,
            max_bytes: 256 << 10,
        }
    }
}

/// A line as a plugin logged it, after redaction. Kept for `plugin exec`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
    pub fields: Vec<(String, String)>,
}

/// Receives one call's log lines.
pub struct LogSink {
    plugin_id: Arc<str>,
    limits: LogLimits,
    lines: usize,
    bytes: usize,
    dropped: usize,
    /// Masks secret setting values (and their encodings) in every part of a line.
    redactor: Redactor,
    /// When set, lines are kept here instead of going to `tracing` (used by `plugin exec`,
    /// which prints them itself: emitting both printed every line twice).
    captured: Option<Vec<LogLine>>,
}

impl LogSink {
    pub fn new(
        plugin_id: Arc<str>,
        limits: LogLimits,
        secrets: Arc<[String]>,
        capture: bool,
    ) -> Self {
        Self {
            plugin_id,
            limits,
            lines: 0,
            bytes: 0,
            dropped: 0,
            redactor: Redactor::new(&secrets),
            captured: capture.then(Vec::new),
        }
    }

    pub fn emit(&mut self, level: Level, message: &str, fields: &[(String, String)]) {
        // A field costs at least a byte, so a million empty fields count too.
        let size = message.len()
            + fields
                .iter()
                .map(|(k, v)| k.len() + v.len() + 1)
                .sum::<usize>();
        if self.lines >= self.limits.max_lines || self.bytes + size > self.limits.max_bytes {
            if self.dropped == 0 {
                tracing::warn!(plugin = %self.plugin_id, "plugin log cap reached; further lines of this call are dropped");
            }
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        self.bytes += size;
        let message = self.redactor.redact_bounded(message, MAX_LOG_MESSAGE_BYTES);
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| {
                (
                    self.redactor.redact_bounded(k, MAX_LOG_KEY_BYTES),
                    self.redactor.redact_bounded(v, MAX_LOG_VALUE_BYTES),
                )
            })
            .collect();
        if let Some(captured) = &mut self.captured {
            captured.push(LogLine {
                level: level_name(level),
                message,
                fields,
            });
            return;
        }
        let rendered: String = fields.iter().map(|(k, v)| format!(" {k}={v:?}")).collect();
        let plugin = &*self.plugin_id;
        match level {
            Level::Trace => {
                tracing::trace!(target: "plugin", plugin, fields = %rendered, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "plugin", plugin, fields = %rendered, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "plugin", plugin, fields = %rendered, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "plugin", plugin, fields = %rendered, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "plugin", plugin, fields = %rendered, "{message}")
            }
        }
    }

    /// Lines dropped because of the cap.
    /// The plugin these lines come from.
    pub fn plugin_id(&self) -> &str {
        &self.plugin_id
    }

    pub fn dropped(&self) -> usize {
        self.dropped
    }

    pub fn take_captured(&mut self) -> Vec<LogLine> {
        self.captured.take().unwrap_or_default()
    }
}

fn level_name(level: Level) -> &'static str {
    match level {
        Level::Trace => "trace",
        Level::Debug => "debug",
        Level::Info => "info",
        Level::Warn => "warn",
        Level::Error => "error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_volume_is_capped() {
        let secrets: Arc<[String]> = vec!["hunter2".to_string()].into();
        let mut sink = LogSink::new(
            "p".into(),
            LogLimits {
                max_lines: 2,
                max_bytes: 1 << 20,
            },
            secrets,
            true,
        );
        sink.emit(
            Level::Info,
            "token is hunter2",
            &[("auth".into(), "Bearer hunter2".into())],
        );
        sink.emit(Level::Warn, "second", &[]);
        sink.emit(Level::Error, "third", &[]);
        assert_eq!(sink.dropped(), 1);
        let lines = sink.take_captured();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].message, "token is [redacted]");
        assert_eq!(lines[0].fields[0].1, "Bearer [redacted]");
    }

    #[test]
    fn keys_are_redacted_and_every_part_is_cut() {
        use base64::Engine as _;
        let secret = "hunter2-long-secret".to_string();
        let encoded = base64::engine::general_purpose::STANDARD.encode(&secret);
        let mut sink = LogSink::new(
            "p".into(),
            LogLimits {
                max_lines: 10,
                max_bytes: 1 << 20,
            },
            vec![secret.clone()].into(),
            true,
        );
        let huge = "k".repeat(100_000);
        sink.emit(
            Level::Info,
            &format!("{encoded} {}", "m".repeat(100_000)),
            &[
                (format!("key-{secret}"), "v".into()),
                (huge.clone(), huge.clone()),
            ],
        );
        let line = &sink.take_captured()[0];
        // The last base64 character also carries the bits of what follows: it stays.
        assert!(
            line.message.starts_with("[redacted]"),
            "{}",
            &line.message[..40]
        );
        assert!(!line.message.contains(&encoded[..encoded.len() - 3]));
        assert!(line.message.len() <= MAX_LOG_MESSAGE_BYTES + 40);
        assert_eq!(line.fields[0].0, "key-[redacted]");
        assert!(line.fields[1].0.len() <= MAX_LOG_KEY_BYTES + 40);
        assert!(line.fields[1].1.len() <= MAX_LOG_VALUE_BYTES + 40);
    }
}
