//! Which actions a policy governs, by name pattern, so one policy file can
//! govern many actions (Rust functions, HTTP submissions and MCP tools
//! alike).

use std::fmt;

/// A pattern that is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("action pattern `{pattern}` is not valid: {reason}")]
pub struct SelectorError {
    /// The pattern as written.
    pub pattern: String,
    /// What is wrong with it.
    pub reason: String,
}

/// A list of action-name patterns; a name matches if any pattern does.
///
/// `*` matches any run of characters (dots included, so `payments.*`
/// covers `payments.refund.partial`), `?` one character; everything else
/// matches itself. Matching is case-sensitive, like action names.
#[derive(Clone, PartialEq, Eq)]
pub struct ActionSelector {
    patterns: Vec<String>,
}

impl fmt::Debug for ActionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.patterns).finish()
    }
}

impl fmt::Display for ActionSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.patterns.join(", "))
    }
}

impl ActionSelector {
    /// A selector over `patterns`; at least one, none blank.
    pub fn new<I, S>(patterns: I) -> Result<Self, SelectorError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let patterns: Vec<String> = patterns.into_iter().map(Into::into).collect();
        if patterns.is_empty() {
            return Err(SelectorError {
                pattern: String::new(),
                reason: "the list is empty: give at least one pattern, or leave `actions` out to govern every action"
                    .into(),
            });
        }
        if let Some(p) = patterns
            .iter()
            .find(|p| p.trim().is_empty() || p.trim() != *p)
        {
            return Err(SelectorError {
                pattern: p.clone(),
                reason: "blank, or with spaces around it".into(),
            });
        }
        Ok(Self { patterns })
    }

    /// The patterns as written.
    pub fn patterns(&self) -> &[String] {
        &self.patterns
    }

    /// Whether `action` matches any pattern.
    pub fn matches(&self, action: &str) -> bool {
        self.patterns
            .iter()
            .any(|p| glob(p.as_bytes(), action.as_bytes()))
    }
}

/// Iterative wildcard matching with one backtrack point: linear in
/// practice, never exponential.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_names() {
        let s = ActionSelector::new(["payments.*", "deploy_*", "exact", "v?"]).unwrap();
        for yes in [
            "payments.refund",
            "payments.refund.partial",
            "deploy_prod",
            "exact",
            "v1",
        ] {
            assert!(s.matches(yes), "{yes}");
        }
        for no in [
            "payments",
            "payment.refund",
            "redeploy_x",
            "exactly",
            "v10",
            "Exact",
        ] {
            assert!(!s.matches(no), "{no}");
        }
        assert!(
            ActionSelector::new(["*"])
                .unwrap()
                .matches("anything at all")
        );
        assert!(ActionSelector::new(["a*b*c"]).unwrap().matches("aXbYbZc"));
        assert!(!ActionSelector::new(["a*b*c"]).unwrap().matches("aXbYbZ"));
    }

    #[test]
    fn empty_or_blank_patterns_are_refused() {
        assert!(ActionSelector::new(Vec::<String>::new()).is_err());
        assert!(ActionSelector::new([" x"]).is_err());
        assert!(ActionSelector::new([""]).is_err());
    }
}
