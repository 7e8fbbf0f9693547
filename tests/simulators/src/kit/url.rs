//! Building the URLs simulators hand out (`next_page`, `Link`, `nextRecordsUrl`).

/// Percent-encodes a query component (RFC 3986 unreserved characters pass through).
pub fn encode_component(s: &str) -> String {
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

/// `path?k=v&...` with encoded keys and values; `path` alone when there are none.
pub fn with_query<K: AsRef<str>, V: AsRef<str>>(path: &str, params: &[(K, V)]) -> String {
    if params.is_empty() {
        return path.to_owned();
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                encode_component(k.as_ref()),
                encode_component(v.as_ref())
            )
        })
        .collect();
    format!("{path}?{}", query.join("&"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_components_and_queries() {
        assert_eq!(encode_component("page[size]"), "page%5Bsize%5D");
        assert_eq!(encode_component("a b/é"), "a%20b%2F%C3%A9");
        assert_eq!(
            with_query("/x", &[("a", "1 2"), ("b", "&")]),
            "/x?a=1%202&b=%26"
        );
        assert_eq!(with_query::<&str, &str>("/x", &[]), "/x");
    }
}
