//! Reading an installation's settings into a typed struct ([`Context::parse_settings`]).
//!
//! Settings arrive as strings. This is a small serde `Deserializer` over them: a field of a
//! number or `bool` type is parsed from its string, a `Vec` from a comma-separated list, an
//! `Option` is `None` when the setting is absent or empty, and every failure names the setting
//! it is about, so the admin knows which field of the form to fix.
//!
//! [`Context::parse_settings`]: crate::Context::parse_settings

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor};

/// Why settings did not read: the setting concerned (when known) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SettingsError {
    pub key: Option<String>,
    pub message: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SettingsError {}

impl de::Error for SettingsError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        SettingsError {
            key: None,
            message: msg.to_string(),
        }
    }

    fn missing_field(field: &'static str) -> Self {
        SettingsError {
            key: Some(field.to_string()),
            message: format!("setting `{field}` is required"),
        }
    }
}

/// The settings that have a value (empty ones count as absent), as a map.
pub(crate) struct SettingsDeserializer<'a> {
    pub entries: Vec<(&'a str, &'a str)>,
}

impl<'de> de::Deserializer<'de> for SettingsDeserializer<'de> {
    type Error = SettingsError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SettingsError> {
        visitor.visit_map(Entries {
            entries: self.entries.into_iter(),
            current: None,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct Entries<'a> {
    entries: std::vec::IntoIter<(&'a str, &'a str)>,
    current: Option<(&'a str, &'a str)>,
}

impl<'de> MapAccess<'de> for Entries<'de> {
    type Error = SettingsError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, SettingsError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        self.current = Some((key, value));
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, SettingsError> {
        let Some((key, value)) = self.current.take() else {
            return Err(de::Error::custom(
                "a setting's value was asked before its key",
            ));
        };
        seed.deserialize(Value { key, value })
            .map_err(|err| name_setting(err, key, value))
    }
}

/// Puts the setting's name (and the value it had) into an error from deeper down.
fn name_setting(err: SettingsError, key: &str, value: &str) -> SettingsError {
    if err.key.is_some() {
        return err;
    }
    SettingsError {
        key: Some(key.to_string()),
        message: format!("setting `{key}`: {} (got `{value}`)", err.message),
    }
}

/// One setting's string value, read as whatever type the field has.
struct Value<'a> {
    key: &'a str,
    value: &'a str,
}

impl Value<'_> {
    fn parse<T: std::str::FromStr>(&self, expected: &str) -> Result<T, SettingsError> {
        self.value
            .trim()
            .parse()
            .map_err(|_| de::Error::custom(format!("expected {expected}")))
    }
}

macro_rules! parse_number {
    ($($method:ident => $visit:ident: $ty:ty, $expected:literal;)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SettingsError> {
            visitor.$visit(self.parse::<$ty>($expected)?)
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Value<'de> {
    type Error = SettingsError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SettingsError> {
        visitor.visit_borrowed_str(self.value)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SettingsError> {
        // Admin forms and config files spell a switch in many ways.
        match self.value.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => visitor.visit_bool(true),
            "false" | "no" | "off" | "0" => visitor.visit_bool(false),
            _ => Err(de::Error::custom("expected true or false")),
        }
    }

    parse_number! {
        deserialize_u8 => visit_u8: u8, "a whole number from 0 to 255";
        deserialize_u16 => visit_u16: u16, "a whole number from 0 to 65535";
        deserialize_u32 => visit_u32: u32, "a whole number, 0 or more";
        deserialize_u64 => visit_u64: u64, "a whole number, 0 or more";
        deserialize_i8 => visit_i8: i8, "a whole number";
        deserialize_i16 => visit_i16: i16, "a whole number";
        deserialize_i32 => visit_i32: i32, "a whole number";
        deserialize_i64 => visit_i64: i64, "a whole number";
        deserialize_f32 => visit_f32: f32, "a number";
        deserialize_f64 => visit_f64: f64, "a number";
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SettingsError> {
        // Empty settings never get here: they are left out, so serde makes them `None`.
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, SettingsError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, SettingsError> {
        // A list setting is comma-separated: `a, b, c`; blank items are dropped.
        let items: Vec<&str> = self
            .value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .collect();
        visitor.visit_seq(Items {
            key: self.key,
            items: items.into_iter(),
        })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, SettingsError> {
        visitor.visit_enum(self.value.trim().into_deserializer())
    }

    serde::forward_to_deserialize_any! {
        i128 u128 char str string bytes byte_buf unit unit_struct tuple tuple_struct map struct
        identifier ignored_any
    }
}

struct Items<'a> {
    key: &'a str,
    items: std::vec::IntoIter<&'a str>,
}

impl<'de> SeqAccess<'de> for Items<'de> {
    type Error = SettingsError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, SettingsError> {
        match self.items.next() {
            Some(value) => seed
                .deserialize(Value {
                    key: self.key,
                    value,
                })
                .map(Some),
            None => Ok(None),
        }
    }
}
