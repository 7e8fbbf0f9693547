//! Text helpers: subjects, network length limits, HTML to and from plain text, and the loose
//! comparison that recognizes text a service has stored after reflowing it.
//!
//! The HTML helpers are written here rather than taken from a crate: the HTML-to-text crates
//! bring a full HTML5 parser (html5ever), hundreds of KB in every plugin, for what helpdesk
//! editors produce, which this small scanner reads well enough.

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

/// The plain text of an HTML body, as a person would read it: tags dropped, `<br>`, `<hr>` and
/// the ends of blocks (`</p>`, `</div>`, `</li>`, ...) as line breaks, list items marked with
/// `- `, entities decoded, `<script>` and `<style>` bodies removed, and runs of spaces and
/// blank lines collapsed (source line breaks are spaces, as in a browser).
///
/// Meant for what helpdesk editors produce; a social network shows plain text anyway.
///
/// ```
/// # use switchboard_plugin_sdk::text::html_to_text;
/// assert_eq!(html_to_text("<p>Hi <b>there</b>,<br>it ships&nbsp;today</p><p>Bye</p>"),
///            "Hi there,\nit ships today\nBye");
/// ```
pub fn html_to_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    // HTML's own line breaks are spaces; only tags break lines.
    let push_text = |out: &mut String, text: &str| {
        out.extend(decode_entities(text).chars().map(|c| match c {
            '\n' | '\r' | '\t' => ' ',
            c => c,
        }))
    };
    while let Some(start) = rest.find('<') {
        push_text(&mut out, &rest[..start]);
        let Some(end) = rest[start..].find('>') else {
            // A lone `<`: text, not a tag.
            push_text(&mut out, &rest[start..]);
            rest = "";
            break;
        };
        let tag = &rest[start + 1..start + end];
        rest = &rest[start + end + 1..];
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        let closing = tag.starts_with('/');
        match name.as_str() {
            "script" | "style" if !closing => {
                let close = format!("</{name}");
                match rest.to_ascii_lowercase().find(&close) {
                    Some(at) => {
                        rest = &rest[at..];
                    }
                    None => rest = "",
                }
            }
            "br" => out.push('\n'),
            "p" | "div" | "li" | "tr" | "h1" | "h2" | "h3" | "h4" | "h5" | "h6" | "blockquote"
            | "pre" | "table" | "ul" | "ol"
                if closing =>
            {
                out.push('\n')
            }
            "hr" => out.push('\n'),
            "li" => out.push_str("- "),
            _ => {}
        }
    }
    push_text(&mut out, rest);
    // Collapse the spaces and blank runs the markup left.
    let lines: Vec<String> = out
        .lines()
        .map(|line| line.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    let mut text = String::new();
    let mut blank = 0;
    for line in lines {
        if line.is_empty() {
            blank += 1;
            continue;
        }
        if !text.is_empty() {
            text.push_str(if blank > 0 { "\n\n" } else { "\n" });
        }
        blank = 0;
        text.push_str(&line);
    }
    text
}

fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('&') {
        out.push_str(&rest[..start]);
        rest = &rest[start..];
        let end = rest.find(';').filter(|&end| end <= 10);
        let decoded = end.and_then(|end| {
            let entity = &rest[1..end];
            let c = match entity {
                "amp" => '&',
                "lt" => '<',
                "gt" => '>',
                "quot" => '"',
                "apos" => '\'',
                "nbsp" => ' ',
                _ => {
                    let code = if let Some(hex) =
                        entity.strip_prefix("#x").or(entity.strip_prefix("#X"))
                    {
                        u32::from_str_radix(hex, 16).ok()
                    } else {
                        entity.strip_prefix('#').and_then(|d| d.parse().ok())
                    };
                    char::from_u32(code?)?
                }
            };
            Some((c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// `body` with the attachments listed after it as links, one per line under `Attachments:`,
/// for a service that files text while the hub passes attachments as links it never
/// downloads (the agent follows the links). Without attachments, `body` as it is.
///
/// ```
/// # use switchboard_plugin_sdk::{text::with_attachment_links, Attachment};
/// let photo = Attachment {
///     url: "tg-file:1".into(), content_type: None, name: Some("photo.jpg".into()), size_bytes: None,
/// };
/// assert_eq!(with_attachment_links("Look\n", &[photo]), "Look\n\nAttachments:\n- photo.jpg: tg-file:1");
/// ```
pub fn with_attachment_links(body: &str, attachments: &[crate::Attachment]) -> String {
    if attachments.is_empty() {
        return body.to_string();
    }
    let mut text = body.trim_end().to_string();
    text.push_str("\n\nAttachments:");
    for attachment in attachments {
        let name = attachment.name.as_deref().unwrap_or("file");
        text.push_str(&format!("\n- {name}: {}", attachment.url));
    }
    text
}

/// `text` as HTML that shows it as written: `&`, `<`, `>` and `"` escaped, line breaks
/// (`\n` or `\r\n`) as `<br>`, trailing white space dropped. Nothing in `text` can add markup.
///
/// ```
/// # use switchboard_plugin_sdk::text::text_to_html;
/// assert_eq!(text_to_html("a < b\r\n<script>\n"), "a &lt; b<br>&lt;script&gt;");
/// ```
pub fn text_to_html(text: &str) -> String {
    escape_html(text.trim_end())
        .replace("\r\n", "\n")
        .replace('\n', "<br>")
}

/// `text` with the characters that mean something in HTML escaped (`&`, `<`, `>`, `"`), safe
/// inside an element or a double-quoted attribute (the only kind these helpers write).
/// Apostrophes stay as they are: helpdesks show stored HTML to agents, and `&#39;` in every
/// "it's" is noise there.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// Whether `stored` (what a service keeps and lists) is the text the plugin `sent`, compared
/// loosely: the same words in the same order, whatever white space is between them. Services
/// trim, reflow and re-render text they store (Zendesk's `plain_body`, Freshdesk's `body_text`,
/// RT's line endings), so an exact comparison would miss the very record it looks for.
///
/// Made for the look-back after an unconfirmed attempt, where the record's author, kind and
/// time are checked too. Compare plain text: flatten stored HTML with [`html_to_text`] first.
///
/// ```
/// # use switchboard_plugin_sdk::text::same_text;
/// assert!(same_text("Any news?\nOrder 12", "  Any  news?\r\n Order\u{a0}12\n"));
/// assert!(!same_text("Any news?", "Any news?!"));
/// ```
pub fn same_text(sent: &str, stored: &str) -> bool {
    sent.split_whitespace().eq(stored.split_whitespace())
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

    #[test]
    fn html_flattens_to_readable_text() {
        let html = "<p>Hello <b>there</b>,<br>it ships&nbsp;today &amp; arrives\n soon.</p>\
                    <p>Regards &#8212; Hana &#x263A;</p><style>p{color:red}</style>\
                    <SCRIPT>alert(1)</SCRIPT><ul><li>one</li><li>two</li></ul><hr>end";
        assert_eq!(
            html_to_text(html),
            "Hello there,\nit ships today & arrives soon.\nRegards — Hana ☺\n- one\n- two\n\nend"
        );
        assert_eq!(html_to_text("a < b &bogus; c &lt;"), "a < b &bogus; c <");
        assert_eq!(
            html_to_text("<div>注文<br/>届きます</div>"),
            "注文\n届きます"
        );
        assert_eq!(
            html_to_text("<p>one</p>\n\n\n<p></p><p>two</p>"),
            "one\n\ntwo"
        );
        assert_eq!(html_to_text("<style>never closed"), "");
        assert_eq!(html_to_text("a <unclosed"), "a <unclosed");
        assert_eq!(html_to_text(""), "");
    }

    #[test]
    fn text_becomes_inert_html() {
        assert_eq!(
            text_to_html("Tom & \"Jerry\" <b>'s</b>\nline 2\r\nline 3\n\n"),
            "Tom &amp; &quot;Jerry&quot; &lt;b&gt;'s&lt;/b&gt;<br>line 2<br>line 3"
        );
        assert_eq!(
            escape_html("<a href=\"x\">"),
            "&lt;a href=&quot;x&quot;&gt;"
        );
        // Round trip: what text_to_html writes, html_to_text reads back.
        let text = "If 1 < 2 & 3 > 2,\nthen \"so\" it's";
        assert_eq!(html_to_text(&text_to_html(text)), text);
    }

    #[test]
    fn attachments_become_links_after_the_text() {
        let file = |name: Option<&str>| crate::Attachment {
            url: format!("https://x.example/{}", name.unwrap_or("blob")),
            content_type: None,
            name: name.map(str::to_string),
            size_bytes: None,
        };
        assert_eq!(with_attachment_links("Hi  \n", &[]), "Hi  \n");
        assert_eq!(
            with_attachment_links("Hi\n", &[file(Some("a.pdf")), file(None)]),
            "Hi\n\nAttachments:\n- a.pdf: https://x.example/a.pdf\n- file: https://x.example/blob"
        );
    }

    #[test]
    fn same_text_ignores_only_white_space() {
        assert!(same_text("a b", "a b"));
        assert!(same_text(" a\tb\r\n", "a\n\nb"));
        assert!(same_text("", " \n"));
        assert!(!same_text("a b", "ab"));
        assert!(!same_text("a b", "a b c"));
        assert!(!same_text("A b", "a b"));
    }
}
