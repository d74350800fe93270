//! Redaction of sensitive fields, applied before anything leaves the call.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The text that replaces a redacted value (the seed's marker). A masked
/// value is this marker followed by the part it keeps
/// (`***REDACTED***4321`).
pub const REDACTED: &str = "***REDACTED***";

/// The part of a sensitive value that stays visible, so an approver can
/// check it against an invoice without seeing the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mask {
    /// The last four characters other than spaces, for values of at
    /// least eight (an IBAN, a card or phone number); shorter values are
    /// redacted whole.
    Last4,
    /// The domain of an email address (`***REDACTED***@example.com`);
    /// anything else is redacted whole.
    Domain,
}

impl Mask {
    /// The mask's name in policy files (`last4`, `domain`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Last4 => "last4",
            Self::Domain => "domain",
        }
    }

    /// `value` masked: the marker and the kept part, or the marker alone
    /// when keeping a part would show too much.
    pub fn apply(self, value: &Value) -> Value {
        let text = match value {
            // Already masked (or redacted): masking is idempotent.
            Value::String(s) if s.starts_with(REDACTED) => return value.clone(),
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            _ => return Value::String(REDACTED.into()),
        };
        let kept = match self {
            // Spaces are grouping (`DE89 3704 …`), not characters.
            Self::Last4 => {
                let chars: Vec<char> = text.chars().filter(|c| !c.is_whitespace()).collect();
                (chars.len() >= 8).then(|| chars[chars.len() - 4..].iter().collect::<String>())
            }
            Self::Domain => text
                .rsplit_once('@')
                .filter(|(local, domain)| !local.is_empty() && !domain.is_empty())
                .map(|(_, domain)| format!("@{domain}")),
        };
        Value::String(format!("{REDACTED}{}", kept.unwrap_or_default()))
    }
}

impl std::str::FromStr for Mask {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "last4" => Ok(Self::Last4),
            "domain" => Ok(Self::Domain),
            other => Err(format!("`{other}` is not a mask: use last4 or domain")),
        }
    }
}

/// Replaces the values of sensitive keys, at any depth and inside arrays,
/// matching key names case-insensitively.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redactor {
    fields: Vec<String>,
    /// Fields whose values keep a part ([`Mask`]), lower-cased; each is
    /// in `fields` too.
    masks: Vec<(String, Mask)>,
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

    /// Makes `field` sensitive with a value that keeps the part `mask`
    /// shows (replacing an earlier mask of the field).
    pub fn mask(&mut self, field: impl AsRef<str>, mask: Mask) {
        let field = field.as_ref().to_ascii_lowercase();
        self.extend([&field]);
        self.masks.retain(|(f, _)| *f != field);
        self.masks.push((field, mask));
    }

    /// The masked fields, lower-cased.
    pub fn masks(&self) -> &[(String, Mask)] {
        &self.masks
    }

    /// Adds `other`'s fields and masks (a mask of `self` stays).
    pub fn absorb(&mut self, other: &Redactor) {
        self.extend(&other.fields);
        for (f, m) in &other.masks {
            if !self.masks.iter().any(|(g, _)| g == f) {
                self.masks.push((f.clone(), *m));
            }
        }
    }

    /// This redactor with `other`'s fields added; borrowed when `other`
    /// adds none (the usual case: one of the two is empty), so a call
    /// copies no field list.
    pub fn merged<'r>(&'r self, other: &Redactor) -> std::borrow::Cow<'r, Redactor> {
        let adds_mask = other
            .masks
            .iter()
            .any(|(f, _)| !self.masks.iter().any(|(g, _)| g == f));
        if !adds_mask && other.fields.iter().all(|f| self.fields.contains(f)) {
            std::borrow::Cow::Borrowed(self)
        } else {
            let mut merged = self.clone();
            merged.absorb(other);
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
                        *v = match self.masks.iter().find(|(f, _)| f.eq_ignore_ascii_case(k)) {
                            Some((_, mask)) => mask.apply(v),
                            None => Value::String(REDACTED.into()),
                        };
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

    #[test]
    fn masks_keep_a_safe_part_and_never_the_whole_value() {
        let mut r = Redactor::new(["ssn"]);
        r.mask("IBAN", Mask::Last4);
        r.mask("email", Mask::Domain);
        let out = r.redact(&json!({
            "iban": "DE89 3704 0044 0532 0130 00",
            "Email": "cfo@acme.example",
            "ssn": "123-45-6789",
            "short": {"iban": "1234567"},
            "bad_email": [{"email": "no-at-sign"}, {"email": "@nolocal"}],
            "number": {"iban": 1234567890},
        }));
        assert_eq!(out["iban"], format!("{REDACTED}3000"));
        assert_eq!(out["Email"], format!("{REDACTED}@acme.example"));
        assert_eq!(out["ssn"], REDACTED);
        assert_eq!(
            out["short"]["iban"], REDACTED,
            "under 8 characters: all hidden"
        );
        assert_eq!(out["bad_email"][0]["email"], REDACTED);
        assert_eq!(out["bad_email"][1]["email"], REDACTED);
        assert_eq!(out["number"]["iban"], format!("{REDACTED}7890"));
        assert_eq!(
            r.redact(&out),
            out,
            "masking a masked value changes nothing"
        );
        assert!(r.may_match(r#"{"iban":"x"}"#));
        assert_eq!("last4".parse::<Mask>(), Ok(Mask::Last4));
        assert!(
            "first4"
                .parse::<Mask>()
                .unwrap_err()
                .contains("last4 or domain")
        );
    }

    #[test]
    fn merging_keeps_masks() {
        let plain = Redactor::new(["iban"]);
        let mut masked = Redactor::default();
        masked.mask("iban", Mask::Last4);
        let merged = plain.merged(&masked);
        assert!(matches!(merged, std::borrow::Cow::Owned(_)));
        assert_eq!(merged.masks(), &[("iban".to_owned(), Mask::Last4)]);
        assert!(matches!(
            masked.merged(&plain),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
