//! Telegram's text formatting: turning `parse_mode` markup into plain text plus entities.
//!
//! The Bot API limits a message to 4096 characters *after* the markup is parsed, counts
//! lengths and entity offsets in UTF-16 code units, and refuses markup it can't parse with
//! `400 Bad Request: can't parse entities: …`. Connectors get this wrong all the time (an
//! unescaped `.` in MarkdownV2 is the classic), so the simulator parses the three modes the
//! same way and with the same kind of errors. Rendering details nobody relies on (custom
//! emoji, expandable quotes, `pre` languages nested in HTML) are accepted but not modelled.

use serde::Serialize;

/// The `parse_mode` values the Bot API accepts (case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseMode {
    Html,
    MarkdownV2,
    /// The legacy mode: no nesting, fewer entity kinds, only `_ * ` [` escapable.
    Markdown,
}

impl ParseMode {
    /// Parses a `parse_mode` parameter; `None` for anything Telegram would reject.
    pub fn from_param(value: &str) -> Option<Self> {
        match value.to_ascii_lowercase().as_str() {
            "html" => Some(Self::Html),
            "markdownv2" => Some(Self::MarkdownV2),
            "markdown" => Some(Self::Markdown),
            _ => None,
        }
    }
}

/// One formatting entity, as found in `Message.entities`. Offsets are UTF-16 code units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entity {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub offset: usize,
    pub length: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// Parsed message text: what the recipient sees, and where the formatting applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Formatted {
    pub text: String,
    pub entities: Vec<Entity>,
}

/// The number of UTF-16 code units in `text`, the unit of every Telegram length limit.
pub fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// Parses `text` in `mode`. The error is the part of the description after
/// `can't parse entities: `.
pub fn parse(text: &str, mode: ParseMode) -> Result<Formatted, String> {
    match mode {
        ParseMode::Html => parse_html(text),
        ParseMode::MarkdownV2 => parse_markdown_v2(text),
        ParseMode::Markdown => parse_markdown_legacy(text),
    }
}

/// Entity kinds, with the name Telegram uses in error messages and the API type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bold,
    Italic,
    Underline,
    Strikethrough,
    Spoiler,
    Code,
    Pre,
    TextUrl,
    BlockQuote,
    /// A tag that formats nothing we model (e.g. `tg-emoji`, `a` without `href`).
    Plain,
}

impl Kind {
    fn error_name(self) -> &'static str {
        match self {
            Kind::Bold => "Bold",
            Kind::Italic => "Italic",
            Kind::Underline => "Underline",
            Kind::Strikethrough => "Strikethrough",
            Kind::Spoiler => "Spoiler",
            Kind::Code => "Code",
            Kind::Pre => "Pre",
            Kind::TextUrl => "TextUrl",
            Kind::BlockQuote => "BlockQuote",
            Kind::Plain => "Plain",
        }
    }

    fn api_name(self) -> Option<&'static str> {
        Some(match self {
            Kind::Bold => "bold",
            Kind::Italic => "italic",
            Kind::Underline => "underline",
            Kind::Strikethrough => "strikethrough",
            Kind::Spoiler => "spoiler",
            Kind::Code => "code",
            Kind::Pre => "pre",
            Kind::TextUrl => "text_link",
            Kind::BlockQuote => "blockquote",
            Kind::Plain => return None,
        })
    }
}

/// An entity that has started but not ended yet.
#[derive(Debug)]
struct Open {
    kind: Kind,
    /// Where it starts in the output, in UTF-16 units.
    start: usize,
    /// Where its markup starts in the input, for error messages.
    byte_offset: usize,
    /// The HTML tag name, to match the end tag.
    tag: String,
    url: Option<String>,
    language: Option<String>,
}

/// Accumulates plain text and entities while a parser walks the markup.
#[derive(Debug, Default)]
struct Builder {
    text: String,
    utf16: usize,
    entities: Vec<Entity>,
    open: Vec<Open>,
}

impl Builder {
    fn push(&mut self, c: char) {
        self.text.push(c);
        self.utf16 += c.len_utf16();
    }

    fn push_str(&mut self, s: &str) {
        self.text.push_str(s);
        self.utf16 += utf16_len(s);
    }

    fn open(&mut self, kind: Kind, byte_offset: usize) {
        self.open.push(Open {
            kind,
            start: self.utf16,
            byte_offset,
            tag: String::new(),
            url: None,
            language: None,
        });
    }

