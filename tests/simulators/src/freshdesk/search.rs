//! `GET /api/v2/search/contacts?query="..."`: Freshdesk's filter query language, for the
//! contact fields a connector looks people up by.
//!
//! The query is wrapped in double quotes and made of `field:value` terms joined with `AND` /
//! `OR` (AND binds tighter) and parentheses. Values are `'strings'`, integers, `true`/`false`
//! or `null`.

use super::model::Contact;

/// The contact fields this simulator can filter on.
const FIELDS: [&str; 6] = ["email", "twitter_id", "phone", "mobile", "active", "tag"];
/// Freshdesk limits queries to 512 characters.
const MAX_QUERY_CHARS: usize = 512;

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Literal {
    Text(String),
    Number(i64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Query {
    Term(String, Literal),
    And(Box<Query>, Box<Query>),
    Or(Box<Query>, Box<Query>),
}

/// The message Freshdesk gives for a query it cannot read.
pub(crate) const INVALID_QUERY: &str = "Given query is invalid, expected format \"keyword:value  OPERATOR keyword:'string' OPERATOR keyword:>'yyyy-mm-dd' OPERATOR keyword:<integer\". Space is mandatory between key/value pair and operator. Please check the paranthesis if there are any.";

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Term(String, Literal),
    And,
    Or,
    Open,
    Close,
}

/// Parses a whole `query` parameter (quotes included).
pub(crate) fn parse(raw: &str) -> Result<Query, String> {
    let raw = raw.trim();
    if raw.chars().count() > MAX_QUERY_CHARS + 2 {
        return Err(format!(
            "It should have at most {MAX_QUERY_CHARS} characters"
        ));
    }
    let inner = raw
        .strip_prefix('"')
        .and_then(|r| r.strip_suffix('"'))
        .ok_or_else(|| INVALID_QUERY.to_owned())?;
    let tokens = tokenize(inner).ok_or_else(|| INVALID_QUERY.to_owned())?;
    let mut position = 0;
    let query = parse_or(&tokens, &mut position).ok_or_else(|| INVALID_QUERY.to_owned())?;
    if position != tokens.len() {
        return Err(INVALID_QUERY.to_owned());
    }
    Ok(query)
}

fn tokenize(input: &str) -> Option<Vec<Token>> {
    let chars: Vec<char> = input.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            c if c.is_whitespace() => i += 1,
            '(' => {
                tokens.push(Token::Open);
                i += 1;
            }
            ')' => {
                tokens.push(Token::Close);
                i += 1;
            }
            _ => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '_') {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                if word.is_empty() {
                    return None;
                }
                if chars.get(i) != Some(&':') {
                    tokens.push(match word.as_str() {
                        "AND" => Token::And,
                        "OR" => Token::Or,
                        _ => return None,
                    });
                    continue;
                }
                i += 1;
                let literal = if chars.get(i) == Some(&'\'') {
                    let end = chars[i + 1..].iter().position(|c| *c == '\'')? + i + 1;
                    let text: String = chars[i + 1..end].iter().collect();
                    i = end + 1;
                    Literal::Text(text)
                } else {
                    let start = i;
                    while i < chars.len() && !chars[i].is_whitespace() && chars[i] != ')' {
                        i += 1;
                    }
                    let raw: String = chars[start..i].iter().collect();
                    match raw.as_str() {
                        "true" => Literal::Bool(true),
                        "false" => Literal::Bool(false),
                        "null" => Literal::Null,
                        number => Literal::Number(number.parse().ok()?),
                    }
                };
                tokens.push(Token::Term(word, literal));
            }
        }
    }
    Some(tokens)
}

fn parse_or(tokens: &[Token], at: &mut usize) -> Option<Query> {
    let mut left = parse_and(tokens, at)?;
    while tokens.get(*at) == Some(&Token::Or) {
        *at += 1;
        left = Query::Or(Box::new(left), Box::new(parse_and(tokens, at)?));
    }
    Some(left)
}

