//! Positions in the source text, for errors found after parsing.

/// Both parsers append " at line L column C"; the position is reported
/// separately.
pub(super) fn strip_position(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// Finds where an entry's keys are in the source text, for error
/// positions after parsing.
pub(super) struct Locator<'a> {
    lines: Vec<&'a str>,
    starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        // Lines that open an entry with its `type`, and where `type` is.
        // JSON Schemas inside entries have `type` keys too, nested deeper:
        // only the outermost column counts.
        let candidates: Vec<(usize, usize)> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| !l.trim_start().starts_with('#'))
            .filter_map(|(n, l)| {
                let t = l
                    .trim_start()
                    .trim_start_matches("- ")
                    .trim_start_matches('{')
                    .trim_start();
                (t.starts_with("type:") || t.starts_with("\"type\""))
                    .then(|| (n, l.len() - t.len()))
            })
            .collect();
        let outer = candidates.iter().map(|(_, c)| *c).min().unwrap_or(0);
        let starts = candidates
            .into_iter()
            .filter(|(_, c)| *c == outer)
            .map(|(n, _)| n)
            .collect();
        Self { lines, starts }
    }

    /// The position of `key` inside entry `i` (or the entry's start).
    /// Entries usually open with `type`; keys written before it are
    /// looked for on the few lines above.
    pub(super) fn key(&self, i: usize, key: &str) -> Option<(usize, usize)> {
        let start = *self.starts.get(i)?;
        let end = self.starts.get(i + 1).copied().unwrap_or(self.lines.len());
        let floor = if i == 0 { 0 } else { self.starts[i - 1] + 1 };
        self.find(key, start..end)
            .or_else(|| self.find(key, start.saturating_sub(5).max(floor)..start))
            .or(Some((start + 1, 1)))
    }

    /// The position of column `column` of expression `source`, the value
    /// of `key` in entry `i`: on the line where the expression's text
    /// starts, or at the key when it cannot be found there.
    pub(super) fn expression(
        &self,
        i: usize,
        key: &str,
        source: &str,
        column: Option<usize>,
    ) -> Option<(usize, usize)> {
        let at = self.key(i, key)?;
        let first = source.lines().next().unwrap_or_default();
        let (line, col) = (at.0..at.0 + 40)
            .find_map(|n| {
                let text = self.lines.get(n.checked_sub(1)?)?;
                text.find(first)
                    .filter(|_| !first.is_empty())
                    .map(|c| (n, c + 1))
            })
            .unwrap_or(at);
        let offset = column.filter(|c| *c <= first.len()).map_or(0, |c| c - 1);
        Some((line, col + offset))
    }

    fn find(&self, key: &str, lines: std::ops::Range<usize>) -> Option<(usize, usize)> {
        let patterns = [format!("{key}:"), format!("\"{key}\"")];
        lines.into_iter().find_map(|n| {
            let line = self.lines.get(n)?;
            patterns.iter().find_map(|pat| {
                let col = line.find(pat.as_str())?;
                let before = line[..col].trim_matches([' ', '-', '{', ',', '\t']);
                before.is_empty().then_some((n + 1, col + 1))
            })
        })
    }
}