    fn is_open(&self, kind: Kind) -> bool {
        self.open.iter().any(|o| o.kind == kind)
    }

    /// Ends the innermost open entity of `kind`.
    fn close(&mut self, kind: Kind) {
        if let Some(index) = self.open.iter().rposition(|o| o.kind == kind) {
            let open = self.open.remove(index);
            self.finish(open);
        }
    }

    /// Opens `kind` if it isn't open, closes it if it is (Markdown's paired markers).
    fn toggle(&mut self, kind: Kind, byte_offset: usize) {
        if self.is_open(kind) {
            self.close(kind);
        } else {
            self.open(kind, byte_offset);
        }
    }

    fn finish(&mut self, open: Open) {
        let length = self.utf16 - open.start;
        // Telegram drops entities that cover no text.
        if let (Some(kind), true) = (open.kind.api_name(), length > 0) {
            self.entities.push(Entity {
                kind,
                offset: open.start,
                length,
                url: open.url,
                language: open.language,
            });
        }
    }

    fn build(mut self) -> Formatted {
        self.entities
            .sort_by(|a, b| a.offset.cmp(&b.offset).then(b.length.cmp(&a.length)));
        Formatted {
            text: self.text,
            entities: self.entities,
        }
    }
}

fn reserved(c: char) -> String {
    format!("Character '{c}' is reserved and must be escaped with the preceding '\\'")
}

fn unterminated(kind: Kind, byte_offset: usize) -> String {
    format!(
        "Can't find end of {} entity at byte offset {byte_offset}",
        kind.error_name()
    )
}

/// MarkdownV2: nested `*bold*`, `_italic_`, `__underline__`, `~strike~`, `||spoiler||`,
/// `` `code` ``, ```` ```pre``` ````, `[text](url)` and `>` quotes; every other character of
/// ``_*[]()~`>#+-=|{}.!`` must be escaped with `\`.
fn parse_markdown_v2(input: &str) -> Result<Formatted, String> {
    let mut b = Builder::default();
    let mut chars = input.char_indices().peekable();
    let mut line_start = true;
    while let Some((at, c)) = chars.next() {
        let was_line_start = line_start;
        line_start = c == '\n';
        match c {
            '\\' => match chars.next() {
                Some((_, e)) if (1..=126).contains(&(e as u32)) => b.push(e),
                Some((_, e)) => {
                    b.push('\\');
                    b.push(e);
                }
                None => return Err(reserved('\\')),
            },
            '*' => b.toggle(Kind::Bold, at),
            '~' => b.toggle(Kind::Strikethrough, at),
            '_' if chars.peek().is_some_and(|&(_, n)| n == '_') => {
                chars.next();
                b.toggle(Kind::Underline, at);
            }
            '_' => b.toggle(Kind::Italic, at),
            '|' if chars.peek().is_some_and(|&(_, n)| n == '|') => {
                chars.next();
                b.toggle(Kind::Spoiler, at);
            }
            '`' => {
                let rest = &input[at..];
                if rest.starts_with("```") {
                    chars.next();
                    chars.next();
                    let body_start = at + 3;
                    let Some(len) = find_unescaped(&input[body_start..], "```") else {
                        return Err(unterminated(Kind::Pre, at));
                    };
                    let body = &input[body_start..body_start + len];
                    // The first line names the language when it is a single word.
                    let (language, code) = match body.split_once('\n') {
                        Some((first, code)) if !first.is_empty() && !first.contains(' ') => {
                            (Some(first.to_string()), code)
                        }
                        _ => (None, body),
                    };
                    b.open(Kind::Pre, at);
                    if let Some(open) = b.open.last_mut() {
                        open.language = language;
                    }
                    b.push_str(&unescape_code(code));
                    b.close(Kind::Pre);
                    advance_to(&mut chars, body_start + len + 3);
                } else {
                    let body_start = at + 1;
                    let Some(len) = find_unescaped(&input[body_start..], "`") else {
                        return Err(unterminated(Kind::Code, at));
                    };
                    b.open(Kind::Code, at);
                    b.push_str(&unescape_code(&input[body_start..body_start + len]));
                    b.close(Kind::Code);
                    advance_to(&mut chars, body_start + len + 1);
                }
            }
            '[' => b.open(Kind::TextUrl, at),
            ']' if b.is_open(Kind::TextUrl) => {
                if chars.peek().is_none_or(|&(_, n)| n != '(') {
                    return Err(format!("Can't find end of a URL at byte offset {at}"));
                }
                let url_start = at + 2;
                let Some(len) = find_unescaped(&input[url_start..], ")") else {
                    return Err(format!(
                        "Can't find end of a URL at byte offset {url_start}"
                    ));
                };
                let url = unescape_code(&input[url_start..url_start + len]);
                if let Some(open) = b.open.iter_mut().rev().find(|o| o.kind == Kind::TextUrl) {
                    open.url = Some(url);
                }
                b.close(Kind::TextUrl);
                advance_to(&mut chars, url_start + len + 1);
            }
            '>' if was_line_start => {
                if !b.is_open(Kind::BlockQuote) {
                    b.open(Kind::BlockQuote, at);
                }
            }
            '\n' => {
                // A quote runs over consecutive lines that start with `>`.
                if b.is_open(Kind::BlockQuote) && chars.peek().is_none_or(|&(_, n)| n != '>') {
                    b.close(Kind::BlockQuote);
                }
                b.push('\n');
            }
            ']' | '(' | ')' | '>' | '#' | '+' | '-' | '=' | '|' | '{' | '}' | '.' | '!' => {
                return Err(reserved(c))
            }
            _ => b.push(c),
        }
    }
    b.close(Kind::BlockQuote);
    if let Some(open) = b.open.first() {
        return Err(unterminated(open.kind, open.byte_offset));
    }
    Ok(b.build())
}

