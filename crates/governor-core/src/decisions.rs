//! The policy decisions of one call, kept for its audit record.

use std::sync::Arc;

use crate::audit::DecisionRecord;

/// A call's decisions so far. While every one is a plain allow in the
/// order the action's policies run, they are only counted: the action
/// holds that list, shared by every call that passes all its policies
/// (no list built per call, none freed when the record is evicted).
#[derive(Debug, Clone)]
pub(crate) enum Decisions {
    /// The first `n` of the action's all-allow list.
    Allowed(usize),
    /// Anything else.
    Listed(Vec<DecisionRecord>),
}

impl Decisions {
    /// No decisions.
    pub(crate) fn new() -> Self {
        Self::Allowed(0)
    }

    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Self::Allowed(n) => *n == 0,
            Self::Listed(list) => list.is_empty(),
        }
    }

    /// Counts a plain allow (no reason, no grant) by `policy` when `all`
    /// holds it at this place; `false` when it must be [pushed](Self::push).
    pub(crate) fn allowed(
        &mut self,
        policy: &Arc<str>,
        shadow: bool,
        all: &[DecisionRecord],
    ) -> bool {
        match self {
            Self::Allowed(n) => match all.get(*n) {
                Some(next) if Arc::ptr_eq(&next.policy, policy) && next.shadow == shadow => {
                    *n += 1;
                    true
                }
                _ => false,
            },
            Self::Listed(_) => false,
        }
    }

    /// Adds `d`.
    pub(crate) fn push(&mut self, d: DecisionRecord, all: &[DecisionRecord]) {
        if let Self::Allowed(n) = self {
            *self = Self::Listed(all[..(*n).min(all.len())].to_vec());
        }
        if let Self::Listed(list) = self {
            list.push(d);
        }
    }

    /// The decisions as an audit record holds them.
    pub(crate) fn to_record(&self, all: &Arc<[DecisionRecord]>) -> Arc<[DecisionRecord]> {
        match self {
            Self::Allowed(n) if *n == all.len() => Arc::clone(all),
            Self::Allowed(n) => all[..(*n).min(all.len())].into(),
            Self::Listed(list) => list.as_slice().into(),
        }
    }

    /// [`Self::to_record`], leaving no decisions behind.
    pub(crate) fn take_record(&mut self, all: &Arc<[DecisionRecord]>) -> Arc<[DecisionRecord]> {
        let record = match self {
            Self::Listed(list) => std::mem::take(list).into(),
            Self::Allowed(_) => self.to_record(all),
        };
        *self = Self::new();
        record
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    fn decision(policy: &Arc<str>, outcome: &'static str) -> DecisionRecord {
        DecisionRecord {
            policy: Arc::clone(policy),
            outcome: Cow::Borrowed(outcome),
            reason: None,
            shadow: false,
        }
    }

    /// What the lifecycle does with each decision.
    fn add(d: &mut Decisions, policy: &Arc<str>, outcome: &'static str, all: &[DecisionRecord]) {
        if outcome != "allow" || !d.allowed(policy, false, all) {
            d.push(decision(policy, outcome), all);
        }
    }

    #[test]
    fn plain_allows_share_the_actions_list_and_anything_else_is_listed() {
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let all: Arc<[DecisionRecord]> = vec![decision(&a, "allow"), decision(&b, "allow")].into();

        let mut passed = Decisions::new();
        add(&mut passed, &a, "allow", &all);
        add(&mut passed, &b, "allow", &all);
        assert!(Arc::ptr_eq(&passed.take_record(&all), &all));
        assert!(passed.is_empty());

        let mut denied = Decisions::new();
        add(&mut denied, &a, "allow", &all);
        add(&mut denied, &b, "deny", &all);
        let record = denied.take_record(&all);
        assert_eq!(record.len(), 2);
        assert_eq!(
            (&*record[0].outcome, &*record[1].outcome),
            ("allow", "deny")
        );

        // Out of the action's order (a re-check runs the policies again).
        let mut again = Decisions::new();
        for p in [&a, &b, &a] {
            add(&mut again, p, "allow", &all);
        }
        let record = again.to_record(&all);
        let names: Vec<&str> = record.iter().map(|d| &*d.policy).collect();
        assert_eq!(names, ["a", "b", "a"]);

        let mut part = Decisions::new();
        add(&mut part, &a, "allow", &all);
        assert_eq!(part.to_record(&all).len(), 1);
    }
}
