//! The SOQL subset the simulator understands, with Salesforce's error answers for the rest.
//!
//! ```text
//! SELECT path [, path]* FROM Object
//!   [WHERE condition [AND condition]* | condition [OR condition]*]   (parentheses nest)
//!   [ORDER BY path [ASC|DESC] [NULLS FIRST|LAST] [, ...]]
//!   [LIMIT n] [OFFSET n]
//! condition := path (= | != | <> | < | <= | > | >=) literal
//!            | path [NOT] IN (literal [, literal]*)
//!            | NOT condition | ( ... )
//! path      := Field | Relationship.Field            (CaseComment Parent.Subject, CreatedBy.Name)
//! literal   := 'string' | 2024-01-01T00:00:00Z (also ±hh:mm) | number | true | false | null
//! ```
//!
//! Anything else (aggregates, subqueries, LIKE, date literals such as `TODAY`, mixed AND/OR
//! without parentheses) is answered with `MALFORMED_QUERY`; unknown objects with `INVALID_TYPE`
//! and unknown fields with `INVALID_FIELD`, each with Salesforce's row/column pointer.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::error::ApiError;
use super::ids;
use super::schema::{Field, Kind, Object};
use super::store::{Record, Store};
use super::time::parse_soql_datetime;

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    Str(String),
    /// A bare literal starting with a digit: a number, a date or a dateTime.
    Bare(String),
    Punct(&'static str),
    End,
}

#[derive(Debug, Clone)]
struct Spanned {
    token: Token,
    /// Byte offset in the query.
    at: usize,
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    DateTime(i64),
    Number(f64),
    Bool(bool),
    Null,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// A field path resolved against the schema.
#[derive(Debug, Clone)]
struct Path {
    /// The lookup to follow first (`ParentId` for `Parent.Subject`), with its target.
    via: Option<(Field, &'static str, Object)>,
    field: Field,
}

#[derive(Debug, Clone)]
enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Path, Op, Literal),
    In(Path, Vec<Literal>, bool),
}

/// A parsed, schema-checked query.
#[derive(Debug, Clone)]
pub(crate) struct Query {
    pub object: Object,
    fields: Vec<Path>,
    filter: Option<Expr>,
    order: Vec<(Path, bool, bool)>,
    limit: Option<usize>,
    offset: usize,
}

struct Parser<'a> {
    text: &'a str,
    tokens: Vec<Spanned>,
    pos: usize,
    store: &'a Store,
}

/// Parses `text` and checks it against the store's schema.
pub(crate) fn parse(text: &str, store: &Store) -> Result<Query, ApiError> {
    let tokens = tokenize(text)?;
    let mut parser = Parser {
        text,
        tokens,
        pos: 0,
        store,
    };
    parser.query()
}

fn pointer(text: &str, at: usize) -> String {
    let before = &text[..at.min(text.len())];
    let row = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let line = text[line_start..].lines().next().unwrap_or_default();
    format!(
        "\n{line}\n{}^\nERROR at Row:{row}:Column:{column}\n",
        " ".repeat(column - 1)
    )
}

fn malformed(text: &str, at: usize, detail: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request("MALFORMED_QUERY", format!("{}{detail}", pointer(text, at)))
}

fn tokenize(text: &str) -> Result<Vec<Spanned>, ApiError> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let token = if c.is_ascii_alphabetic() || c == b'_' {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] == b'.')
            {
                i += 1;
            }
            Token::Ident(text[start..i].to_string())
        } else if c.is_ascii_digit() {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || b"-:+.".contains(&bytes[i]))
            {
                i += 1;
            }
            Token::Bare(text[start..i].to_string())
        } else if c == b'\'' {
            i += 1;
            let mut value = String::new();
            loop {
                let Some(ch) = text[i..].chars().next() else {
                    return Err(malformed(
                        text,
                        start,
                        "line 1:0 mismatched character '<EOF>' expecting '''",
                    ));
                };
                i += ch.len_utf8();
                match ch {
                    '\'' => break,
                    '\\' => {
                        let Some(escaped) = text[i..].chars().next() else {
                            return Err(malformed(text, start, "unterminated escape"));
                        };
                        i += escaped.len_utf8();
                        value.push(match escaped {
                            'n' => '\n',
                            't' => '\t',
                            'r' => '\r',
                            'b' => '\u{8}',
                            'f' => '\u{c}',
                            '\'' | '"' | '\\' | '_' | '%' => escaped,
                            other => {
                                return Err(malformed(
                                    text,
                                    start,
                                    format!(
                                        "Invalid string literal: illegal escape sequence \\{other}"
                                    ),
                                ))
                            }
                        });
                    }
                    other => value.push(other),
                }
            }
            Token::Str(value)
        } else {
            let two = text.get(i..i + 2).unwrap_or_default();
            let punct: &'static str = match two {
                "!=" => "!=",
                "<>" => "<>",
                "<=" => "<=",
                ">=" => ">=",
                _ => match c {
                    b',' => ",",
                    b'(' => "(",
                    b')' => ")",
                    b'=' => "=",
                    b'<' => "<",
                    b'>' => ">",
                    _ => {
                        let ch = text[i..].chars().next().unwrap_or('?');
                        return Err(malformed(text, i, format!("unexpected token: '{ch}'")));
                    }
                },
            };
            i += punct.len();
            Token::Punct(punct)
        };
        out.push(Spanned { token, at: start });
    }
    out.push(Spanned {
        token: Token::End,
        at: text.len(),
    });
    Ok(out)
}

