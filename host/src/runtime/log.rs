//! The plugin log capability: plugin log lines become `tracing` events of the call's span,
//! with a volume cap per call and secret values redacted.

use std::sync::Arc;

use super::bindings::log::Level;

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
    /// Secret setting values; any occurrence in a line is replaced.
    secrets: Arc<[String]>,
    /// When set, lines are also kept here (used by `plugin exec`).
    captured: Option<Vec<LogLine>>,
}

const REDACTED: &str = "[redacted]";

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
            secrets,
            captured: capture.then(Vec::new),
        }
    }

    pub fn emit(&mut self, level: Level, message: &str, fields: &[(String, String)]) {
        let size = message.len() + fields.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
        if self.lines >= self.limits.max_lines || self.bytes + size > self.limits.max_bytes {
            if self.dropped == 0 {
                tracing::warn!(plugin = %self.plugin_id, "plugin log cap reached; further lines of this call are dropped");
            }
            self.dropped += 1;
            return;
        }
        self.lines += 1;
        self.bytes += size;
        let message = self.redact(message);
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| (k.clone(), self.redact(v)))
            .collect();
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
        if let Some(captured) = &mut self.captured {
            captured.push(LogLine {
                level: level_name(level),
                message,
                fields,
            });
        }
    }

    /// Lines dropped because of the cap.
    pub fn dropped(&self) -> usize {
        self.dropped
    }

    pub fn take_captured(&mut self) -> Vec<LogLine> {
        self.captured.take().unwrap_or_default()
    }

    fn redact(&self, text: &str) -> String {
        let mut text = text.to_string();
        for secret in self.secrets.iter().filter(|s| !s.is_empty()) {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), REDACTED);
            }
        }
        text
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
}
