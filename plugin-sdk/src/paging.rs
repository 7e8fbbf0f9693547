//! Pagination helpers: RFC 8288 `Link` headers and opaque poll cursors.
//!
//! A poll cursor is the plugin's own bookmark: the host stores it after the page's events are
//! saved and hands it back on the next poll, without looking inside. When a bookmark needs more
//! than one value (a timestamp and the last id seen, say), keep them in a small struct and
//! encode it with [`encode_cursor`]:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use switchboard_plugin_sdk::paging::{decode_cursor, encode_cursor};
//!
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct Bookmark { since: u64, last_id: String }
//!
//! let cursor = encode_cursor(&Bookmark { since: 1700000000, last_id: "42".into() });
//! let back: Bookmark = decode_cursor(&cursor).unwrap();
//! assert_eq!(back.last_id, "42");
//! ```

use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine};
use serde::{de::DeserializeOwned, Serialize};

use crate::{ConnectorError, Result};

/// Checks that `stream` is one the connector polls: `names[0]`, or an older name of it that
/// an installation made with an earlier build may still poll by. Any other is an
/// `InvalidInput` error for field `stream` that names the one `service` has.
///
/// ```
/// # use switchboard_plugin_sdk::paging::check_stream;
/// assert!(check_stream("Zendesk", "ticket-events", &["ticket-changes", "ticket-events"]).is_ok());
/// assert!(check_stream("Zendesk", "tickets", &["ticket-changes"]).is_err());
/// ```
pub fn check_stream(service: &str, stream: &str, names: &[&str]) -> Result<()> {
    if names.contains(&stream) {
        return Ok(());
    }
    let only = names.first().copied().unwrap_or_default();
    Err(ConnectorError::invalid(
        "stream",
        format!("unknown stream `{stream}`; {service} has only `{only}`"),
    ))
}

/// The URL of the `rel="next"` link in a `Link` header (GitHub, Shopify, Zendesk cursor
/// pagination), if there is one.
///
/// ```
/// # use switchboard_plugin_sdk::paging::next_link;
/// let link = r#"<https://api.example.com/items?page=3>; rel="next", <https://api.example.com/items?page=9>; rel="last""#;
/// assert_eq!(next_link(link).as_deref(), Some("https://api.example.com/items?page=3"));
/// ```
pub fn next_link(link_header: &str) -> Option<String> {
    link(link_header, "next")
}

/// The URL of the `rel="prev"` link in a `Link` header (also spelled `rel="previous"`), for
/// paging backwards, as a listing sorted newest first is read back in time.
///
/// ```
/// # use switchboard_plugin_sdk::paging::prev_link;
/// let link = r#"<https://x.example/items?page=1>; rel="prev", <https://x.example/items?page=3>; rel="next""#;
/// assert_eq!(prev_link(link).as_deref(), Some("https://x.example/items?page=1"));
/// ```
pub fn prev_link(link_header: &str) -> Option<String> {
    link(link_header, "prev").or_else(|| link(link_header, "previous"))
}

/// The URL of the first link in a `Link` header whose `rel` includes `relation` (compared
/// case-insensitively): `next`, `prev`, `first`, `last`, ...
pub fn link(link_header: &str, relation: &str) -> Option<String> {
    let mut rest = link_header;
    loop {
        // Each link is `<uri-reference>` followed by `; param` pairs; URIs may contain `,` and `;`.
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let url = &rest[start + 1..end];
        let after = &rest[end + 1..];
        let params_end = next_link_start(after);
        if params_have_rel(&after[..params_end], relation) {
            return Some(url.trim().to_owned());
        }
        rest = &after[params_end..];
    }
}

/// Where the parameters of one link end: at the first `,` outside a quoted string.
fn next_link_start(params: &str) -> usize {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in params.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if quoted => escaped = true,
            '"' => quoted = !quoted,
            ',' if !quoted => return i,
            _ => {}
        }
    }
    params.len()
}

fn params_have_rel(params: &str, relation: &str) -> bool {
    params.split(';').any(|param| {
        let Some((name, value)) = param.split_once('=') else {
            return false;
        };
        // `rel` may list several space-separated relation types: rel="next last".
        name.trim().eq_ignore_ascii_case("rel")
            && value
                .trim()
                .trim_matches('"')
                .split_ascii_whitespace()
                .any(|rel| rel.eq_ignore_ascii_case(relation))
    })
}

