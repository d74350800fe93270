//! How an action's request reads to the person deciding it: a title
//! ("Wire {amount:currency(EUR)} to {to}"), the arguments to show first,
//! a currency or unit per argument, and what approving does.
//!
//! The console formats numbers in the viewer's locale from this
//! declaration; [`Display::title`] renders the same title as plain text
//! (thousands separators, currency symbols) for channels without a
//! browser: the CLI, email and chat.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use thiserror::Error;

use crate::redact::REDACTED;

/// What is wrong with a display declaration.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DisplayError {
    /// A `{` with no `}` after it.
    #[error("the title `{title}` opens `{{` at byte {at} without closing it")]
    Unclosed {
        /// The template.
        title: String,
        /// Where the `{` is.
        at: usize,
    },
    /// A `}` that closes nothing (write `}}` for a brace).
    #[error(
        "the title `{title}` has a `}}` at byte {at} that closes nothing (write `}}}}` for a brace)"
    )]
    Unopened {
        /// The template.
        title: String,
        /// Where the `}` is.
        at: usize,
    },
    /// `{}`: a placeholder without an argument name.
    #[error("the title `{title}` has a placeholder without an argument name")]
    EmptyPlaceholder {
        /// The template.
        title: String,
    },
    /// A format other than `currency(CODE)`, `unit(TEXT)` or `number`.
    #[error("`{format}` (for `{field}`) is not a format: use currency(EUR), unit(kg) or number")]
    UnknownFormat {
        /// The argument.
        field: String,
        /// The format as written.
        format: String,
    },
    /// A currency that is not three ASCII letters.
    #[error("`{code}` (for `{field}`) is not an ISO 4217 currency code such as EUR")]
    BadCurrency {
        /// The argument.
        field: String,
        /// The code as written.
        code: String,
    },
}

/// How one argument is shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DisplayField {
    /// The argument's name (a dotted path reaches into objects:
    /// `recipient.name`).
    pub name: String,
    /// A human label (default: the name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// An ISO 4217 currency code: the value is an amount of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// A unit written after the value (`kg`, `seats`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
}

impl DisplayField {
    /// Shows the argument `name` as it is.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            label: None,
            currency: None,
            unit: None,
        }
    }

    /// Labels it.
    pub fn label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Shows it as an amount of `code` (ISO 4217: `EUR`, `USD`).
    pub fn currency(mut self, code: impl Into<String>) -> Self {
        self.currency = Some(code.into().to_ascii_uppercase());
        self
    }

    /// Writes `unit` after it.
    pub fn unit(mut self, unit: impl Into<String>) -> Self {
        self.unit = Some(unit.into());
        self
    }

    fn format(&self) -> Format {
        match (&self.currency, &self.unit) {
            (Some(c), _) => Format::Currency(c.clone()),
            (None, Some(u)) => Format::Unit(u.clone()),
            (None, None) => Format::Plain,
        }
    }
}

/// How an action's requests read to an approver. Declared in code with
/// [`ActionBuilder::display`](crate::ActionBuilder::display) or in a
/// policy file's `displays:` list.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Display {
    /// A one-line title with `{argument}` placeholders, optionally
    /// formatted: `{amount:currency(EUR)}`, `{weight:unit(kg)}`,
    /// `{count:number}`. `{{` and `}}` are literal braces.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The arguments to show first, in order, each with its format; the
    /// others follow as a list.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<DisplayField>,
    /// What approving does, in the approver's words ("the transfer is
    /// sent immediately").
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_approve: Option<String>,
}

/// A value's format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Format {
    Plain,
    Number,
    Currency(String),
    Unit(String),
}

/// A piece of a parsed title.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field {
        name: String,
        format: Option<Format>,
    },
}

impl Display {
    /// A display with this title template.
    pub fn titled(title: impl Into<String>) -> Self {
        Self {
            title: Some(title.into()),
            ..Self::default()
        }
    }

    /// Shows `field` first (after those already added).
    pub fn field(mut self, field: DisplayField) -> Self {
        self.fields.push(field);
        self
    }

    /// Says what approving does.
    pub fn on_approve(mut self, text: impl Into<String>) -> Self {
        self.on_approve = Some(text.into());
        self
    }

    /// Checks the title template and every currency code.
    pub fn check(&self) -> Result<(), DisplayError> {
        for f in &self.fields {
            if let Some(code) = &f.currency {
                check_currency(&f.name, code)?;
            }
        }
        if let Some(title) = &self.title {
            parse(title)?;
        }
        Ok(())
    }

