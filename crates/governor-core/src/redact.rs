//! Redaction of sensitive fields, applied before anything leaves the call.

use serde_json::Value;

/// The text that replaces a redacted value (the seed's marker).
pub const REDACTED: &str = "***REDACTED***";

/// Replaces the values of sensitive keys, at any depth and inside arrays,
/// matching key names case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    fields: Vec<String>,
    /// The bytes a possible match starts with: each field's first byte in
    /// both cases, and `\` (an escape may hide a name).
    starts: ByteSet,
    /// The same bytes when there are at most three (one short field name
    /// in both cases and `\`), for a vectorised search; empty otherwise.
    few_starts: Few,
    /// A field holds a byte JSON escapes: any text may hold it.
    escaped: bool,
}

/// Up to three bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Few {
    bytes: [u8; 3],
    len: u8,
}

impl Few {
    /// `set`'s bytes, if it has one to three.
    fn of(set: ByteSet) -> Self {
        let mut few = Few::default();
        for b in 0..=u8::MAX {
            if set.contains(b) {
                if usize::from(few.len) == few.bytes.len() {
                    return Few::default();
                }
                few.bytes[usize::from(few.len)] = b;
                few.len += 1;
            }
        }
        few
    }
}

/// A set of bytes, one bit each.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct ByteSet([u64; 4]);

impl ByteSet {
    fn insert(&mut self, b: u8) {
        self.0[usize::from(b >> 6)] |= 1 << (b & 63);
    }

    fn contains(self, b: u8) -> bool {
        self.0[usize::from(b >> 6)] >> (b & 63) & 1 != 0
    }
}

impl Redactor {
    /// A redactor for these field names.
    pub fn new<I, S>(fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut r = Self::default();
        r.extend(fields);
        r
    }

    /// Adds field names (duplicates are ignored).
    pub fn extend<I, S>(&mut self, fields: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        for f in fields {
            let f = f.as_ref().to_ascii_lowercase();
            if !f.is_empty() && !self.fields.contains(&f) {
                let first = f.as_bytes()[0];
                self.starts.insert(first);
                self.starts.insert(first.to_ascii_uppercase());
                self.starts.insert(b'\\');
                self.escaped |= f.bytes().any(|b| b == b'"' || b == b'\\' || b < 0x20);
                self.fields.push(f);
            }
        }
        self.few_starts = Few::of(self.starts);
    }