/// Encodes a cursor state as URL-safe base64 of its JSON.
///
/// The result is safe to put in URLs and logs as is. It is not encrypted: keep secrets out.
pub fn encode_cursor<T: Serialize + ?Sized>(state: &T) -> String {
    // Serializing plain data to JSON only fails for maps with non-string keys; such a cursor
    // would not round-trip anyway, so an empty object is as good as any.
    let json = serde_json::to_vec(state).unwrap_or_else(|_| b"{}".to_vec());
    URL_SAFE_NO_PAD.encode(json)
}

/// Decodes a cursor made by [`encode_cursor`].
///
/// A cursor that doesn't decode (written by an older plugin version, or edited by hand) is an
/// `InvalidInput` error for field `cursor`: the admin can reset the stream's cursor.
pub fn decode_cursor<T: DeserializeOwned>(cursor: &str) -> Result<T> {
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim_end_matches('='))
        .map_err(|err| ConnectorError::invalid("cursor", format!("not base64url: {err}")))?;
    serde_json::from_slice(&bytes)
        .map_err(|err| ConnectorError::invalid("cursor", format!("unexpected content: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[test]
    fn streams_are_checked_by_name() {
        assert_eq!(
            check_stream("RT", "ticket-changes", &["ticket-changes"]),
            Ok(())
        );
        assert_eq!(
            check_stream("RT", "ticket-events", &["ticket-changes"]),
            Err(ConnectorError::invalid(
                "stream",
                "unknown stream `ticket-events`; RT has only `ticket-changes`"
            ))
        );
        assert_eq!(
            check_stream(
                "Zendesk",
                "ticket-events",
                &["ticket-changes", "ticket-events"]
            ),
            Ok(())
        );
    }

    #[test]
    fn finds_next_among_links() {
        let header = r#"<https://a.example/x?page=1>; rel="prev", <https://a.example/x?page=3&q=a,b>; rel="next""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://a.example/x?page=3&q=a,b")
        );
    }

    #[test]
    fn link_forms() {
        // Unquoted, upper-case, extra params and whitespace.
        assert_eq!(
            next_link("< https://a.example/n >;title=\"a, b\" ; REL=Next").as_deref(),
            Some("https://a.example/n")
        );
        // Several relation types in one rel.
        assert_eq!(
            next_link(r#"<https://a.example/n>; rel="last next""#).as_deref(),
            Some("https://a.example/n")
        );
        // `rel="nextpage"` is not `next`; a quoted comma doesn't end a link.
        assert_eq!(
            next_link(r#"<https://a.example/1>; rel="nextpage"; title="x, <y>", <https://a.example/2>; rel=next"#).as_deref(),
            Some("https://a.example/2")
        );
        assert_eq!(next_link(r#"<https://a.example/1>; rel="prev""#), None);
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("<unterminated; rel=next"), None);
    }

    #[test]
    fn finds_links_in_both_directions() {
        let header = r#"<https://a.example/x?before=b1>; rel="prev", <https://a.example/x?after=a9>; rel="next", <https://a.example/x>; rel="first""#;
        assert_eq!(
            next_link(header).as_deref(),
            Some("https://a.example/x?after=a9")
        );
        assert_eq!(
            prev_link(header).as_deref(),
            Some("https://a.example/x?before=b1")
        );
        assert_eq!(
            link(header, "FIRST").as_deref(),
            Some("https://a.example/x")
        );
        assert_eq!(link(header, "last"), None);
        assert_eq!(
            prev_link(r#"<https://a.example/p>; rel="previous""#).as_deref(),
            Some("https://a.example/p")
        );
        // `prev` is not `next`, and a page with no previous one has no prev link.
        assert_eq!(prev_link(r#"<https://a.example/n>; rel="next""#), None);
        assert_eq!(next_link(r#"<https://a.example/p>; rel="prev""#), None);
    }

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct State {
        since: u64,
        id: String,
    }

    #[test]
    fn cursor_round_trip() {
        let state = State {
            since: 17,
            id: "a/b+c?".into(),
        };
        let cursor = encode_cursor(&state);
        assert!(cursor
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(decode_cursor::<State>(&cursor).unwrap(), state);
        // Padding added by someone else's encoder is tolerated.
        assert_eq!(
            decode_cursor::<u32>(&format!("{}==", encode_cursor(&7u32))).unwrap(),
            7
        );
    }

    #[test]
    fn bad_cursors_are_invalid_input() {
        for bad in ["***", &encode_cursor(&"a string")] {
            match decode_cursor::<State>(bad) {
                Err(ConnectorError::InvalidInput(field)) => assert_eq!(field.field, "cursor"),
                other => panic!("unexpected {other:?}"),
            }
        }
    }
}
