//! Splitting a reply that is longer than a network's text limit into several messages.
//!
//! The work is linear in the text: the remaining length is kept as a running count, and each
//! part scans only its own window. The number of parts is capped
//! ([`crate::runtime::bounds::MAX_REPLY_PARTS`] in the hub): a longer reply is refused, never cut.

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

/// The unit names a manifest's text limit is stored with, as the contract spells them.
pub mod unit_names {
    pub const CHARS: &str = "chars";
    pub const UTF16_UNITS: &str = "utf16-units";
    pub const GRAPHEMES: &str = "graphemes";
    pub const UTF8_BYTES: &str = "utf8-bytes";
    pub const WEIGHTED: &str = "weighted";
}

impl LengthUnit {
    /// From the stored unit name (see [`unit_names`]); `None` for a name this host does not
    /// know. Graphemes are counted as chars: never fewer, so parts still fit.
    pub fn parse(unit: &str) -> Option<Self> {
        use unit_names::*;
        Some(match unit {
            CHARS | GRAPHEMES => Self::Chars,
            UTF16_UNITS => Self::Utf16,
            UTF8_BYTES => Self::Utf8Bytes,
            WEIGHTED => Self::Weighted,
            _ => return None,
        })
    }

    /// The unit to count in when the stored name is unknown: UTF-8 bytes are never fewer than
    /// any other unit's count, so every part still fits.
    pub const FALLBACK: Self = Self::Utf8Bytes;

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

/// Why a reply was not split.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error(
        "the reply is {length} units long and would need more than {max_parts} parts of at most \
         {max} units; it is refused rather than cut"
    )]
    TooManyParts {
        length: usize,
        max: usize,
        max_parts: usize,
    },
}

/// Splits `text` into at most `max_parts` parts of at most `max` units, preferring to break
/// after a newline, then after whitespace, and cutting inside a word only when a word alone is
/// too long. Whitespace at a break is dropped. A text within the limit comes back whole.
pub fn split(
    text: &str,
    max: usize,
    unit: LengthUnit,
    max_parts: usize,
) -> Result<Vec<String>, SplitError> {
    split_counted(text, max, unit, max_parts, &mut 0)
}

/// [`split`], adding to `scanned` every character it looks at (for the test of linearity).
fn split_counted(
    text: &str,
    max: usize,
    unit: LengthUnit,
    max_parts: usize,
    scanned: &mut usize,
) -> Result<Vec<String>, SplitError> {
    let max = max.max(1);
    let measure = |s: &str, scanned: &mut usize| {
        *scanned += s.len();
        unit.len(s)
    };
    let mut parts = Vec::new();
    let mut rest = text.trim();
    let length = measure(rest, scanned);
    let too_many = || SplitError::TooManyParts {
        length,
        max,
        max_parts,
    };
    // Fewer parts than this are impossible: refuse without scanning further.
    if length.div_ceil(max) > max_parts {
        return Err(too_many());
    }
    let mut remaining = length;
    while remaining > max {
        // This part and at least one more.
        if parts.len() + 2 > max_parts {
            return Err(too_many());
        }
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
        *scanned += 2 * end;
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
        let next = rest[cut..].trim_start();
        remaining -= measure(&rest[..rest.len() - next.len()], scanned);
        rest = next;
    }
    if !rest.is_empty() || parts.is_empty() {
        parts.push(rest.to_string());
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_ok(text: &str, max: usize, unit: LengthUnit) -> Vec<String> {
        split(text, max, unit, usize::MAX).expect("within the parts cap")
    }

    #[test]
    fn short_text_is_whole() {
        assert_eq!(split_ok("hello", 10, LengthUnit::Chars), vec!["hello"]);
        assert_eq!(split_ok("", 10, LengthUnit::Chars), vec![""]);
    }

    #[test]
    fn breaks_on_whitespace_then_newlines() {
        assert_eq!(
            split_ok("aaa bbb ccc", 7, LengthUnit::Chars),
            vec!["aaa bbb", "ccc"]
        );
        assert_eq!(
            split_ok("aaaa\nbb cc dd", 10, LengthUnit::Chars),
            vec!["aaaa", "bb cc dd"]
        );
        // A newline early in the window is not worth a near-empty part.
        assert_eq!(
            split_ok("a\nbbb ccc ddd", 9, LengthUnit::Chars),
            vec!["a\nbbb ccc", "ddd"]
        );
    }

    #[test]
    fn long_words_are_cut_and_every_part_fits() {
        assert_eq!(
            split_ok("abcdefghij", 4, LengthUnit::Chars),
            vec!["abcd", "efgh", "ij"]
        );
        let text = "word ".repeat(2000);
        for unit in [
            LengthUnit::Chars,
            LengthUnit::Utf16,
            LengthUnit::Utf8Bytes,
            LengthUnit::Weighted,
        ] {
            let parts = split_ok(&text, 4096, unit);
            assert!(parts.len() >= 3);
            assert!(parts.iter().all(|p| unit.len(p) <= 4096 && !p.is_empty()));
            assert_eq!(parts.join(" "), text.trim());
        }
    }

    #[test]
    fn counts_utf16_units() {
        // Each emoji is 2 UTF-16 units: 3 fit in 6 units.
        let parts = split_ok("😀😀😀😀", 6, LengthUnit::Utf16);
        assert_eq!(parts, vec!["😀😀😀", "😀"]);
        assert_eq!(LengthUnit::parse("utf16-units"), Some(LengthUnit::Utf16));
    }

    #[test]
    fn unit_names_are_the_contract_names() {
        for (name, unit) in [
            ("chars", LengthUnit::Chars),
            ("graphemes", LengthUnit::Chars),
            ("utf16-units", LengthUnit::Utf16),
            ("utf8-bytes", LengthUnit::Utf8Bytes),
            ("weighted", LengthUnit::Weighted),
        ] {
            assert_eq!(LengthUnit::parse(name), Some(unit), "{name}");
        }
        // The old Debug-format spelling was migrated away (0005_length_units.sql).
        assert_eq!(LengthUnit::parse("lengthunit::utf16units"), None);
    }

    #[test]
    fn work_is_linear_in_the_text() {
        // 1 MB in parts of 64 chars: the old splitter re-measured the whole rest for every
        // part (16k parts x 1 MB scanned); this one looks at each character a few times.
        let text = "word ".repeat(200_000);
        let mut scanned = 0;
        let parts =
            split_counted(&text, 64, LengthUnit::Chars, usize::MAX, &mut scanned).expect("no cap");
        assert!(parts.len() > 15_000);
        assert!(parts.iter().all(|p| p.chars().count() <= 64));
        assert!(
            scanned <= 6 * text.len(),
            "scanned {scanned} bytes for a text of {}",
            text.len()
        );
    }

    #[test]
    fn too_many_parts_are_refused_not_cut() {
        let text = "word ".repeat(100);
        // 499 chars in parts of 64: 8 parts.
        assert_eq!(
            split(&text, 64, LengthUnit::Chars, 8).map(|p| p.len()),
            Ok(8)
        );
        let refused = split(&text, 64, LengthUnit::Chars, 7).expect_err("over the cap");
        assert!(
            refused.to_string().contains("more than 7 parts"),
            "{refused}"
        );
        // Refused without scanning the text part by part when the length alone rules it out.
        let mut scanned = 0;
        let huge = "x".repeat(1 << 20);
        assert!(split_counted(&huge, 64, LengthUnit::Chars, 32, &mut scanned).is_err());
        assert_eq!(scanned, huge.len());
    }
}