    /// This redactor with `other`'s fields added; borrowed when `other`
    /// adds none (the usual case: one of the two is empty), so a call
    /// copies no field list.
    pub fn merged<'r>(&'r self, other: &Redactor) -> std::borrow::Cow<'r, Redactor> {
        if other.fields.iter().all(|f| self.fields.contains(f)) {
            std::borrow::Cow::Borrowed(self)
        } else {
            let mut merged = self.clone();
            merged.extend(&other.fields);
            std::borrow::Cow::Owned(merged)
        }
    }

    /// Whether nothing is redacted.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    /// The field names, lower-cased.
    pub fn fields(&self) -> &[String] {
        &self.fields
    }

    fn is_sensitive(&self, key: &str) -> bool {
        self.fields.iter().any(|f| f.eq_ignore_ascii_case(key))
    }

    /// Redacts `value` in place; returns whether anything changed.
    pub fn redact_in_place(&self, value: &mut Value) -> bool {
        if self.is_empty() {
            return false;
        }
        match value {
            Value::Object(map) => {
                let mut changed = false;
                for (k, v) in map.iter_mut() {
                    if self.is_sensitive(k) {
                        *v = Value::String(REDACTED.into());
                        changed = true;
                    } else {
                        changed |= self.redact_in_place(v);
                    }
                }
                changed
            }
            Value::Array(items) => items
                .iter_mut()
                .fold(false, |c, v| self.redact_in_place(v) | c),
            _ => false,
        }
    }

    /// Whether JSON text may hold a sensitive key, so that it has to be
    /// parsed and redacted. serde_json writes every key as it is, escaping
    /// only quotes, backslashes and control characters, so a field that
    /// appears nowhere in the text (ignoring ASCII case) is in no key.
    /// Text with `\u` escapes, and fields that would be escaped, always
    /// count as a possible match.
    pub(crate) fn may_match(&self, json_text: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        if self.escaped {
            return true;
        }
        // One pass over the text, comparing only where a field (or an
        // escape) could start: a substring search per field set up a
        // searcher per call and cost more than the rest of the check.
        let text = json_text.as_bytes();
        let at = |i: usize| self.matches_at(&text[i..]);
        match self.few_starts {
            Few { len: 1, bytes } => memchr::memchr_iter(bytes[0], text).any(at),
            Few { len: 2, bytes } => memchr::memchr2_iter(bytes[0], bytes[1], text).any(at),
            Few { len: 3, bytes } => {
                memchr::memchr3_iter(bytes[0], bytes[1], bytes[2], text).any(at)
            }
            _ => (0..text.len()).any(|i| self.starts.contains(text[i]) && at(i)),
        }
    }

    /// Whether `text` starts with a `\u` escape or a field (ignoring
    /// ASCII case).
    fn matches_at(&self, text: &[u8]) -> bool {
        if text.starts_with(b"\\u") {
            return true;
        }
        self.fields.iter().any(|f| {
            text.get(..f.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(f.as_bytes()))
        })
    }

    /// A redacted copy of `value`.
    pub fn redact(&self, value: &Value) -> Value {
        let mut copy = value.clone();
        self.redact_in_place(&mut copy);
        copy
    }

    /// Redacts free text (an error message) by masking `key=value`,
    /// `key: value` and `"key":"value"` fragments for sensitive keys.
    pub fn redact_text(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_owned();
        }
        let lower = text.to_ascii_lowercase();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        while i < text.len() {
            let hit = self.fields.iter().find_map(|f| {
                lower[i..]
                    .starts_with(f.as_str())
                    .then(|| value_span(text, i + f.len()))?
            });
            match hit {
                Some((start, end)) => {
                    out.push_str(&text[i..start]);
                    out.push_str(REDACTED);
                    i = end;
                }
                None => {
                    let ch = text[i..].chars().next().map_or(1, char::len_utf8);
                    out.push_str(&text[i..i + ch]);
                    i += ch;
                }
            }
        }
        out
    }
}

/// After a key ending at `at`, finds the span of its value if the key is
/// followed by `=`, `:` or `":"`.
///
/// A quoted value ends at its closing quote (escaped quotes included). An
/// unquoted value after `:` runs to the end of the field: the line, or a
/// `,`, `;`, `&` or `}`; spaces do not end it (`Authorization: Bearer
/// abc123` is a header whose whole value is the secret). After `=`
/// (`key=value` pairs) a space ends it too. Masking too much is the safe
/// mistake.
fn value_span(text: &str, at: usize) -> Option<(usize, usize)> {
    let rest = &text[at..];
    let sep = rest.find(|c: char| !matches!(c, '"' | '\'' | ' ' | ':' | '='))?;
    let seps = &rest[..sep];
    if !seps.contains(':') && !seps.contains('=') {
        return None;
    }
    let start = at + sep;
    let quote = text[..start]
        .chars()
        .next_back()
        .filter(|c| matches!(c, '"' | '\''));
    let end = match quote {
        Some(q) => closing_quote(&text[start..], q),
        None if seps.contains(':') => text[start..].find(['\n', '\r', ',', ';', '&', '}', '"']),
        None => text[start..]
            .find(|c: char| c.is_whitespace() || matches!(c, ',' | ';' | '&' | '}' | '"')),
    };
    Some((start, end.map_or(text.len(), |e| start + e)))
}

