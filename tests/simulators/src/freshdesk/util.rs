//! Small helpers: the date inputs Freshdesk accepts and its HTML bodies. Time, date formats and
//! URLs come from the kit.

use crate::kit::dates::days_from_civil;
pub(crate) use crate::kit::dates::{http_date, iso8601};
use crate::kit::html;
pub(crate) use crate::kit::url::with_query;

/// Parses the date inputs Freshdesk accepts: `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` with an
/// optional `Z`, `±hh`, `±hhmm` or `±hh:mm` zone (UTC when absent). Returns Unix seconds.
pub(crate) fn parse_datetime(value: &str) -> Option<i64> {
    let value = value.trim();
    let num = |s: &str| -> Option<i64> {
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let date = value.get(..10)?;
    let (year, month, day) = (
        num(date.get(..4)?)?,
        num(date.get(5..7)?)?,
        num(date.get(8..10)?)?,
    );
    if date.as_bytes()[4] != b'-' || date.as_bytes()[7] != b'-' {
        return None;
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let mut secs = days_from_civil(year, month, day) * 86_400;
    let rest = &value[10..];
    if rest.is_empty() {
        return Some(secs);
    }
    let rest = rest.strip_prefix(['T', 't', ' '])?;
    let (hour, minute) = (num(rest.get(..2)?)?, num(rest.get(3..5)?)?);
    if rest.as_bytes().get(2) != Some(&b':') || hour > 23 || minute > 59 {
        return None;
    }
    secs += hour * 3600 + minute * 60;
    let mut zone = &rest[5..];
    if let Some(after) = zone.strip_prefix(':') {
        let second = num(after.get(..2)?)?;
        if second > 60 {
            return None;
        }
        secs += second;
        zone = &after[2..];
        // Fractions of a second are dropped.
        if let Some(fraction) = zone.strip_prefix('.') {
            let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
            zone = &fraction[digits..];
        }
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        _ => {
            let sign = match zone.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let digits = zone[1..].replace(':', "");
            let (h, m) = match digits.len() {
                2 => (num(&digits)?, 0),
                4 => (num(&digits[..2])?, num(&digits[2..])?),
                _ => return None,
            };
            sign * (h * 3600 + m * 60)
        }
    };
    Some(secs - offset)
}

/// The HTML Freshdesk stores for a body: HTML as given, plain text wrapped in a `<div>` (as
/// the API's own examples show), with line breaks kept.
pub(crate) fn html_body(input: &str) -> String {
    let trimmed = input.trim_start();
    if trimmed.starts_with('<') {
        return input.to_owned();
    }
    format!(
        "<div>{}</div>",
        input.replace("\r\n", "\n").replace('\n', "<br>")
    )
}

/// The plain text of an HTML body, as in `body_text` and `description_text`.
pub(crate) fn text_of(html: &str) -> String {
    let breaks = [
        ("<br>", "\n"),
        ("<br/>", "\n"),
        ("<br />", "\n"),
        ("</p><p>", "\n\n"),
        ("</div><div>", "\n"),
    ];
    let entities = [("&#39;", "'"), ("&nbsp;", " ")];
    html::text_of(html, &breaks, &entities).trim().to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_and_parses_dates() {
        let t = 1_709_210_096;
        for input in [
            "2024-02-29T12:34:56Z",
            "2024-02-29T12:34:56",
            "2024-02-29T18:04:56+05:30",
            "2024-02-29T18:04:56+0530",
            "2024-02-29T13:34:56+01",
            "2024-02-29T12:34:56.789Z",
        ] {
            assert_eq!(parse_datetime(input), Some(t), "{input}");
        }
        assert_eq!(parse_datetime("2024-02-29T12:34Z"), Some(t - 56));
        assert_eq!(parse_datetime("2024-02-29"), Some(t - 45_296));
        for bad in [
            "",
            "2024-13-01",
            "yesterday",
            "2024-02-29T25:00",
            "2024-02-29X",
        ] {
            assert_eq!(parse_datetime(bad), None, "{bad}");
        }
    }

    #[test]
    fn bodies_are_html_with_a_text_twin() {
        assert_eq!(html_body("a\nb"), "<div>a<br>b</div>");
        assert_eq!(html_body("<p>x</p>"), "<p>x</p>");
        assert_eq!(text_of("<div>a &amp; b<br>c</div>"), "a & b\nc");
    }
}