impl Parser<'_> {
    fn peek(&self) -> &Spanned {
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn next(&mut self) -> Spanned {
        let token = self.peek().clone();
        if self.pos < self.tokens.len() - 1 {
            self.pos += 1;
        }
        token
    }

    fn unexpected(&self, token: &Spanned) -> ApiError {
        let shown = match &token.token {
            Token::Ident(s) | Token::Bare(s) => s.clone(),
            Token::Str(s) => format!("'{s}'"),
            Token::Punct(p) => (*p).to_string(),
            Token::End => "<EOF>".to_string(),
        };
        malformed(self.text, token.at, format!("unexpected token: '{shown}'"))
    }

    fn is_keyword(&self, word: &str) -> bool {
        matches!(&self.peek().token, Token::Ident(s) if s.eq_ignore_ascii_case(word))
    }

    fn keyword(&mut self, word: &str) -> Result<(), ApiError> {
        if self.is_keyword(word) {
            self.next();
            Ok(())
        } else {
            let token = self.peek().clone();
            Err(self.unexpected(&token))
        }
    }

    fn punct(&mut self, p: &str) -> Result<(), ApiError> {
        if matches!(self.peek().token, Token::Punct(q) if q == p) {
            self.next();
            Ok(())
        } else {
            let token = self.peek().clone();
            Err(self.unexpected(&token))
        }
    }

    fn query(&mut self) -> Result<Query, ApiError> {
        self.keyword("SELECT")?;
        let mut raw_fields = Vec::new();
        loop {
            let token = self.next();
            match &token.token {
                Token::Ident(name) if !is_reserved(name) => {
                    raw_fields.push((name.clone(), token.at))
                }
                _ => return Err(self.unexpected(&token)),
            }
            if self.peek().token == Token::Punct("(") {
                // COUNT(), FIELDS(ALL), aggregates: not in this subset.
                let token = self.peek().clone();
                return Err(self.unexpected(&token));
            }
            if self.peek().token == Token::Punct(",") {
                self.next();
            } else {
                break;
            }
        }
        self.keyword("FROM")?;
        let token = self.next();
        let Token::Ident(object_name) = &token.token else {
            return Err(self.unexpected(&token));
        };
        let object = Object::parse(object_name).ok_or_else(|| {
            ApiError::bad_request(
                "INVALID_TYPE",
                format!(
                    "{}sObject type '{object_name}' is not supported. If you are attempting to \
                     use a custom object, be sure to append the '__c' after the entity name. \
                     Please reference your WSDL or the describe call for the appropriate names.",
                    pointer(self.text, token.at)
                ),
            )
        })?;
        let mut fields = Vec::new();
        let mut seen = Vec::new();
        for (name, at) in raw_fields {
            let path = self.resolve(object, &name, at)?;
            let key = path_key(&path);
            if seen.contains(&key) {
                return Err(malformed(
                    self.text,
                    at,
                    format!("duplicate field selected: {name}"),
                ));
            }
            seen.push(key);
            fields.push(path);
        }

        let mut query = Query {
            object,
            fields,
            filter: None,
            order: Vec::new(),
            limit: None,
            offset: 0,
        };
        if self.is_keyword("WHERE") {
            self.next();
            query.filter = Some(self.expr(object)?);
        }
        if self.is_keyword("ORDER") {
            self.next();
            self.keyword("BY")?;
            loop {
                let token = self.next();
                let Token::Ident(name) = &token.token else {
                    return Err(self.unexpected(&token));
                };
                let path = self.resolve(object, name, token.at)?;
                let mut ascending = true;
                if self.is_keyword("ASC") {
                    self.next();
                } else if self.is_keyword("DESC") {
                    self.next();
                    ascending = false;
                }
                // Salesforce's default: nulls first when ascending, last when descending.
                let mut nulls_first = ascending;
                if self.is_keyword("NULLS") {
                    self.next();
                    if self.is_keyword("FIRST") {
                        nulls_first = true;
                    } else if self.is_keyword("LAST") {
                        nulls_first = false;
                    } else {
                        let token = self.peek().clone();
                        return Err(self.unexpected(&token));
                    }
                    self.next();
                }
                query.order.push((path, ascending, nulls_first));
                if self.peek().token == Token::Punct(",") {
                    self.next();
                } else {
                    break;
                }
            }
        }
        if self.is_keyword("LIMIT") {
            self.next();
            query.limit = Some(self.count()?);
        }
        if self.is_keyword("OFFSET") {
            self.next();
            query.offset = self.count()?;
        }
        let token = self.next();
        if token.token != Token::End {
            return Err(self.unexpected(&token));
        }
        Ok(query)
    }

    fn count(&mut self) -> Result<usize, ApiError> {
        let token = self.next();
        match &token.token {
            Token::Bare(n) => n.parse().map_err(|_| self.unexpected(&token)),
            _ => Err(self.unexpected(&token)),
        }
    }

    /// `Field` or `Relationship.Field` on `object`.
    fn resolve(&self, object: Object, name: &str, at: usize) -> Result<Path, ApiError> {
        let schema = &self.store.schema;
        let no_column = |entity: Object, column: &str| {
            ApiError::bad_request(
                "INVALID_FIELD",
                format!(
                    "{}No such column '{column}' on entity '{}'. If you are attempting to use a \
                     custom field, be sure to append the '__c' after the custom field name. \
                     Please reference your WSDL or the describe call for the appropriate names.",
                    pointer(self.text, at),
                    entity.name()
                ),
            )
        };
        let readable = |f: &Field| f.readable;
        match name.split('.').collect::<Vec<_>>().as_slice() {
            [field] => {
                let field = schema
                    .field(object, field)
                    .filter(|f| readable(f))
                    .ok_or_else(|| no_column(object, field))?;
                Ok(Path {
                    via: None,
                    field: field.clone(),
                })
            }
            [relationship, field] => {
                let (lookup, target) =
                    schema.relationship(object, relationship).ok_or_else(|| {
                        ApiError::bad_request(
                            "INVALID_FIELD",
                            format!(
                            "{}Didn't understand relationship '{relationship}' in field path. If \
                             you are attempting to use a custom relationship, be sure to append \
                             the '__r' after the custom relationship name. Please reference your \
                             WSDL or the describe call for the appropriate names.",
                            pointer(self.text, at)
                        ),
                        )
                    })?;
                let field = schema
                    .field(target, field)
                    .filter(|f| readable(f))
                    .ok_or_else(|| no_column(target, field))?;
                let rel_name = lookup.relationship.unwrap_or("Parent");
                Ok(Path {
                    via: Some((lookup.clone(), rel_name, target)),
                    field: field.clone(),
                })
            }
            _ => Err(malformed(
                self.text,
                at,
                format!("relationship paths deeper than one level are not supported: {name}"),
            )),
        }
    }

    /// A run of conditions joined by one connector; mixing AND and OR needs parentheses.
    fn expr(&mut self, object: Object) -> Result<Expr, ApiError> {
        let first = self.factor(object)?;
        let mut items = vec![first];
        let mut connector: Option<&'static str> = None;
        loop {
            let word = if self.is_keyword("AND") {
                "AND"
            } else if self.is_keyword("OR") {
                "OR"
            } else {
                break;
            };
            if connector.is_some_and(|c| c != word) {
                let token = self.peek().clone();
                return Err(self.unexpected(&token));
            }
            connector = Some(word);
            self.next();
            items.push(self.factor(object)?);
        }
        Ok(match (connector, items.len()) {
            (_, 1) => items.remove(0),
            (Some("OR"), _) => Expr::Or(items),
            _ => Expr::And(items),
        })
    }

    fn factor(&mut self, object: Object) -> Result<Expr, ApiError> {
        if self.peek().token == Token::Punct("(") {
            self.next();
            let inner = self.expr(object)?;
            self.punct(")")?;
            return Ok(inner);
        }
        if self.is_keyword("NOT") {
            self.next();
            return Ok(Expr::Not(Box::new(self.factor(object)?)));
        }
        let token = self.next();
        let Token::Ident(name) = &token.token else {
            return Err(self.unexpected(&token));
        };
        if is_reserved(name) {
            return Err(self.unexpected(&token));
        }
        let path = self.resolve(object, name, token.at)?;
        let negated = if self.is_keyword("NOT") {
            self.next();
            true
        } else {
            false
        };
        if self.is_keyword("IN") {
            self.next();
            self.punct("(")?;
            let mut values = Vec::new();
            loop {
                values.push(self.literal(&path)?);
                if self.peek().token == Token::Punct(",") {
                    self.next();
                } else {
                    break;
                }
            }
            self.punct(")")?;
            return Ok(Expr::In(path, values, negated));
        }
        if negated {
            let token = self.peek().clone();
            return Err(self.unexpected(&token));
        }
        let token = self.next();
        let op = match &token.token {
            Token::Punct("=") => Op::Eq,
            Token::Punct("!=") | Token::Punct("<>") => Op::Ne,
            Token::Punct("<") => Op::Lt,
            Token::Punct("<=") => Op::Le,
            Token::Punct(">") => Op::Gt,
            Token::Punct(">=") => Op::Ge,
            _ => return Err(self.unexpected(&token)),
        };
        let literal = self.literal(&path)?;
        if literal == Literal::Null && !matches!(op, Op::Eq | Op::Ne) {
            return Err(malformed(
                self.text,
                token.at,
                "invalid operator on null value",
            ));
        }
        Ok(Expr::Cmp(path, op, literal))
    }

    /// A literal, checked against the type of the field it is compared with.
    fn literal(&mut self, path: &Path) -> Result<Literal, ApiError> {
        let token = self.next();
        let field = &path.field;
        let wrong_type = |expected: &str, quoted: &str| {
            ApiError::bad_request(
                "INVALID_FIELD",
                format!(
                    "{}value of filter criterion for field '{}' must be of type {expected} and \
                     should {quoted}be enclosed in quotes",
                    pointer(self.text, token.at),
                    field.name
                ),
            )
        };
        let literal = match &token.token {
            Token::Ident(word) if word.eq_ignore_ascii_case("null") => return Ok(Literal::Null),
            Token::Ident(word) if word.eq_ignore_ascii_case("true") => Literal::Bool(true),
            Token::Ident(word) if word.eq_ignore_ascii_case("false") => Literal::Bool(false),
            Token::Str(s) => Literal::Str(s.clone()),
            Token::Bare(s) if s.contains('T') => match parse_soql_datetime(s) {
                Some(ms) => Literal::DateTime(ms),
                None => return Err(self.unexpected(&token)),
            },
            Token::Bare(s) => match s.parse::<f64>() {
                Ok(n) => Literal::Number(n),
                // Date literals (2024-01-01) and the like are outside the subset.
                Err(_) => return Err(self.unexpected(&token)),
            },
            _ => return Err(self.unexpected(&token)),
        };
        match (&field.kind, &literal) {
            (Kind::DateTime, Literal::DateTime(_)) => Ok(literal),
            (Kind::DateTime, _) => Err(wrong_type("dateTime", "not ")),
            (Kind::Boolean, Literal::Bool(_)) => Ok(literal),
            (Kind::Boolean, _) => Err(wrong_type("boolean", "not ")),
            (Kind::Id | Kind::Reference(_), Literal::Str(s)) => match ids::normalize(s) {
                Some(id) => Ok(Literal::Str(id)),
                None => Err(ApiError::bad_request(
                    "INVALID_QUERY_FILTER_OPERATOR",
                    format!("{}invalid ID field: {s}", pointer(self.text, token.at)),
                )),
            },
            (_, Literal::Str(_)) => Ok(literal),
            _ => Err(wrong_type("string", "")),
        }
    }
}