/// Where the quote `q` that closes `text` is (a backslash escapes one).
fn closing_quote(text: &str, q: char) -> Option<usize> {
    let mut escaped = false;
    text.char_indices().find_map(|(i, c)| {
        let closes = c == q && !escaped;
        escaped = c == '\\' && !escaped;
        closes.then_some(i)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_nested_keys_in_arrays_case_insensitively() {
        let r = Redactor::new(["ssn", "Password"]);
        let v = json!({
            "user": {"SSN": "123", "name": "x"},
            "list": [{"password": "p"}, {"ok": 1}],
            "tuple": ["a", {"Ssn": 9}],
        });
        let out = r.redact(&v);
        assert_eq!(out["user"]["SSN"], REDACTED);
        assert_eq!(out["user"]["name"], "x");
        assert_eq!(out["list"][0]["password"], REDACTED);
        assert_eq!(out["tuple"][1]["Ssn"], REDACTED);
        assert_eq!(v["user"]["SSN"], "123", "original untouched");
    }

    #[test]
    fn text_without_a_sensitive_name_needs_no_parsing() {
        let r = Redactor::new(["ssn"]);
        assert!(!r.may_match(r#"{"amount":5,"recipient":"Acme"}"#));
        assert!(r.may_match(r#"{"user":{"SSN":"1"}}"#));
        assert!(
            r.may_match(r#"{"note":"no ssn here"}"#),
            "a value may match too"
        );
        assert!(r.may_match(r#"{"\u0073sn":"1"}"#), "an escaped key");
        assert!(Redactor::new([r#"a"b"#]).may_match(r#"{"a\"b":1}"#));
        assert!(!Redactor::default().may_match(r#"{"ssn":1}"#));
        assert!(r.may_match("sSn"), "the whole text");
        assert!(r.may_match(r#"{"a":"xSSN"#), "at the very end");
        assert!(!r.may_match("ss"), "shorter than the name");
        assert!(!r.may_match(r#"{"s":"sn","n":"ss"}"#), "parts apart");
        assert!(
            r.may_match(r#"{"a":"\\u"}"#),
            "a backslash before a u counts"
        );
        assert!(!r.may_match(r#"{"a":"\\"}"#), "a backslash alone");
    }

    #[test]
    fn the_quick_check_agrees_with_a_plain_search() {
        // Five start bytes (the byte-set scan), three (`s`, `S`, `\`:
        // the vectorised search for three) and two (`_`, `\`).
        for fields in [&["ssn", "Nu"][..], &["ssn"], &["_n"]] {
            let r = Redactor::new(fields);
            let plain = |text: &str| {
                let lower = text.to_ascii_lowercase();
                text.contains("\\u") || r.fields().iter().any(|f| lower.contains(f.as_str()))
            };
            let alphabet = ['s', 'S', 'n', 'N', 'u', '_', '\\', '"'];
            let mut texts = vec![String::new()];
            for _ in 0..5 {
                texts = texts
                    .iter()
                    .flat_map(|t| alphabet.iter().map(move |c| format!("{t}{c}")))
                    .collect();
                for t in &texts {
                    assert_eq!(r.may_match(t), plain(t), "{fields:?} {t:?}");
                }
            }
        }
    }

    #[test]
    fn redacts_whole_subtrees() {
        let r = Redactor::new(["card"]);
        let out = r.redact(&json!({"card": {"number": "4111", "cvv": 1}}));
        assert_eq!(out, json!({"card": REDACTED}));
    }

    #[test]
    fn redacts_key_value_fragments_in_text() {
        let r = Redactor::new(["ssn", "password"]);
        assert_eq!(
            r.redact_text("bad ssn=123-45 for bob"),
            format!("bad ssn={REDACTED} for bob")
        );
        assert_eq!(
            r.redact_text(r#"{"password":"hunter2","x":1}"#),
            format!(r#"{{"password":"{REDACTED}","x":1}}"#)
        );
        assert_eq!(
            r.redact_text("password is required"),
            "password is required"
        );
    }

    #[test]
    fn a_header_value_is_masked_to_its_end() {
        let r = Redactor::new(["authorization", "password"]);
        assert_eq!(
            r.redact_text("Authorization: Bearer abc123\nnext line"),
            format!("Authorization: {REDACTED}\nnext line")
        );
        assert_eq!(
            r.redact_text("password: two words, user: bob"),
            format!("password: {REDACTED}, user: bob")
        );
        assert_eq!(
            r.redact_text(r#"{"password":"a \"quoted\" one","x":1}"#),
            format!(r#"{{"password":"{REDACTED}","x":1}}"#)
        );
        assert_eq!(
            r.redact_text("url?password=s3cr3t&x=1"),
            format!("url?password={REDACTED}&x=1")
        );
    }
}
