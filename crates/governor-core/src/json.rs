//! Compact, immutable JSON text shared between records.

use std::fmt;
use std::sync::{Arc, OnceLock};

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

/// Largest buffer kept between encodings; a rare huge document does not
/// pin its memory for the thread's lifetime.
const KEPT_BUFFER_BYTES: usize = 64 << 10;

thread_local! {
    /// The buffer documents are written into before they are copied into
    /// their shared allocation: one allocation per document instead of a
    /// growing `String` and then the copy.
    static BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(Vec::with_capacity(512));
    /// The same for documents this crate writes as text.
    static TEXT: std::cell::RefCell<String> = std::cell::RefCell::new(String::with_capacity(512));
}

/// Writes `value` as JSON through the thread's buffer.
fn write_shared<T: Serialize + ?Sized>(value: &T) -> Result<Arc<str>, serde_json::Error> {
    let through_buffer = BUFFER.with(|cell| {
        // A nested call (a Serialize impl encoding Json) finds the buffer
        // in use and takes the plain path.
        let mut buf = cell.try_borrow_mut().ok()?;
        buf.clear();
        let written = serde_json::to_writer(&mut *buf, value)
            .map(|()| std::str::from_utf8(&buf).map(Arc::<str>::from));
        if buf.capacity() > KEPT_BUFFER_BYTES {
            *buf = Vec::with_capacity(512);
        }
        Some(written)
    });
    match through_buffer {
        // serde_json writes UTF-8; the check cannot fail.
        Some(Ok(Ok(text))) => Ok(text),
        Some(Err(e)) => Err(e),
        Some(Ok(Err(_))) | None => serde_json::to_string(value).map(Arc::from),
    }
}

impl Json {
    /// Serializes `value` to compact JSON.
    pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Self, serde_json::Error> {
        write_shared(value).map(Self)
    }

    /// Parses and validates JSON text.
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        let raw: &RawValue = serde_json::from_str(text)?;
        Ok(Self(raw.get().into()))
    }

    /// Builds text this crate knows to be valid JSON with `build`, in the
    /// thread's buffer, then copies it into one shared allocation.
    pub(crate) fn raw_with(build: impl FnOnce(&mut String)) -> Self {
        TEXT.with(|cell| match cell.try_borrow_mut() {
            Ok(mut text) => {
                text.clear();
                build(&mut text);
                let json = Self(Arc::from(text.as_str()));
                if text.capacity() > KEPT_BUFFER_BYTES {
                    *text = String::with_capacity(512);
                }
                json
            }
            Err(_) => {
                let mut text = String::new();
                build(&mut text);
                Self(text.into())
            }
        })
    }

    /// Text written by serde_json (so valid UTF-8 and valid JSON).
    pub(crate) fn from_utf8(bytes: &[u8]) -> Self {
        match std::str::from_utf8(bytes) {
            Ok(text) => Self(Arc::from(text)),
            Err(_) => Self::null(),
        }
    }

    /// The JSON `null` (shared: no allocation; one copy per thread, so
    /// callers on two cores do not share its reference count).
    pub fn null() -> Self {
        static NULL: crate::per_thread::PerThread<Json> = crate::per_thread::PerThread::new();
        NULL.get(|| Json("null".into())).clone()
    }

    /// The same text in an allocation of its own.
    pub(crate) fn copy(&self) -> Self {
        Self(Arc::from(&*self.0))
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

    /// Reads the line holding the document's shared count, so that a
    /// drop coming soon finds it in the cache (see the memory store's
    /// eviction).
    pub(crate) fn touch(&self) -> usize {
        Arc::strong_count(&self.0)
    }

    /// Heap bytes held by this document.
    pub fn heap_size(&self) -> usize {
        self.0.len()
    }
}

impl From<&Value> for Json {
    fn from(value: &Value) -> Self {
        // A byte writer, not `Display`, which would go through the
        // formatting machinery (twice as slow for small documents).
        write_shared(value).map_or_else(|_| Self::null(), Self)
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

/// A JSON document held as text, with its parsed [`Value`] made the first
/// time something asks for it (a policy, a hook).
///
/// A governed call with no policy reading its arguments never builds a
/// tree of maps for them: the text is what gets stored.
#[derive(Debug)]
pub(crate) struct Doc {
    text: Json,
    value: OnceLock<Arc<Value>>,
}

impl Doc {
    /// A document from its text.
    pub(crate) fn from_text(text: Json) -> Self {
        Self {
            text,
            value: OnceLock::new(),
        }
    }

    /// A document from its text and the value it parses to.
    pub(crate) fn from_parts(text: Json, value: Value) -> Self {
        Self {
            text,
            value: OnceLock::from(Arc::new(value)),
        }
    }

    /// A document from its text and the shared value it parses to.
    pub(crate) fn from_shared(text: Json, value: Arc<Value>) -> Self {
        Self {
            text,
            value: OnceLock::from(value),
        }
    }

    /// Takes the parsed value out, if it was made.
    pub(crate) fn take_value(&mut self) -> Option<Arc<Value>> {
        self.value.take()
    }

    /// A document from its value.
    pub(crate) fn from_value(value: Value) -> Self {
        Self::from_parts(Json::from(&value), value)
    }

    /// The text.
    pub(crate) fn text(&self) -> &Json {
        &self.text
    }

    /// The parsed value.
    pub(crate) fn value(&self) -> &Arc<Value> {
        self.value.get_or_init(|| Arc::new(self.text.value()))
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

    /// Encodes its inner value while being encoded, as a user's
    /// `Serialize` impl might.
    struct Nested(serde_json::Value);

    impl Serialize for Nested {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let inner = Json::encode(&self.0).map_err(serde::ser::Error::custom)?;
            s.serialize_str(inner.as_str())
        }
    }

    #[test]
    fn the_shared_buffer_handles_nesting_and_large_documents() {
        let nested = Json::encode(&Nested(serde_json::json!({"k": "v"}))).unwrap();
        assert_eq!(nested.as_str(), r#""{\"k\":\"v\"}""#);
        let big = "x".repeat(KEPT_BUFFER_BYTES * 2);
        let doc = Json::from(&serde_json::Value::String(big.clone()));
        assert_eq!(doc.as_str().len(), big.len() + 2);
        let small = Json::from(&serde_json::json!([1]));
        assert_eq!(small.as_str(), "[1]");
        let built = Json::raw_with(|t| t.push_str("{\"a\":1}"));
        assert_eq!(built.value(), serde_json::json!({"a": 1}));
        assert_eq!(Json::null().as_str(), "null");
    }
}
