//! Ids as services write them: a number in one answer, a string in the next.
//!
//! The hub keeps every id as a string. [`Id`] reads either form into the decimal string, so a
//! response record can name its id field `Id` and stop caring; [`numeric_id`] checks that an
//! id the hub passes back is a number before it goes into a path or a JSON number.

use core::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ConnectorError, Result};

/// An id that a service writes as a JSON number or a JSON string (Zendesk's REST API and its
/// webhooks, RT's `id` fields), kept as the string the hub uses.
///
/// ```
/// # use switchboard_plugin_sdk::ids::Id;
/// let ids: Vec<Id> = serde_json::from_str(r#"[35436, "35437", 9007199254740993]"#).unwrap();
/// assert_eq!(ids[0], "35436");
/// assert_eq!(ids[1].as_str(), "35437");
/// assert_eq!(ids[2].to_string(), "9007199254740993");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Id(pub String);

impl Id {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a number, when it is one (to order ids that grow with time).
    pub fn as_u64(&self) -> Option<u64> {
        self.0.trim().parse().ok()
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> core::result::Result<Self, D::Error> {
        struct IdVisitor;

        impl serde::de::Visitor<'_> for IdVisitor {
            type Value = Id;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an id, as a number or a string")
            }

            fn visit_u64<E: serde::de::Error>(self, n: u64) -> core::result::Result<Id, E> {
                Ok(Id(n.to_string()))
            }

            fn visit_i64<E: serde::de::Error>(self, n: i64) -> core::result::Result<Id, E> {
                Ok(Id(n.to_string()))
            }

            fn visit_str<E: serde::de::Error>(self, s: &str) -> core::result::Result<Id, E> {
                Ok(Id(s.to_string()))
            }

            fn visit_string<E: serde::de::Error>(self, s: String) -> core::result::Result<Id, E> {
                Ok(Id(s))
            }
        }

        deserializer.deserialize_any(IdVisitor)
    }
}

/// Written back as a string: the form every service that mixes the two accepts.
impl Serialize for Id {
    fn serialize<S: Serializer>(&self, serializer: S) -> core::result::Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Id> for String {
    fn from(id: Id) -> String {
        id.0
    }
}

impl PartialEq<str> for Id {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Id {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

/// Checks that `id`, which the hub passes for `field` (`ticket-id`, `requester-id`, ...), is a
/// numeric id, so that it can go into a URL path or a JSON number safely. Anything else is an
/// `InvalidInput` error for `field`.
///
/// ```
/// # use switchboard_plugin_sdk::ids::numeric_id;
/// assert_eq!(numeric_id("ticket-id", " 42 "), Ok(42));
/// assert!(numeric_id("ticket-id", "42/../x").is_err());
/// ```
pub fn numeric_id(field: &str, id: &str) -> Result<u64> {
    id.trim()
        .parse()
        .map_err(|_| ConnectorError::invalid(field, format!("expected a numeric id, got `{id}`")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_numbers_and_strings() {
        let ids: Vec<Id> = serde_json::from_str(r#"[0, -7, "abc", "12"]"#).expect("ids");
        assert_eq!(
            ids,
            vec![
                Id("0".into()),
                Id("-7".into()),
                Id("abc".into()),
                Id("12".into())
            ]
        );
        assert_eq!(ids[3].as_u64(), Some(12));
        assert_eq!(ids[2].as_u64(), None);
        for bad in ["1.5", "null", "true", "[1]", "{}"] {
            assert!(serde_json::from_str::<Id>(bad).is_err(), "{bad}");
        }
        assert_eq!(
            serde_json::to_string(&Id("5".into())).expect("json"),
            r#""5""#
        );
        let optional: Option<Id> = serde_json::from_str("null").expect("null");
        assert_eq!(optional, None);
    }

    #[test]
    fn numeric_ids_name_the_field() {
        assert_eq!(numeric_id("ticket-id", "7"), Ok(7));
        for bad in ["", "-1", "1e3", "7a", "00x"] {
            match numeric_id("ticket-id", bad) {
                Err(ConnectorError::InvalidInput(f)) => {
                    assert_eq!(f.field, "ticket-id");
                    assert!(f.message.contains(&format!("`{bad}`")));
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
