//! The policies `governor serve` governs its actions with, and their hot
//! reload: files are watched, a valid change replaces each action's
//! policies for new calls, an invalid one is logged and the old policies
//! stay. Each reload (not the load at start) is recorded as a governed call of
//! `governor.policies.reload` with the files' digest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use agent_governor::{
    Args, AuditPolicy, GovernError, Governor, LoadOptions, PolicyFile, Principal,
};
use anyhow::Context;
use serde_json::{Value, json};

/// The action each reload is recorded as.
pub(crate) const RELOAD_ACTION: &str = "governor.policies.reload";
/// Who reloads.
const RELOADER: &str = "system:policy-reload";

/// One action agents submit by name.
#[derive(Debug, Clone)]
pub(crate) struct ActionSpec {
    pub(crate) name: String,
    /// Its own policy file; otherwise the shared file's policies that
    /// select it.
    pub(crate) policies: Option<PathBuf>,
    pub(crate) report_within: Duration,
}

/// Every policy file in force, loaded.
pub(crate) struct Loaded {
    shared: Option<PolicyFile>,
    own: Vec<Option<PolicyFile>>,
}

impl Loaded {
    fn files(&self) -> impl Iterator<Item = &PolicyFile> {
        self.shared.iter().chain(self.own.iter().flatten())
    }

    fn changed_on_disk(&self) -> bool {
        self.files().any(PolicyFile::changed_on_disk)
    }

    /// The digest over every file's digest, in order.
    fn digest(&self) -> String {
        let all: Vec<&str> = self.files().map(|f| f.digest.as_str()).collect();
        all.join("+")
    }

    fn sources(&self) -> Vec<&Path> {
        self.files()
            .flat_map(|f| f.sources.iter().map(PathBuf::as_path))
            .collect()
    }
}

/// Where the served actions' policies come from.
pub(crate) struct Sources {
    /// The shared file with selectors.
    pub(crate) shared: Option<PathBuf>,
    /// The configured actions.
    pub(crate) actions: Vec<ActionSpec>,
    /// The config file's folder: paths are relative to it.
    pub(crate) base: PathBuf,
    /// The backend of `shared: true` rate limits.
    pub(crate) options: LoadOptions,
}

impl Sources {
    /// Loads the shared file and each action's own file.
    pub(crate) fn load(&self) -> anyhow::Result<Loaded> {
        let read = |f: &Path| PolicyFile::load_with(self.base.join(f), self.options.clone());
        let shared = self
            .shared
            .as_deref()
            .map(|f| read(f).context("policies"))
            .transpose()?;
        let own = self
            .actions
            .iter()
            .map(|a| {
                a.policies
                    .as_deref()
                    .map(read)
                    .transpose()
                    .with_context(|| format!("policies of action `{}`", a.name))
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Loaded { shared, own })
    }
}

/// Builds (or rebuilds) every action with its policies; returns how many
/// policies each got.
pub(crate) fn apply(
    governor: &Governor,
    actions: &[ActionSpec],
    loaded: &Loaded,
) -> anyhow::Result<Value> {
    let mut counts = serde_json::Map::new();
    for (spec, own) in actions.iter().zip(&loaded.own) {
        let policies = match (own, &loaded.shared) {
            (Some(file), _) => file.policies_for(&spec.name),
            (None, Some(shared)) => shared.policies_for(&spec.name),
            (None, None) => Vec::new(),
        };
        let names: Vec<&str> = policies.iter().map(|p| p.name()).collect();
        counts.insert(spec.name.clone(), json!(names));
        let display = match (own, &loaded.shared) {
            (Some(file), _) => file.display_for(&spec.name),
            (None, Some(shared)) => shared.display_for(&spec.name),
            (None, None) => None,
        };
        let mut action = governor
            .action(spec.name.clone())
            .policies(policies)
            .external(spec.report_within);
        if let Some(display) = display {
            action = action.display(display.clone());
        }
        action
            .build()
            .with_context(|| format!("action `{}`", spec.name))?;
    }
    Ok(Value::Object(counts))
}

/// Records a reload as a governed, audited call.
pub(crate) async fn record(governor: &Governor, loaded: &Loaded, applied: &Value) {
    let action = governor
        .action(RELOAD_ACTION)
        .policy(AuditPolicy::new().compliance_tags(["change-management"]))
        .build();
    let args = Args::new()
        .arg("files", &loaded.sources())
        .arg("digest", &loaded.digest())
        .arg("actions", applied);
    let recorded = match action {
        Ok(a) => {
            a.run_as(Principal::new(RELOADER), args, || async {
                Ok::<_, GovernError>(())
            })
            .await
        }
        Err(e) => Err(e),
    };
    if let Err(e) = recorded {
        eprintln!("warning: could not record the policy reload: {e}");
    }
}

/// Watches the policy files every `every`; applies valid changes.
pub(crate) fn spawn_watcher(
    governor: Governor,
    sources: Sources,
    mut current: Loaded,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The last rejection, so one bad edit is reported once, not on
        // every tick.
        let mut rejected: Option<String> = None;
        loop {
            tick.tick().await;
            if !current.changed_on_disk() {
                continue;
            }
            match sources.load() {
                Ok(next) if next.digest() == current.digest() => current = next,
                Ok(next) => match apply(&governor, &sources.actions, &next) {
                    Ok(applied) => {
                        out!("policies reloaded (digest {})", next.digest());
                        record(&governor, &next, &applied).await;
                        current = next;
                        rejected = None;
                    }
                    Err(e) => report_rejected(&mut rejected, &format!("{e:#}")),
                },
                Err(e) => report_rejected(&mut rejected, &format!("{e:#}")),
            }
        }
    })
}

fn report_rejected(last: &mut Option<String>, error: &str) {
    if last.as_deref() == Some(error) {
        return;
    }
    eprintln!("error: policy change rejected, the old policies stay: {error}");
    *last = Some(error.to_owned());
}