    /// The title for `arguments`, as plain text: numbers with thousands
    /// separators, amounts with their currency. `None` without a title
    /// (or with one that does not parse, which [`Display::check`] rejects
    /// when the display is declared).
    pub fn title(&self, arguments: &Value) -> Option<String> {
        let pieces = parse(self.title.as_deref()?).ok()?;
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(t) => out.push_str(&t),
                Piece::Field { name, format } => {
                    let format = format
                        .or_else(|| {
                            self.fields
                                .iter()
                                .find(|f| f.name == name)
                                .map(|f| f.format())
                        })
                        .unwrap_or(Format::Plain);
                    match lookup(arguments, &name) {
                        Some(v) => out.push_str(&render(v, &format)),
                        None => out.push('—'),
                    }
                }
            }
        }
        Some(out)
    }
}

/// The arguments as (label, text) rows for channels without a browser
/// (email, chat, a confirmation page): the fields `display` declares
/// first, in order and formatted, then every other argument by name.
pub fn rows(display: Option<&Display>, arguments: &Value) -> Vec<(String, String)> {
    let fields = display.map_or(&[][..], |d| &d.fields[..]);
    let mut rows: Vec<(String, String)> = fields
        .iter()
        .filter_map(|f| {
            let value = lookup(arguments, &f.name)?;
            let label = f.label.clone().unwrap_or_else(|| f.name.clone());
            Some((label, render(value, &f.format())))
        })
        .collect();
    if let Value::Object(map) = arguments {
        let shown = |name: &str| {
            fields.iter().any(|f| {
                f.name == name
                    || f.name
                        .strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with('.'))
            })
        };
        rows.extend(
            map.iter()
                .filter(|(name, _)| !shown(name))
                .map(|(name, value)| (name.clone(), render(value, &Format::Plain))),
        );
    }
    rows
}

/// `s` safe as HTML text and as a quoted attribute value: for pages and
/// emails rendered without a template engine.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The value at a dotted path of `arguments`.
pub fn lookup<'v>(arguments: &'v Value, path: &str) -> Option<&'v Value> {
    path.split('.').try_fold(arguments, |v, key| match v {
        Value::Object(m) => m.get(key),
        Value::Array(a) => key.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    })
}

fn check_currency(field: &str, code: &str) -> Result<(), DisplayError> {
    if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
        Ok(())
    } else {
        Err(DisplayError::BadCurrency {
            field: field.to_owned(),
            code: code.to_owned(),
        })
    }
}

fn parse(title: &str) -> Result<Vec<Piece>, DisplayError> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut chars = title.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().is_some_and(|&(_, n)| n == '{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().is_some_and(|&(_, n)| n == '}') => {
                chars.next();
                text.push('}');
            }
            '}' => {
                return Err(DisplayError::Unopened {
                    title: title.to_owned(),
                    at,
                });
            }
            '{' => {
                let end = title[at..]
                    .find('}')
                    .ok_or_else(|| DisplayError::Unclosed {
                        title: title.to_owned(),
                        at,
                    })?;
                let inside = &title[at + 1..at + end];
                while chars.peek().is_some_and(|&(i, _)| i <= at + end) {
                    chars.next();
                }
                if !text.is_empty() {
                    pieces.push(Piece::Text(std::mem::take(&mut text)));
                }
                pieces.push(placeholder(title, inside)?);
            }
            c => text.push(c),
        }
    }
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    Ok(pieces)
}

fn placeholder(title: &str, inside: &str) -> Result<Piece, DisplayError> {
    let (name, format) = match inside.split_once(':') {
        Some((n, f)) => (n.trim(), Some(f.trim())),
        None => (inside.trim(), None),
    };
    if name.is_empty() {
        return Err(DisplayError::EmptyPlaceholder {
            title: title.to_owned(),
        });
    }
    let format = format.map(|f| parse_format(name, f)).transpose()?;
    Ok(Piece::Field {
        name: name.to_owned(),
        format,
    })
}

fn parse_format(field: &str, format: &str) -> Result<Format, DisplayError> {
    let unknown = || DisplayError::UnknownFormat {
        field: field.to_owned(),
        format: format.to_owned(),
    };
    if format == "number" {
        return Ok(Format::Number);
    }
    let (kind, arg) = format.split_once('(').ok_or_else(unknown)?;
    let arg = arg.strip_suffix(')').ok_or_else(unknown)?.trim();
    match kind.trim() {
        "currency" => {
            let code = arg.to_ascii_uppercase();
            check_currency(field, &code)?;
            Ok(Format::Currency(code))
        }
        "unit" if !arg.is_empty() => Ok(Format::Unit(arg.to_owned())),
        _ => Err(unknown()),
    }
}

/// One value as text in `format`.
fn render(value: &Value, format: &Format) -> String {
    let text = match value {
        Value::String(s) => return masked(s).unwrap_or_else(|| s.clone()),
        Value::Number(n) => n.as_f64(),
        Value::Null => return "—".into(),
        other => return other.to_string(),
    };
    let Some(n) = text else {
        return value.to_string();
    };
    match format {
        Format::Plain | Format::Number => grouped(n, None),
        Format::Unit(u) => format!("{} {u}", grouped(n, None)),
        Format::Currency(code) => {
            let digits = if matches!(code.as_str(), "JPY" | "KRW" | "ISK") {
                0
            } else {
                2
            };
            let amount = grouped(n, Some(digits));
            match symbol(code) {
                Some(s) if n < 0.0 => format!("-{s}{}", amount.trim_start_matches('-')),
                Some(s) => format!("{s}{amount}"),
                None => format!("{code} {amount}"),
            }
        }
    }
}

