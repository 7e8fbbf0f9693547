//! Small helpers: the simulator clock, timestamp formatting, opaque cursors, URL encoding.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Wall-clock time plus an offset tests can move forward, so TTLs and time windows can be
/// exercised without sleeping.
#[derive(Debug)]
pub(crate) struct Clock {
    offset_ms: AtomicI64,
    /// When set (not `NOT_FROZEN`), the wall-clock reading the clock is pinned to.
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
    /// Milliseconds since the Unix epoch, as the simulator sees it.
    pub(crate) fn now_ms(&self) -> i64 {
        let frozen = self.frozen_ms.load(Ordering::Relaxed);
        let base = if frozen == NOT_FROZEN {
            wall_ms()
        } else {
            frozen
        };
        base + self.offset_ms.load(Ordering::Relaxed)
    }

    /// Stops the clock at the current wall time; only `advance` moves it afterwards.
    pub(crate) fn freeze(&self) {
        let _ = self.frozen_ms.compare_exchange(
            NOT_FROZEN,
            wall_ms(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    pub(crate) fn now_secs(&self) -> i64 {
        self.now_ms().div_euclid(1000)
    }

    pub(crate) fn advance(&self, by: Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX / 2);
        self.offset_ms.fetch_add(ms, Ordering::Relaxed);
    }
}

fn wall_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2))
        .unwrap_or(0)
}

/// `2024-01-01T00:00:00Z` for a Unix timestamp in seconds.
pub(crate) fn iso8601(secs: i64) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )
}

/// `2024-01-01T00:00:00.123Z` for a Unix timestamp in milliseconds (event `time` fields).
pub(crate) fn iso8601_ms(ms: i64) -> String {
    let base = iso8601(ms.div_euclid(1000));
    format!("{}.{:03}Z", base.trim_end_matches('Z'), ms.rem_euclid(1000))
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Encodes a position as an opaque, URL-safe cursor. The prefix keeps cursors of different
/// listings from being mixed up silently.
pub(crate) fn encode_cursor(kind: &str, position: u64) -> String {
    URL_SAFE_NO_PAD.encode(format!("{kind}:{position}"))
}

/// Decodes a cursor made by [`encode_cursor`] for the same `kind`.
pub(crate) fn decode_cursor(kind: &str, cursor: &str) -> Option<u64> {
    let raw = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    let (k, position) = text.split_once(':')?;
    if k != kind {
        return None;
    }
    position.parse().ok()
}

/// Percent-encodes a query component (RFC 3986 unreserved characters pass through).
pub(crate) fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Builds `path?k=v&...` with encoded keys and values.
pub(crate) fn with_query(path: &str, params: &[(&str, String)]) -> String {
    if params.is_empty() {
        return path.to_owned();
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", encode_component(k), encode_component(v)))
        .collect();
    format!("{path}?{}", query.join("&"))
}

/// A UUID-shaped (version 4 layout) id derived from a counter and the clock. Unique within a
/// simulator run, which is all event ids need.
pub(crate) fn pseudo_uuid(seed: u64, now_ms: i64) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{seed}:{now_ms}"));
    let mut b = [0u8; 16];
    b.copy_from_slice(&digest[..16]);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// A 43-character base64 secret derived from a counter and the clock (unique per run).
pub(crate) fn pseudo_secret(seed: u64, now_ms: i64) -> String {
    use sha2::{Digest, Sha256};
    URL_SAFE_NO_PAD.encode(Sha256::digest(format!("secret:{seed}:{now_ms}")))
}

/// Strips HTML tags and decodes the few entities our own `html_body` rendering produces.
pub(crate) fn strip_html(html: &str) -> String {
    // Keep paragraph and line breaks as text before dropping the tags.
    let html = html
        .replace("</p><p>", "\n\n")
        .replace("<br>", "\n")
        .replace("<br/>", "\n");
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            _ if !in_tag => out.push(c),
            _ => {}
        }
    }
    out.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&amp;", "&")
}

/// Renders a plain-text comment body the way Zendesk's `html_body` wraps it.
pub(crate) fn html_from_text(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    let paragraphs: Vec<String> = escaped
        .split("\n\n")
        .map(|p| format!("<p>{}</p>", p.replace('\n', "<br>")))
        .collect();
    format!(
        "<div class=\"zd-comment\" dir=\"auto\">{}</div>",
        paragraphs.join("")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(1_704_067_200), "2024-01-01T00:00:00Z");
        assert_eq!(iso8601(1_709_210_096), "2024-02-29T12:34:56Z");
        assert_eq!(iso8601_ms(1_704_067_200_042), "2024-01-01T00:00:00.042Z");
    }

    #[test]
    fn cursors_round_trip_and_reject_other_kinds() {
        let c = encode_cursor("comments", 42);
        assert_eq!(decode_cursor("comments", &c), Some(42));
        assert_eq!(decode_cursor("tickets", &c), None);
        assert_eq!(decode_cursor("comments", "%%%"), None);
    }

    #[test]
    fn html_round_trips_to_text() {
        let html = html_from_text("a < b & c\n\nnext");
        assert_eq!(strip_html(&html), "a < b & c\n\nnext");
        assert_eq!(encode_component("page[size]"), "page%5Bsize%5D");
    }
}
