//! Splitting a reply that is longer than a network's text limit into several messages.

/// How a network counts the length of a text (the manifest's `unit`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthUnit {
    Chars,
    Utf16,
    Utf8Bytes,
    /// Approximated per character: ASCII counts 1, anything else 2 (X's weighting of CJK
    /// and emoji); URLs are not shortened, which only errs on the short side.
    Weighted,
}

impl LengthUnit {
    /// From the manifest's unit name; graphemes are counted as chars (never fewer).
    pub fn parse(unit: &str) -> Self {
        match unit {
            "utf16units" | "utf16-units" | "utf16" => Self::Utf16,
            "utf8bytes" | "utf8-bytes" => Self::Utf8Bytes,
            "weighted" => Self::Weighted,
            _ => Self::Chars,
        }
    }

    fn of(self, c: char) -> usize {
        match self {
            Self::Chars => 1,
            Self::Utf16 => c.len_utf16(),
            Self::Utf8Bytes => c.len_utf8(),
            Self::Weighted => {
                if c.is_ascii() {
                    1
                } else {
                    2
                }
            }
        }
    }

    /// The length of `text` in this unit.
    pub fn len(self, text: &str) -> usize {
        text.chars().map(|c| self.of(c)).sum()
    }
}

/// Splits `text` into parts of at most `max` units, preferring to break after a newline,
/// then after whitespace, and cutting inside a word only when a word alone is too long.
/// Whitespace at a break is dropped. A text within the limit comes back whole.
pub fn split(text: &str, max: usize, unit: LengthUnit) -> Vec<String> {
    let max = max.max(1);
    let mut parts = Vec::new();
    let mut rest = text.trim();
    while unit.len(rest) > max {
        // The longest prefix within the limit, as a byte offset.
        let mut used = 0;
        let mut end = 0;
        for (i, c) in rest.char_indices() {
            let n = unit.of(c);
            if used + n > max {
                break;
            }
            used += n;
            end = i + c.len_utf8();
        }
        let window = &rest[..end];
        // Prefer a newline unless it comes early in the window: parts stay reasonably full.
        let early = end / 3;
        let after = &rest[end..];
        let newline = window.rfind('\n').filter(|&i| i >= early);
        // A window that ends right before a line break or a space ends at a clean break.
        let cut = if after.starts_with('\n') {
            end
        } else if let Some(newline) = newline {
            newline
        } else if after.starts_with(char::is_whitespace) {
            end
        } else {
            window
                .rfind(char::is_whitespace)
                .filter(|&i| i > 0)
                .unwrap_or(end)
        };
        let cut = if cut == 0 {
            end.max(rest.chars().next().map_or(1, char::len_utf8))
        } else {
            cut
        };
        let part = rest[..cut].trim_end();
        if !part.is_empty() {
            parts.push(part.to_string());
        }
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_string());
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_whole() {
        assert_eq!(split("hello", 10, LengthUnit::Chars), vec!["hello"]);
        assert_eq!(split("", 10, LengthUnit::Chars), vec![""]);
    }

    #[test]
    fn breaks_on_whitespace_then_newlines() {
        assert_eq!(
            split("aaa bbb ccc", 7, LengthUnit::Chars),
            vec!["aaa bbb", "ccc"]
        );
        assert_eq!(
            split("aaaa\nbb cc dd", 10, LengthUnit::Chars),
            vec!["aaaa", "bb cc dd"]
        );
        // A newline early in the window is not worth a near-empty part.
        assert_eq!(
            split("a\nbbb ccc ddd", 9, LengthUnit::Chars),
            vec!["a\nbbb ccc", "ddd"]
        );
    }

    #[test]
    fn long_words_are_cut_and_every_part_fits() {
        assert_eq!(
            split("abcdefghij", 4, LengthUnit::Chars),
            vec!["abcd", "efgh", "ij"]
        );
        let text = "word ".repeat(2000);
        for unit in [
            LengthUnit::Chars,
            LengthUnit::Utf16,
            LengthUnit::Utf8Bytes,
            LengthUnit::Weighted,
        ] {
            let parts = split(&text, 4096, unit);
            assert!(parts.len() >= 3);
            assert!(parts.iter().all(|p| unit.len(p) <= 4096 && !p.is_empty()));
            assert_eq!(parts.join(" "), text.trim());
        }
    }

    #[test]
    fn counts_utf16_units() {
        // Each emoji is 2 UTF-16 units: 3 fit in 6 units.
        let parts = split("😀😀😀😀", 6, LengthUnit::Utf16);
        assert_eq!(parts, vec!["😀😀😀", "😀"]);
        assert_eq!(LengthUnit::parse("utf16units"), LengthUnit::Utf16);
    }
}