/// A masked value (`***REDACTED***1234`) as an approver reads it.
fn masked(s: &str) -> Option<String> {
    s.strip_prefix(REDACTED).map(|kept| format!("••••{kept}"))
}

fn symbol(code: &str) -> Option<&'static str> {
    Some(match code {
        "USD" => "$",
        "EUR" => "€",
        "GBP" => "£",
        "JPY" => "¥",
        "INR" => "₹",
        _ => return None,
    })
}

/// `n` with comma thousands separators and `decimals` places (`None`: as
/// many as it has, up to 6).
fn grouped(n: f64, decimals: Option<usize>) -> String {
    let fixed = match decimals {
        Some(d) => format!("{:.*}", d, n.abs()),
        None => {
            let s = format!("{:.6}", n.abs());
            s.trim_end_matches('0').trim_end_matches('.').to_owned()
        }
    };
    let (int, frac) = fixed.split_once('.').unwrap_or((&fixed, ""));
    let mut out = String::with_capacity(fixed.len() + int.len() / 3 + 1);
    if n < 0.0 && n.abs() > 0.0 {
        out.push('-');
    }
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if !frac.is_empty() {
        out.push('.');
        out.push_str(frac);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn html_is_escaped() {
        assert_eq!(
            escape_html("<script>alert('x')</script> & \"y\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;y&quot;"
        );
    }

    #[test]
    fn rows_show_declared_fields_first_then_the_rest() {
        let d = Display::default()
            .field(DisplayField::new("amount").currency("EUR").label("Amount"))
            .field(DisplayField::new("to.name"));
        let args = json!({"to": {"name": "Globex"}, "amount": 1234.5, "iban": format!("{REDACTED}4321"), "memo": "rent"});
        assert_eq!(
            rows(Some(&d), &args),
            vec![
                ("Amount".to_owned(), "€1,234.50".to_owned()),
                ("to.name".to_owned(), "Globex".to_owned()),
                ("iban".to_owned(), "••••4321".to_owned()),
                ("memo".to_owned(), "rent".to_owned()),
            ]
        );
        assert_eq!(
            rows(None, &json!({"n": 1000})),
            vec![("n".to_owned(), "1,000".to_owned())]
        );
    }

    #[test]
    fn titles_format_amounts_units_and_masked_values() {
        let d = Display::titled("Wire {amount:currency(EUR)} to {to} ({iban})")
            .field(DisplayField::new("weight").unit("kg"));
        let args = json!({"amount": 93231, "to": "Globex", "iban": format!("{REDACTED}4321")});
        assert_eq!(
            d.title(&args).as_deref(),
            Some("Wire €93,231.00 to Globex (••••4321)")
        );
        let d = Display::titled("{weight} of {what:unit(x)} and {n:number} {{literal}}")
            .field(DisplayField::new("weight").unit("kg"));
        let args = json!({"weight": 1234567.5, "n": -1000, "what": 3});
        assert_eq!(
            d.title(&args).as_deref(),
            Some("1,234,567.5 kg of 3 x and -1,000 {literal}")
        );
        let d = Display::titled("Pay {amount:currency(chf)} to {missing}");
        assert_eq!(
            d.title(&json!({"amount": 5})).as_deref(),
            Some("Pay CHF 5.00 to —")
        );
    }

    #[test]
    fn declarations_with_mistakes_are_named() {
        let bad = [
            ("Wire {amount", "without closing"),
            ("Wire }", "closes nothing"),
            ("Wire {}", "without an argument name"),
            ("Wire {amount:money}", "is not a format"),
            ("Wire {amount:currency(EURO)}", "ISO 4217"),
        ];
        for (title, says) in bad {
            let e = Display::titled(title).check().unwrap_err();
            assert!(e.to_string().contains(says), "{title}: {e}");
        }
        let e = Display::default()
            .field(DisplayField::new("a").currency("euros"))
            .check()
            .unwrap_err();
        assert!(matches!(e, DisplayError::BadCurrency { .. }), "{e}");
        assert!(Display::titled("Wire {a.b:currency(usd)}").check().is_ok());
    }

    #[test]
    fn dotted_paths_reach_into_objects_and_arrays() {
        let args = json!({"to": {"name": "Globex", "ids": [7, 8]}});
        assert_eq!(lookup(&args, "to.name"), Some(&json!("Globex")));
        assert_eq!(lookup(&args, "to.ids.1"), Some(&json!(8)));
        assert_eq!(lookup(&args, "to.nope"), None);
    }
}
