//! Text helpers for subjects and network length limits.

/// The first non-blank line of `text`, trimmed, shortened to at most `max_chars` characters.
///
/// Made for ticket subjects built from a customer's first message. A shortened line ends in
/// `…` (counted in `max_chars`). Blank text gives an empty string.
///
/// ```
/// # use switchboard_plugin_sdk::text::first_line;
/// assert_eq!(first_line("\n  Hello there  \nsecond line", 50), "Hello there");
/// assert_eq!(first_line("My order never arrived", 10), "My order …");
/// ```
pub fn first_line(text: &str, max_chars: usize) -> String {
    let line = text
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty())
        .unwrap_or("");
    if line.chars().count() <= max_chars {
        return line.to_owned();
    }
    if max_chars == 0 {
        return String::new();
    }
    let mut short: String = line.chars().take(max_chars - 1).collect();
    short.push('…');
    short
}

/// The length of `s` in UTF-16 code units, as Telegram and JavaScript-based APIs count it.
///
/// ```
/// # use switchboard_plugin_sdk::text::utf16_len;
/// assert_eq!(utf16_len("héllo"), 5);
/// assert_eq!(utf16_len("👍"), 2); // outside the BMP: a surrogate pair
/// ```
pub fn utf16_len(s: &str) -> usize {
    s.chars().map(char::len_utf16).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_cases() {
        assert_eq!(first_line("one\ntwo", 10), "one");
        assert_eq!(first_line("  \r\n\t x \r\ny", 10), "x");
        assert_eq!(first_line("", 10), "");
        assert_eq!(first_line(" \n ", 10), "");
        assert_eq!(first_line("abcdef", 6), "abcdef");
        assert_eq!(first_line("abcdefg", 6), "abcde…");
        assert_eq!(first_line("ééééé", 3), "éé…");
        assert_eq!(first_line("abc", 1), "…");
        assert_eq!(first_line("abc", 0), "");
    }

    #[test]
    fn utf16_len_cases() {
        assert_eq!(utf16_len(""), 0);
        assert_eq!(utf16_len("abc"), 3);
        assert_eq!(utf16_len("日本"), 2);
        assert_eq!(utf16_len("a😀b"), 4);
    }
}
