//! Compact, immutable JSON text shared between records.

use std::fmt;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

/// A JSON document kept as its (validated) text.
///
/// Inputs, outputs and snapshots are stored this way: a few dozen bytes
/// instead of a tree of maps, and cloning only bumps a reference count.
#[derive(Clone, PartialEq, Eq)]
pub struct Json(Arc<str>);

impl Json {
    /// Serializes `value` to compact JSON.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        serde_json::to_string(value).map(|s| Self(s.into()))
    }

    /// Parses and validates JSON text.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(text)?;
        Ok(Self(raw.get().into()))
    }

    /// Wraps text this crate produced itself and knows to be valid JSON.
    pub(crate) fn raw(text: String) -> Self {
        Self(text.into())
    }

    /// The JSON `null`.
    pub fn null() -> Self {
        Self("null".into())
    }

    /// The JSON text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Parses the text into a [`Value`].
    pub fn value(&self) -> Value {
        // The text was produced by serde_json or validated on entry, so
        // parsing cannot fail; `Null` is an unreachable fallback.
        serde_json::from_str(&self.0).unwrap_or(Value::Null)
    }

    /// Heap bytes held by this document.
    pub fn heap_size(&self) -> usize {
        self.0.len()
    }
}

impl From<&Value> for Json {
    fn from(value: &Value) -> Self {
        // `to_string` writes into a byte buffer; `Display` would go through
        // the formatting machinery, twice as slow for small documents.
        Self(
            serde_json::to_string(value)
                .unwrap_or_else(|_| "null".to_owned())
                .into(),
        )
    }
}

impl fmt::Debug for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Display for Json {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Serialize for Json {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let raw = RawValue::from_string(self.0.to_string()).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

/// Deserializes a present field as `Some`, even when it is JSON `null`
/// (serde's default reads `null` as `None`), so that a stored `null` value
/// reads back as it was written. Absent fields are `None` via `default`.
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Json>, D::Error> {
    Json::deserialize(d).map(Some)
}

impl<'de> Deserialize<'de> for Json {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer).map_err(D::Error::custom)?;
        Ok(Self(raw.get().into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_serde() {
        let json = Json::encode(&serde_json::json!({"a": [1, 2]})).unwrap();
        let text = serde_json::to_string(&serde_json::json!({"x": json})).unwrap();
        assert_eq!(text, r#"{"x":{"a":[1,2]}}"#);
        let back: Json = serde_json::from_str(r#" {"a": 1} "#).unwrap();
        assert_eq!(back.value(), serde_json::json!({"a": 1}));
        assert!(Json::parse("{nope").is_err());
    }
}