fn is_reserved(word: &str) -> bool {
    [
        "SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "ORDER", "BY", "LIMIT", "OFFSET", "IN",
        "NULL", "TRUE", "FALSE", "ASC", "DESC", "NULLS", "LIKE", "GROUP", "HAVING", "WITH",
    ]
    .iter()
    .any(|k| k.eq_ignore_ascii_case(word))
}

fn path_key(path: &Path) -> String {
    match &path.via {
        Some((_, rel, _)) => format!("{rel}.{}", path.field.name),
        None => path.field.name.clone(),
    }
}

/// The raw value a path has on a record (following a lookup when the path has one).
fn value_of<'a>(store: &'a Store, record: &'a Record, path: &Path) -> &'a Value {
    match &path.via {
        None => record.value(&path.field.name),
        Some((lookup, _, target)) => record
            .text(&lookup.name)
            .and_then(|id| store.records.get(id))
            .filter(|r| r.object == *target)
            .map_or(&Value::Null, |r| r.value(&path.field.name)),
    }
}

/// Orders two values of one field: text case-insensitively, ids exactly, nulls apart.
fn compare(field: &Field, a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::String(x), Value::String(y)) => Some(match field.kind {
            Kind::Id | Kind::Reference(_) => x.cmp(y),
            _ => x.to_lowercase().cmp(&y.to_lowercase()),
        }),
        _ => None,
    }
}

