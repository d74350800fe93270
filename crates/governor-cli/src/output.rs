//! Plain-text rendering shared by the commands.

use agent_governor::Execution;
use chrono::{DateTime, Local, Utc};

pub(crate) fn time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S%.3f")
        .to_string()
}

pub(crate) fn duration(e: &Execution) -> String {
    e.finished_at
        .map(|f| {
            format!(
                "{:.1}ms",
                (f - e.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0
            )
        })
        .unwrap_or_else(|| "-".into())
}

/// `text` with its control characters (C0, DEL, C1) and bidirectional
/// overrides written as escapes (`\u{1b}`), so that text from an agent
/// cannot move the cursor, recolour or reorder what the terminal shows.
/// Line breaks are kept only if `keep_newlines`.
pub(crate) fn escape_controls(text: &str, keep_newlines: bool) -> std::borrow::Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && !(keep_newlines && c == '\n'))
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// A JSON value for a terminal: strings as they are (control characters
/// escaped), anything else as JSON.
pub(crate) fn text(v: &serde_json::Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), clean)
}

/// One value from an agent or approver, on one line.
pub(crate) fn clean(text: &str) -> String {
    escape_controls(text, false).into_owned()
}

/// Prints rows as aligned columns (every cell on one line).
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clean(c)).collect())
        .collect();
    let rows = &rows;
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out!("{}", padded.join("  ").trim_end());
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}