fn parse_and(tokens: &[Token], at: &mut usize) -> Option<Query> {
    let mut left = parse_atom(tokens, at)?;
    while tokens.get(*at) == Some(&Token::And) {
        *at += 1;
        left = Query::And(Box::new(left), Box::new(parse_atom(tokens, at)?));
    }
    Some(left)
}

fn parse_atom(tokens: &[Token], at: &mut usize) -> Option<Query> {
    match tokens.get(*at)? {
        Token::Open => {
            *at += 1;
            let inner = parse_or(tokens, at)?;
            (tokens.get(*at) == Some(&Token::Close)).then(|| {
                *at += 1;
                inner
            })
        }
        Token::Term(field, literal) => {
            *at += 1;
            Some(Query::Term(field.clone(), literal.clone()))
        }
        _ => None,
    }
}

/// The first field the simulator cannot filter on, if any.
pub(crate) fn unknown_field(query: &Query) -> Option<&str> {
    match query {
        Query::Term(field, _) => (!FIELDS.contains(&field.as_str())).then_some(field.as_str()),
        Query::And(a, b) | Query::Or(a, b) => unknown_field(a).or_else(|| unknown_field(b)),
    }
}

pub(crate) fn matches(query: &Query, contact: &Contact) -> bool {
    match query {
        Query::And(a, b) => matches(a, contact) && matches(b, contact),
        Query::Or(a, b) => matches(a, contact) || matches(b, contact),
        Query::Term(field, literal) => {
            let text = |value: Option<&String>| match literal {
                Literal::Null => value.is_none(),
                Literal::Text(t) => value.is_some_and(|v| v.eq_ignore_ascii_case(t)),
                Literal::Number(n) => value.is_some_and(|v| *v == n.to_string()),
                Literal::Bool(_) => false,
            };
            match field.as_str() {
                "email" => text(contact.email.as_ref()),
                "twitter_id" => text(contact.twitter_id.as_ref()),
                "phone" => text(contact.phone.as_ref()),
                "mobile" => text(contact.mobile.as_ref()),
                // API-created contacts are unverified until they confirm their email.
                "active" => *literal == Literal::Bool(false),
                "tag" => match literal {
                    Literal::Null => contact.tags.is_empty(),
                    Literal::Text(t) => contact.tags.iter().any(|x| x.eq_ignore_ascii_case(t)),
                    _ => false,
                },
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_terms_operators_and_groups() {
        let q = parse("\"twitter_id:'123' OR (email:'a@b.co' AND active:false)\"").expect("query");
        assert_eq!(
            q,
            Query::Or(
                Box::new(Query::Term(
                    "twitter_id".into(),
                    Literal::Text("123".into())
                )),
                Box::new(Query::And(
                    Box::new(Query::Term("email".into(), Literal::Text("a@b.co".into()))),
                    Box::new(Query::Term("active".into(), Literal::Bool(false))),
                )),
            )
        );
        assert_eq!(unknown_field(&q), None);
        let q = parse("\"company_id:null\"").expect("query");
        assert_eq!(unknown_field(&q), Some("company_id"));
        for bad in [
            "twitter_id:'123'",
            "\"twitter_id:'123' AND\"",
            "\"(email:'x'\"",
            "\"email 'x'\"",
            "\"email:'x' XOR phone:1\"",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn matches_contacts() {
        let contact = Contact {
            twitter_id: Some("4242".into()),
            email: Some("aiko@example.com".into()),
            ..Contact::default()
        };
        let query = |q: &str| parse(q).expect("query");
        assert!(matches(&query("\"twitter_id:'4242'\""), &contact));
        assert!(matches(&query("\"twitter_id:4242\""), &contact));
        assert!(matches(&query("\"email:'AIKO@example.com'\""), &contact));
        assert!(!matches(&query("\"twitter_id:'4243'\""), &contact));
        assert!(matches(&query("\"phone:null AND tag:null\""), &contact));
    }
}