/// The byte length of `s` up to the first `end` not preceded by a `\` escape.
fn find_unescaped(s: &str, end: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if escaped {
            escaped = false;
        } else if c == '\\' {
            escaped = true;
        } else if s[i..].starts_with(end) {
            return Some(i);
        }
    }
    None
}

/// Inside code, pre and URLs only `` ` ``, `)` and `\` are escaped.
fn unescape_code(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(n) = chars.next() {
                out.push(n);
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn advance_to(chars: &mut std::iter::Peekable<std::str::CharIndices<'_>>, byte: usize) {
    while chars.peek().is_some_and(|&(i, _)| i < byte) {
        chars.next();
    }
}

/// Legacy Markdown: `*bold*`, `_italic_`, `` `code` ``, ```` ```pre``` ````, `[text](url)`,
/// not nested; only the markers themselves can be escaped.
fn parse_markdown_legacy(input: &str) -> Result<Formatted, String> {
    let mut b = Builder::default();
    let mut chars = input.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        let (kind, marker) = match c {
            '\\' if chars
                .peek()
                .is_some_and(|&(_, n)| matches!(n, '_' | '*' | '`' | '[')) =>
            {
                if let Some((_, n)) = chars.next() {
                    b.push(n);
                }
                continue;
            }
            '*' => (Kind::Bold, "*"),
            '_' => (Kind::Italic, "_"),
            '`' if input[at..].starts_with("```") => (Kind::Pre, "```"),
            '`' => (Kind::Code, "`"),
            '[' => (Kind::TextUrl, "]"),
            _ => {
                b.push(c);
                continue;
            }
        };
        let open_len = if kind == Kind::Pre { 3 } else { 1 };
        let body_start = at + open_len;
        let unterminated = || format!("Can't find end of the entity starting at byte offset {at}");
        let len = input[body_start..].find(marker).ok_or_else(unterminated)?;
        let mut end = body_start + len + marker.len();
        b.open(kind, at);
        b.push_str(&input[body_start..body_start + len]);
        if kind == Kind::TextUrl {
            // `[text]` must be followed by `(url)`.
            let rest = &input[end..];
            let url_len = rest
                .strip_prefix('(')
                .and_then(|r| r.find(')'))
                .ok_or_else(unterminated)?;
            if let Some(open) = b.open.last_mut() {
                open.url = Some(rest[1..1 + url_len].to_string());
            }
            end += url_len + 2;
        }
        b.close(kind);
        advance_to(&mut chars, end);
    }
    Ok(b.build())
}

/// HTML: the tags Telegram supports, the four named entities and numeric ones. Bare `>` and
/// `&` are tolerated; a bare `<` is not.
fn parse_html(input: &str) -> Result<Formatted, String> {
    let mut b = Builder::default();
    let mut i = 0;
    while let Some(c) = input[i..].chars().next() {
        match c {
            '<' => i = html_tag(input, i, &mut b)?,
            '&' => {
                let (decoded, used) = html_entity(&input[i..]);
                b.push_str(&decoded);
                i += used;
            }
            _ => {
                b.push(c);
                i += c.len_utf8();
            }
        }
    }
    if let Some(open) = b.open.first() {
        return Err(format!(
            "Can't find end tag corresponding to start tag \"{}\"",
            open.tag
        ));
    }
    Ok(b.build())
}

/// Handles the tag starting at `start`; returns the offset just past it.
fn html_tag(input: &str, start: usize, b: &mut Builder) -> Result<usize, String> {
    let Some(len) = input[start..].find('>') else {
        return Err(format!("Unclosed start tag at byte offset {start}"));
    };
    let inner = &input[start + 1..start + len];
    let end = start + len + 1;
    if let Some(name) = inner.strip_prefix('/') {
        let name = name.trim().to_ascii_lowercase();
        let Some(open) = b.open.pop() else {
            return Err(format!("Unexpected end tag at byte offset {start}"));
        };
        if open.tag != name {
            return Err(format!(
                "Unmatched end tag at byte offset {start}, expected \"</{}>\", found \"</{name}>\"",
                open.tag
            ));
        }
        b.finish(open);
        return Ok(end);
    }
    let name_len = inner
        .find(|c: char| c.is_whitespace())
        .unwrap_or(inner.len());
    let name = inner[..name_len].to_ascii_lowercase();
    let attrs = html_attributes(&inner[name_len..]);
    let attr = |key: &str| attrs.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let kind = match name.as_str() {
        "b" | "strong" => Kind::Bold,
        "i" | "em" => Kind::Italic,
        "u" | "ins" => Kind::Underline,
        "s" | "strike" | "del" => Kind::Strikethrough,
        "tg-spoiler" => Kind::Spoiler,
        "span" if attr("class").as_deref() == Some("tg-spoiler") => Kind::Spoiler,
        "span" => return Err("Tag \"span\" must have class \"tg-spoiler\"".to_string()),
        "a" if attr("href").is_some() => Kind::TextUrl,
        "a" | "tg-emoji" => Kind::Plain,
        // `<pre><code class="language-x">` is one pre entity with a language.
        "code" if b.open.last().is_some_and(|o| o.kind == Kind::Pre) => {
            if let Some(open) = b.open.last_mut() {
                open.language =
                    attr("class").and_then(|c| c.strip_prefix("language-").map(str::to_string));
            }
            Kind::Plain
        }
        "code" => Kind::Code,
        "pre" => Kind::Pre,
        "blockquote" => Kind::BlockQuote,
        _ => {
            return Err(format!(
                "Unsupported start tag \"{name}\" at byte offset {start}"
            ))
        }
    };
    b.open(kind, start);
    if let Some(open) = b.open.last_mut() {
        open.tag = name;
        if kind == Kind::TextUrl {
            open.url = attr("href");
        }
    }
    Ok(end)
}

/// `key="value"`, `key='value'` and `key=value` pairs, values entity-decoded.
fn html_attributes(mut s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start();
        let Some(eq) = s.find('=') else { return out };
        let key = s[..eq].trim().to_ascii_lowercase();
        let rest = s[eq + 1..].trim_start();
        let (raw, next) = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => match rest[1..].find(q) {
                Some(end) => (&rest[1..1 + end], &rest[end + 2..]),
                None => (&rest[1..], ""),
            },
            _ => {
                let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        let mut value = String::new();
        let mut j = 0;
        while let Some(c) = raw[j..].chars().next() {
            if c == '&' {
                let (decoded, used) = html_entity(&raw[j..]);
                value.push_str(&decoded);
                j += used;
            } else {
                value.push(c);
                j += c.len_utf8();
            }
        }
        out.push((key, value));
        s = next;
    }
}

/// Decodes the entity at the start of `s` (which starts with `&`): the decoded text and the
/// bytes consumed. Anything unrecognised is a literal `&`.
fn html_entity(s: &str) -> (String, usize) {
    let literal = ("&".to_string(), 1);
    let Some(semi) = s.find(';').filter(|&n| n <= 10) else {
        return literal;
    };
    let name = &s[1..semi];
    let decoded = match name {
        "lt" => Some('<'),
        "gt" => Some('>'),
        "amp" => Some('&'),
        "quot" => Some('"'),
        _ => name
            .strip_prefix("#x")
            .or_else(|| name.strip_prefix("#X"))
            .and_then(|hex| u32::from_str_radix(hex, 16).ok())
            .or_else(|| name.strip_prefix('#').and_then(|dec| dec.parse().ok()))
            .and_then(char::from_u32),
    };
    match decoded {
        Some(c) => (c.to_string(), semi + 1),
        None => literal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(kind: &'static str, offset: usize, length: usize) -> Entity {
        Entity {
            kind,
            offset,
            length,
            url: None,
            language: None,
        }
    }

    #[test]
    fn lengths_are_utf16_code_units() {
        assert_eq!(utf16_len("hello"), 5);
        // Each of these is one code unit: BMP characters.
        assert_eq!(utf16_len("こんにちは"), 5);
        // Emoji outside the BMP take a surrogate pair.
        assert_eq!(utf16_len("👍"), 2);
    }

    #[test]
    fn markdown_v2_builds_nested_entities_with_utf16_offsets() {
        let parsed = parse(
            "👍 *bold _both_* \\. [link](https://x\\.y/\\))",
            ParseMode::MarkdownV2,
        )
        .expect("valid markup");
        assert_eq!(parsed.text, "👍 bold both . link");
        assert_eq!(
            parsed.entities,
            vec![
                entity("bold", 3, 9),
                entity("italic", 8, 4),
                Entity {
                    url: Some("https://x.y/)".into()),
                    ..entity("text_link", 15, 4)
                },
            ]
        );
    }

    #[test]
    fn markdown_v2_requires_escaping_reserved_characters() {
        let err = parse("Thanks for writing.", ParseMode::MarkdownV2).expect_err("bare dot");
        assert_eq!(
            err,
            "Character '.' is reserved and must be escaped with the preceding '\\'"
        );
        let err = parse("*open", ParseMode::MarkdownV2).expect_err("unclosed bold");
        assert_eq!(err, "Can't find end of Bold entity at byte offset 0");
    }

    #[test]
    fn markdown_v2_code_pre_and_quotes() {
        let parsed = parse(
            "`a*b` ```rust\nlet x;```\n>quoted\n>more\nafter",
            ParseMode::MarkdownV2,
        )
        .expect("valid markup");
        assert_eq!(parsed.text, "a*b let x;\nquoted\nmore\nafter");
        assert_eq!(parsed.entities[0], entity("code", 0, 3));
        assert_eq!(
            parsed.entities[1],
            Entity {
                language: Some("rust".into()),
                ..entity("pre", 4, 6)
            }
        );
        assert_eq!(parsed.entities[2], entity("blockquote", 11, 11));
    }

    #[test]
    fn html_tags_entities_and_errors() {
        let parsed = parse(
            "<b>a &lt;b&gt; <i>c</i></b> &amp; <a href=\"http://e/?a=1&amp;b\">d</a>",
            ParseMode::Html,
        )
        .expect("valid markup");
        assert_eq!(parsed.text, "a <b> c & d");
        assert_eq!(parsed.entities.len(), 3);
        assert_eq!(parsed.entities[2].url.as_deref(), Some("http://e/?a=1&b"));

        assert_eq!(
            parse("<b>x</i>", ParseMode::Html).expect_err("mismatch"),
            "Unmatched end tag at byte offset 4, expected \"</b>\", found \"</i>\""
        );
        assert_eq!(
            parse("<blink>x</blink>", ParseMode::Html).expect_err("unknown tag"),
            "Unsupported start tag \"blink\" at byte offset 0"
        );
        assert_eq!(
            parse("<b>x", ParseMode::Html).expect_err("unclosed"),
            "Can't find end tag corresponding to start tag \"b\""
        );
    }

    #[test]
    fn legacy_markdown_is_flat_and_lenient_about_punctuation() {
        let parsed =
            parse("Hi *there*. See [docs](http://d).", ParseMode::Markdown).expect("valid");
        assert_eq!(parsed.text, "Hi there. See docs.");
        assert_eq!(parsed.entities[0], entity("bold", 3, 5));
        assert_eq!(parsed.entities[1].url.as_deref(), Some("http://d"));
        assert!(parse("an_unclosed", ParseMode::Markdown).is_err());
    }
}
