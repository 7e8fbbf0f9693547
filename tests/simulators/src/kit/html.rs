//! The plain text of the HTML bodies helpdesks store next to it (`body_text`, `plain_body`).

/// The text of an HTML fragment: each `(markup, text)` of `breaks` replaced first (so `<br>`
/// can become a line break before tags go), then every tag dropped, then `&lt;`, `&gt;`,
/// `&quot;`, the vendor's `extra_entities` and last `&amp;` decoded (last, so `&amp;lt;`
/// stays `&lt;`). Which breaks and entities a vendor turns into text is its own.
pub fn text_of(html: &str, breaks: &[(&str, &str)], extra_entities: &[(&str, &str)]) -> String {
    let mut html = html.to_owned();
    for (markup, text) in breaks {
        html = html.replace(markup, text);
    }
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
    let mut out = out
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"");
    for (entity, text) in extra_entities {
        out = out.replace(entity, text);
    }
    out.replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaks_then_tags_then_entities() {
        let html = "<p>a &lt;b&gt; &amp;lt;</p><p>c<br>d &#39;e&#39;</p>";
        assert_eq!(
            text_of(html, &[("</p><p>", "\n\n"), ("<br>", "\n")], &[]),
            "a <b> &lt;\n\nc\nd &#39;e&#39;"
        );
        assert_eq!(text_of(html, &[], &[("&#39;", "'")]), "a <b> &lt;cd 'e'");
    }
}
