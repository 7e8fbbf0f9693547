//! Bot API method parameters, from whichever encoding the client chose.
//!
//! The real server takes the same parameters from the query string, a urlencoded form, a JSON
//! object or a multipart form, on GET or POST, and merges query and body. Form encodings carry
//! everything as strings, so nested objects (`reply_parameters`) and lists
//! (`allowed_updates`) arrive as JSON text there and as real JSON in a JSON body; numbers and
//! booleans may be either. The getters here accept both shapes.

use std::collections::HashMap;
use std::convert::Infallible;

use axum::body::Bytes;
use axum::http::{header, HeaderMap};
use serde_json::{Map, Value};

use super::api::ApiError;

/// The merged parameters of one request.
#[derive(Debug, Default)]
pub struct Params(HashMap<String, Value>);

impl Params {
    /// Collects parameters from the query string and the body; body values win.
    pub async fn from_request(
        headers: &HeaderMap,
        query: Option<&str>,
        body: Bytes,
    ) -> Result<Self, ApiError> {
        let mut params = HashMap::new();
        if let Some(query) = query {
            for (key, value) in form_urlencoded::parse(query.as_bytes()) {
                params.insert(key.into_owned(), Value::String(value.into_owned()));
            }
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let mime = content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        match mime.as_str() {
            _ if body.is_empty() => {}
            "application/json" => {
                let Ok(Value::Object(object)) = serde_json::from_slice::<Value>(&body) else {
                    return Err(ApiError::bad_request("can't parse JSON object"));
                };
                params.extend(object);
            }
            "application/x-www-form-urlencoded" => {
                for (key, value) in form_urlencoded::parse(&body) {
                    params.insert(key.into_owned(), Value::String(value.into_owned()));
                }
            }
            "multipart/form-data" => {
                let boundary = multer::parse_boundary(content_type).map_err(|_| {
                    ApiError::bad_request("can't parse multipart/form-data request")
                })?;
                let stream = futures_util::stream::once(async move { Ok::<_, Infallible>(body) });
                let mut multipart = multer::Multipart::new(stream, boundary);
                let bad = |_| ApiError::bad_request("can't parse multipart/form-data request");
                while let Some(field) = multipart.next_field().await.map_err(bad)? {
                    let Some(name) = field.name().map(str::to_string) else {
                        continue;
                    };
                    // File parts (photos, certificates) are accepted and ignored: the simulator
                    // only models text.
                    if field.file_name().is_some() {
                        continue;
                    }
                    let text = field.text().await.map_err(bad)?;
                    params.insert(name, Value::String(text));
                }
            }
            // The real server ignores bodies it doesn't understand.
            _ => {}
        }
        Ok(Self(params))
    }

    /// Parameters from a JSON object (anything else gives none).
    pub fn from_json(value: Value) -> Self {
        match value {
            Value::Object(map) => Self(map.into_iter().collect()),
            _ => Self::default(),
        }
    }

    fn get(&self, name: &str) -> Option<&Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }

    /// A string parameter; numbers and booleans are taken as their text.
    pub fn string(&self, name: &str) -> Option<String> {
        match self.get(name)? {
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        }
    }

    /// An integer parameter. `Some(Err(()))` when present but not an integer, so each method
    /// can decide, as the real server does, whether that is an error or a zero.
    pub fn int(&self, name: &str) -> Option<Result<i64, ()>> {
        Some(match self.get(name)? {
            Value::Number(n) => n
                .as_i64()
                .or_else(|| n.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
                .ok_or(()),
            Value::String(s) => s.trim().parse().map_err(|_| ()),
            _ => Err(()),
        })
    }

    /// An integer parameter where junk counts as zero (the real server's lenient parsing of
    /// options like `limit` and `timeout`).
    pub fn int_or_zero(&self, name: &str) -> Option<i64> {
        self.int(name).map(|v| v.unwrap_or(0))
    }

    /// A boolean parameter: `true`/`false`, `1`/`0`, in any case; absent is `false`.
    pub fn flag(&self, name: &str) -> bool {
        match self.get(name) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Number(n)) => n.as_f64().is_some_and(|f| f != 0.0),
            Some(Value::String(s)) => {
                matches!(s.trim().to_ascii_lowercase().as_str(), "true" | "1")
            }
            _ => false,
        }
    }

    /// A JSON-object parameter, given as an object or as JSON text. `what` names it in the
    /// error, e.g. "reply parameters".
    pub fn object(&self, name: &str, what: &str) -> Result<Option<Map<String, Value>>, ApiError> {
        let parsed = match self.get(name) {
            None => return Ok(None),
            Some(Value::Object(map)) => Some(map.clone()),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Object(map)) => Some(map),
                _ => None,
            },
            Some(_) => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(&format!("can't parse {what} JSON object")))
    }

    /// A JSON-array parameter, given as an array or as JSON text.
    pub fn array(&self, name: &str, what: &str) -> Result<Option<Vec<Value>>, ApiError> {
        let parsed = match self.get(name) {
            None => return Ok(None),
            Some(Value::Array(items)) => Some(items.clone()),
            Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
                Ok(Value::Array(items)) => Some(items),
                _ => None,
            },
            Some(_) => None,
        };
        parsed
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(&format!("can't parse {what} JSON array")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use serde_json::json;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_str(content_type).expect("valid header"),
        );
        h
    }

    #[tokio::test]
    async fn body_wins_over_query_and_types_are_lenient() {
        let p = Params::from_request(
            &headers("application/x-www-form-urlencoded"),
            Some("chat_id=1&text=from+query"),
            Bytes::from_static(b"text=from%20body&disable_notification=True&limit=abc"),
        )
        .await
        .expect("parses");
        assert_eq!(p.string("text").as_deref(), Some("from body"));
        assert_eq!(p.int("chat_id"), Some(Ok(1)));
        assert!(p.flag("disable_notification"));
        assert_eq!(p.int_or_zero("limit"), Some(0));
    }

    #[tokio::test]
    async fn multipart_text_fields_are_parameters() {
        let body = "--XX\r\nContent-Disposition: form-data; name=\"chat_id\"\r\n\r\n42\r\n\
                    --XX\r\nContent-Disposition: form-data; name=\"text\"\r\n\r\nhi there\r\n--XX--\r\n";
        let p = Params::from_request(
            &headers("multipart/form-data; boundary=XX"),
            None,
            Bytes::from(body),
        )
        .await
        .expect("parses");
        assert_eq!(p.int("chat_id"), Some(Ok(42)));
        assert_eq!(p.string("text").as_deref(), Some("hi there"));
    }

    #[test]
    fn nested_objects_arrive_as_objects_or_json_text() {
        let as_text = Params::from_json(json!({"reply_parameters": "{\"message_id\": 7}"}));
        let as_object = Params::from_json(json!({"reply_parameters": {"message_id": 7}}));
        for p in [as_text, as_object] {
            let obj = p
                .object("reply_parameters", "reply parameters")
                .expect("ok")
                .expect("present");
            assert_eq!(obj.get("message_id"), Some(&json!(7)));
        }
        let junk = Params::from_json(json!({"reply_parameters": "{nope"}));
        assert!(junk.object("reply_parameters", "reply parameters").is_err());
    }
}
