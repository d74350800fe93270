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

/// Prints rows as aligned columns.
pub(crate) fn table(header: &[&str], rows: &[Vec<String>]) {
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