fn literal_value(literal: &Literal) -> Value {
    match literal {
        Literal::Str(s) => Value::String(s.clone()),
        Literal::DateTime(ms) => Value::from(*ms),
        Literal::Number(n) => serde_json::Number::from_f64(*n).map_or(Value::Null, Value::Number),
        Literal::Bool(b) => Value::Bool(*b),
        Literal::Null => Value::Null,
    }
}

fn matches(store: &Store, record: &Record, expr: &Expr) -> bool {
    match expr {
        Expr::And(items) => items.iter().all(|e| matches(store, record, e)),
        Expr::Or(items) => items.iter().any(|e| matches(store, record, e)),
        Expr::Not(inner) => !matches(store, record, inner),
        Expr::In(path, values, negated) => {
            let value = value_of(store, record, path);
            let found = values.iter().any(|l| {
                compare(&path.field, value, &literal_value(l)) == Some(Ordering::Equal)
                    || (l == &Literal::Null && value.is_null())
            });
            found != *negated
        }
        Expr::Cmp(path, op, literal) => {
            let value = value_of(store, record, path);
            if literal == &Literal::Null {
                return value.is_null() == (*op == Op::Eq);
            }
            let ordering = compare(&path.field, value, &literal_value(literal));
            match (op, ordering) {
                // A null field is "not equal" to any value.
                (Op::Ne, None) => true,
                (_, None) => false,
                (Op::Eq, Some(o)) => o == Ordering::Equal,
                (Op::Ne, Some(o)) => o != Ordering::Equal,
                (Op::Lt, Some(o)) => o == Ordering::Less,
                (Op::Le, Some(o)) => o != Ordering::Greater,
                (Op::Gt, Some(o)) => o == Ordering::Greater,
                (Op::Ge, Some(o)) => o != Ordering::Less,
            }
        }
    }
}

