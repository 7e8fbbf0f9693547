//! Small helpers: opaque cursors, ids, HTML bodies. Time and URLs come from the kit.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

pub(crate) use crate::kit::dates::{iso8601, iso8601_ms};
pub(crate) use crate::kit::url::with_query;

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

/// Strips HTML tags and decodes the few entities our own `html_body` rendering produces,
/// keeping paragraph and line breaks as text.
pub(crate) fn strip_html(html: &str) -> String {
    let breaks = [("</p><p>", "\n\n"), ("<br>", "\n"), ("<br/>", "\n")];
    crate::kit::html::text_of(html, &breaks, &[])
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
    }
}