/// Runs a query and renders its rows (`all_rows`: `/queryAll`, deleted rows included).
pub(crate) fn run(store: &Store, query: &Query, all_rows: bool, version: &str) -> Vec<Value> {
    let mut rows: Vec<&Record> = store
        .list(query.object, all_rows)
        .into_iter()
        .filter(|r| query.filter.as_ref().is_none_or(|f| matches(store, r, f)))
        .collect();
    if !query.order.is_empty() {
        rows.sort_by(|a, b| {
            for (path, ascending, nulls_first) in &query.order {
                let (x, y) = (value_of(store, a, path), value_of(store, b, path));
                let ordering = match (x.is_null(), y.is_null()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => {
                        if *nulls_first {
                            Ordering::Less
                        } else {
                            Ordering::Greater
                        }
                    }
                    (false, true) => {
                        if *nulls_first {
                            Ordering::Greater
                        } else {
                            Ordering::Less
                        }
                    }
                    (false, false) => {
                        let o = compare(&path.field, x, y).unwrap_or(Ordering::Equal);
                        if *ascending {
                            o
                        } else {
                            o.reverse()
                        }
                    }
                };
                if ordering != Ordering::Equal {
                    return ordering;
                }
            }
            a.seq.cmp(&b.seq)
        });
    }
    let rows = rows.into_iter().skip(query.offset);
    let rows: Vec<&Record> = match query.limit {
        Some(limit) => rows.take(limit).collect(),
        None => rows.collect(),
    };
    rows.into_iter()
        .map(|record| render_row(store, record, query, version))
        .collect()
}

fn render_row(store: &Store, record: &Record, query: &Query, version: &str) -> Value {
    let mut out = Map::new();
    out.insert("attributes".into(), Store::attributes(version, record));
    for path in &query.fields {
        match &path.via {
            None => {
                out.insert(
                    path.field.name.clone(),
                    Store::field_json(&path.field, record.value(&path.field.name)),
                );
            }
            Some((lookup, rel, target)) => {
                let related = record
                    .text(&lookup.name)
                    .and_then(|id| store.records.get(id))
                    .filter(|r| r.object == *target);
                let entry = out.entry(rel.to_string()).or_insert_with(|| match related {
                    Some(r) => {
                        let mut m = Map::new();
                        m.insert("attributes".into(), Store::attributes(version, r));
                        Value::Object(m)
                    }
                    None => Value::Null,
                });
                if let (Value::Object(m), Some(r)) = (entry, related) {
                    m.insert(
                        path.field.name.clone(),
                        Store::field_json(&path.field, r.value(&path.field.name)),
                    );
                }
            }
        }
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::salesforce::store::Writer;
    use crate::salesforce::Config;

    /// 2024-05-01T09:14:57Z.
    const T: i64 = 1_714_554_897_000;

    fn writer(user_id: &str) -> Writer {
        Writer {
            user_id: user_id.into(),
            client: None,
            api_version: "60.0".into(),
        }
    }

    fn insert(store: &mut Store, object: Object, body: Value, user: &str, at: i64) -> String {
        let Value::Object(fields) = body else {
            panic!("not an object: {body}")
        };
        store
            .insert(object, &fields, &writer(user), at)
            .expect("insert")
    }

    /// What a retried comment reads: one case's comments by one user since a second, in
    /// creation order, compared at millisecond precision against the literal.
    #[test]
    fn case_comments_by_author_since_a_datetime() {
        let mut store = Store::new(Config::default(), T);
        let (hub, agent) = (
            store.integration_user_id.clone(),
            store.human_agent_id.clone(),
        );
        let case = insert(&mut store, Object::Case, json!({"Subject": "a"}), &hub, T);
        let other = insert(&mut store, Object::Case, json!({"Subject": "b"}), &hub, T);
        let comment = |store: &mut Store, parent: &str, user: &str, at: i64| {
            let body = json!({"ParentId": parent, "CommentBody": "Hi", "IsPublished": true});
            insert(store, Object::CaseComment, body, user, at)
        };
        comment(&mut store, &case, &hub, T - 1); // the second before
        let same_second = comment(&mut store, &case, &hub, T + 999);
        comment(&mut store, &case, &agent, T + 5_000);
        comment(&mut store, &other, &hub, T + 5_000);
        let later = comment(&mut store, &case, &hub, T + 3_000);
        let first = comment(&mut store, &case, &hub, T);

        for since in ["2024-05-01T09:14:57Z", "2024-05-01T18:14:57+09:00"] {
            let soql = format!(
                "SELECT Id, CommentBody, IsPublished, CreatedDate, CreatedById FROM CaseComment \
                 WHERE ParentId = '{}' AND CreatedById = '{hub}' AND CreatedDate >= {since} \
                 ORDER BY CreatedDate ASC, Id ASC",
                &case[..15]
            );
            let query = parse(&soql, &store).expect("query");
            let rows = run(&store, &query, false, "60.0");
            let ids: Vec<&str> = rows.iter().filter_map(|r| r["Id"].as_str()).collect();
            assert_eq!(ids, [first.as_str(), &same_second, &later], "{since}");
            assert_eq!(rows[0]["CreatedDate"], "2024-05-01T09:14:57.000+0000");
            assert_eq!(rows[0]["CreatedById"], json!(hub));
            assert_eq!(rows[0]["IsPublished"], true);
        }
        // Fractions of a second are not SOQL.
        let soql = "SELECT Id FROM CaseComment WHERE CreatedDate >= 2024-05-01T09:14:57.000Z";
        assert!(parse(soql, &store).is_err());
    }
}
