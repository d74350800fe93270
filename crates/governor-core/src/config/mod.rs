//! Policies from YAML and JSON files, in the seed's format.
//!
//! Every key the seed's files use is honoured, and nothing is silently
//! ignored: an unknown key, a wrong type, an unknown policy type or phase
//! is an error naming the file, line, column and what was expected.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::policy::{Policy, PolicyKind};

mod displays;
mod entry;
mod locate;
mod raw;

pub use displays::ActionDisplay;

use entry::{ClosedSchema, Scope, entry};
use locate::{Locator, strip_position};
use raw::RawFile;

use crate::selector::ActionSelector;

/// A policy file that could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", location(.file.as_deref(), *.line, *.column))]
pub struct ConfigError {
    /// The file, when loading from one.
    pub file: Option<PathBuf>,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong and what was expected.
    pub message: String,
}

fn location(file: Option<&Path>, line: Option<usize>, column: Option<usize>) -> String {
    let mut s = file.map(|f| f.display().to_string()).unwrap_or_default();
    if let Some(l) = line {
        if !s.is_empty() {
            s.push(':');
        }
        s.push_str(&l.to_string());
        if let Some(c) = column {
            s.push_str(&format!(":{c}"));
        }
    }
    if !s.is_empty() {
        s.push_str(": ");
    }
    s
}

impl ConfigError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            file: None,
            line: None,
            column: None,
            message: message.into(),
        }
    }

    fn at(mut self, pos: Option<(usize, usize)>) -> Self {
        if let Some((l, c)) = pos {
            self.line = Some(l);
            self.column = Some(c);
        }
        self
    }

    /// Names the file, unless an included file was named already.
    fn in_file(mut self, path: &Path) -> Self {
        if self.file.is_none() {
            self.file = Some(path.to_path_buf());
        }
        self
    }
}

/// The syntax of a policy document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (also accepts JSON, which is YAML).
    Yaml,
    /// JSON.
    Json,
}

impl Format {
    /// The format for a file name: `.json`, `.yaml` or `.yml`.
    pub fn from_path(path: &Path) -> Result<Self, ConfigError> {
        match path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            Some("json") => Ok(Self::Json),
            Some("yaml" | "yml") => Ok(Self::Yaml),
            _ => Err(ConfigError::new(
                "unsupported policy file type (expected .yaml, .yml or .json)",
            )
            .in_file(path)),
        }
    }
}
/// The environment variable naming the deployment environment
/// (`development` when unset): it picks `policies/{env}.yaml` in
/// [`PolicyFile::load_for_environment`] and is `env.name` in conditions.
pub const ENVIRONMENT_VAR: &str = "GOVERNOR_ENV";

/// One loaded policy with what the file said about it.
#[derive(Clone)]
pub struct LoadedPolicy {
    /// The policy's name (`<entry>.<stage>` for approval stages).
    pub name: String,
    /// Its type.
    pub kind: PolicyKind,
    /// The file's description.
    pub description: Option<String>,
    /// Whether `enabled: false` switched it off (then it is not in
    /// [`PolicyFile::policies`]).
    pub enabled: bool,
    /// Things worth knowing that are not errors.
    pub warnings: Vec<String>,
    /// The actions it governs; `None` for every action it is given to.
    pub actions: Option<ActionSelector>,
    /// Its `when` condition, as written.
    pub when: Option<String>,
    /// The policy itself.
    pub policy: Arc<dyn Policy>,
}

impl LoadedPolicy {
    /// Whether it governs `action` (enabled, and selected by `actions`).
    pub fn applies_to(&self, action: &str) -> bool {
        self.enabled && self.actions.as_ref().is_none_or(|s| s.matches(action))
    }
}

impl fmt::Debug for LoadedPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadedPolicy")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("enabled", &self.enabled)
            .field("actions", &self.actions)
            .finish_non_exhaustive()
    }
}

/// A loaded policy file (with the files it includes).
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// Every entry, enabled or not: included files' first, in order, then
    /// this file's. An entry named like an included one replaces it.
    pub entries: Vec<LoadedPolicy>,
    /// Top-level metadata (`version`, `environment`, `metadata`, ...).
    pub metadata: Map<String, Value>,
    /// The environment conditions see as `env.name`.
    pub environment: String,
    /// Every file read, outermost first (empty when parsed from text).
    pub sources: Vec<PathBuf>,
    /// SHA-256 (hex) over the sources' paths and contents, or over the
    /// text it was parsed from: what a reload is recorded with.
    pub digest: String,
    /// How actions' requests read to approvers (`displays:`), included
    /// files' first.
    pub displays: Vec<ActionDisplay>,
}

impl PolicyFile {
    /// Loads a `.yaml`, `.yml` or `.json` file and the files it includes.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        Self::load_with(path, LoadOptions::default())
    }

    /// [`load`](Self::load) with `options` (a backend for shared rate
    /// limits).
    pub fn load_with(path: impl AsRef<Path>, options: LoadOptions) -> Result<Self, ConfigError> {
        Loader {
            options,
            ..Loader::default()
        }
        .load_outermost(path.as_ref())
    }

    /// Loads `{dir}/{env}.yaml` (or `.yml`, `.json`), `env` being
    /// [`ENVIRONMENT_VAR`] or `development`.
    pub fn load_for_environment(dir: impl AsRef<Path>) -> Result<Self, ConfigError> {
        let env = std::env::var(ENVIRONMENT_VAR).unwrap_or_else(|_| "development".into());
        Self::load_environment(dir, &env)
    }

    /// Loads `{dir}/{environment}.yaml` (or `.yml`, `.json`).
    pub fn load_environment(dir: impl AsRef<Path>, environment: &str) -> Result<Self, ConfigError> {
        Self::load_environment_with(dir, environment, LoadOptions::default())
    }

    /// [`load_environment`](Self::load_environment) with `options`.
    pub fn load_environment_with(
        dir: impl AsRef<Path>,
        environment: &str,
        options: LoadOptions,
    ) -> Result<Self, ConfigError> {
        let dir = dir.as_ref();
        if environment.is_empty() || environment.contains(['/', '\\', '.']) {
            return Err(ConfigError::new(format!(
                "environment name `{environment}` must be a plain name (letters, digits, `-`, `_`)"
            )));
        }
        let names = ["yaml", "yml", "json"].map(|ext| format!("{environment}.{ext}"));
        let Some(path) = names.iter().map(|n| dir.join(n)).find(|p| p.is_file()) else {
            return Err(ConfigError::new(format!(
                "no policy file for environment `{environment}` in {} (looked for {}; {ENVIRONMENT_VAR} selects the environment)",
                dir.display(),
                names.join(", ")
            )));
        };
        let mut loader = Loader {
            environment: Some(environment.to_owned()),
            options,
            ..Loader::default()
        };
        loader.load_outermost(&path)
    }

    /// Parses a document; `include`s are relative to the working directory.
    pub fn parse(text: &str, format: Format) -> Result<Self, ConfigError> {
        let raw = parse_raw(text, format)?;
        let mut file = Loader::default().build(raw, text, None)?;
        file.digest = digest_of(&[(Path::new(""), text.as_bytes())]);
        Ok(file)
    }

    /// Builds from an in-memory value (the seed's `load_policies_from_dict`).
    pub fn from_value(value: Value) -> Result<Self, ConfigError> {
        let text = value.to_string();
        let raw: RawFile =
            serde_json::from_value(value).map_err(|e| ConfigError::new(e.to_string()))?;
        let mut file = Loader::default().build(raw, "", None)?;
        file.digest = digest_of(&[(Path::new(""), text.as_bytes())]);
        Ok(file)
    }

    /// Whether any source file changed since this was loaded (its digest
    /// differs, or a file can no longer be read).
    pub fn changed_on_disk(&self) -> bool {
        !self.sources.is_empty() && sources_digest(&self.sources).is_none_or(|d| d != self.digest)
    }

    /// The enabled policies, in file order, whatever their `actions`.
    pub fn policies(&self) -> Vec<Arc<dyn Policy>> {
        self.entries
            .iter()
            .filter(|e| e.enabled)
            .map(|e| Arc::clone(&e.policy))
            .collect()
    }

    /// How `action`'s requests read to approvers: the last `displays:`
    /// entry that selects it (this file's over included ones).
    pub fn display_for(&self, action: &str) -> Option<&crate::Display> {
        self.displays
            .iter()
            .rev()
            .find(|d| d.actions.matches(action))
            .map(|d| &d.display)
    }

    /// The enabled policies that govern `action`, in file order.
    pub fn policies_for(&self, action: &str) -> Vec<Arc<dyn Policy>> {
        self.entries
            .iter()
            .filter(|e| e.applies_to(action))
            .map(|e| Arc::clone(&e.policy))
            .collect()
    }
}

/// Loads the enabled policies of a YAML or JSON file.
pub fn load_policies_from_file(
    path: impl AsRef<Path>,
) -> Result<Vec<Arc<dyn Policy>>, ConfigError> {
    PolicyFile::load(path).map(|f| f.policies())
}

/// Loads the enabled policies of an in-memory document
/// (`{"policies": [...]}`).
pub fn load_policies_from_value(value: Value) -> Result<Vec<Arc<dyn Policy>>, ConfigError> {
    PolicyFile::from_value(value).map(|f| f.policies())
}

fn parse_raw(text: &str, format: Format) -> Result<RawFile, ConfigError> {
    match format {
        Format::Json => serde_json::from_str(text).map_err(|e| {
            ConfigError::new(strip_position(&e.to_string())).at(Some((e.line(), e.column())))
        }),
        Format::Yaml => yaml_serde::from_str(text).map_err(|e| {
            let pos = e.location().map(|l| (l.line(), l.column()));
            ConfigError::new(strip_position(&e.to_string())).at(pos)
        }),
    }
}

/// The largest policy or Cedar file read (16 MiB): a path that names a
/// device or a huge file is an error, not a hang.
const MAX_FILE_BYTES: u64 = 16 << 20;

/// Reads a regular file of at most [`MAX_FILE_BYTES`] as UTF-8.
fn read_text(path: &Path, what: &str) -> Result<String, ConfigError> {
    let meta = std::fs::metadata(path)
        .map_err(|e| ConfigError::new(format!("cannot read {what}: {e}")))?;
    if !meta.is_file() {
        return Err(ConfigError::new(format!(
            "cannot read {what}: not a regular file"
        )));
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(ConfigError::new(format!(
            "cannot read {what}: {} bytes is more than the {MAX_FILE_BYTES} allowed",
            meta.len()
        )));
    }
    std::fs::read_to_string(path).map_err(|e| ConfigError::new(format!("cannot read {what}: {e}")))
}

/// Include depth beyond which a chain of includes is refused.
const MAX_INCLUDE_DEPTH: usize = 16;

/// What loading may bind a file's policies to.
#[derive(Clone, Default)]
pub struct LoadOptions {
    /// The backend of rate limits marked `shared: true`. Without one,
    /// such a file is refused: a limit meant to hold across instances is
    /// never silently kept per process.
    pub shared_rate_limits: Option<Arc<dyn crate::policy::RateLimitBackend>>,
}

impl fmt::Debug for LoadOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoadOptions")
            .field(
                "shared_rate_limits",
                &self.shared_rate_limits.as_ref().map(|b| b.name()),
            )
            .finish()
    }
}

/// Loads files and what they include, refusing cycles.
#[derive(Default)]
struct Loader {
    options: LoadOptions,
    /// The files being loaded, outermost first.
    stack: Vec<PathBuf>,
    /// The environment, once known (given, or from the outermost file).
    environment: Option<String>,
    /// Every file read so far, in order.
    read: Vec<PathBuf>,
}

impl Loader {
    fn load_outermost(&mut self, path: &Path) -> Result<PolicyFile, ConfigError> {
        let mut file = self.load(path)?;
        file.sources = std::mem::take(&mut self.read);
        // Read again for the digest: a file changed while loading gives a
        // digest that differs from the next look, so it is reloaded.
        file.digest = sources_digest(&file.sources).unwrap_or_default();
        Ok(file)
    }

    fn load(&mut self, path: &Path) -> Result<PolicyFile, ConfigError> {
        let format = Format::from_path(path)?;
        let key = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if self.stack.contains(&key) {
            return Err(ConfigError::new(format!(
                "includes form a cycle: {}",
                self.stack
                    .iter()
                    .chain([&key])
                    .map(|p| p.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" -> ")
            ))
            .in_file(path));
        }
        if self.stack.len() >= MAX_INCLUDE_DEPTH {
            return Err(ConfigError::new(format!(
                "includes nest deeper than {MAX_INCLUDE_DEPTH} files"
            ))
            .in_file(path));
        }
        let text = read_text(path, "policy file").map_err(|e| e.in_file(path))?;
        let raw = parse_raw(&text, format).map_err(|e| e.in_file(path))?;
        self.read.push(path.to_path_buf());
        self.stack.push(key);
        let built = self.build(raw, &text, path.parent());
        self.stack.pop();
        built.map_err(|e| e.in_file(path))
    }

    fn build(
        &mut self,
        mut raw: RawFile,
        text: &str,
        base: Option<&Path>,
    ) -> Result<PolicyFile, ConfigError> {
        let environment = self
            .environment
            .clone()
            .or_else(|| raw.environment.clone())
            .or_else(|| std::env::var(ENVIRONMENT_VAR).ok())
            .unwrap_or_else(|| "development".into());
        self.environment = Some(environment.clone());
        let mut entries: Vec<LoadedPolicy> = Vec::new();
        let mut metadata = Map::new();
        let mut action_displays = Vec::new();
        for include in &raw.include {
            let path = base.map_or_else(|| include.clone(), |b| b.join(include));
            let included = self.load(&path)?;
            metadata.extend(included.metadata);
            action_displays.extend(included.displays);
            for e in included.entries {
                put(&mut entries, e);
            }
        }
        metadata.extend(metadata_of(&raw));
        for (i, d) in std::mem::take(&mut raw.displays).into_iter().enumerate() {
            action_displays.push(displays::display(i, d)?);
        }
        let locator = Locator::new(text);
        let actions = raw
            .actions
            .as_ref()
            .map(|a| ActionSelector::new(a.iter().cloned()))
            .transpose()
            .map_err(|e| ConfigError::new(format!("`actions`: {e}")))?;
        let schemas = ClosedSchema::of(&raw.policies, actions.as_ref());
        let scope = Scope {
            at: &locator,
            environment: &environment,
            base,
            actions: actions.as_ref(),
            schemas: &schemas,
            shared_rate_limits: self.options.shared_rate_limits.as_ref(),
        };
        let mut names: Vec<String> = Vec::new();
        for (i, p) in raw.policies.into_iter().enumerate() {
            for e in entry(i, p, &scope)? {
                if names.contains(&e.name) {
                    return Err(ConfigError::new(format!(
                        "policy name `{}` is used twice; names must be unique",
                        e.name
                    ))
                    .at(locator.key(i, "name")));
                }
                names.push(e.name.clone());
                put(&mut entries, e);
            }
        }
        Ok(PolicyFile {
            entries,
            metadata,
            environment,
            sources: Vec::new(),
            digest: String::new(),
            displays: action_displays,
        })
    }
}

/// The digest of `paths` as they are on disk now; `None` if one cannot
/// be read.
fn sources_digest(paths: &[PathBuf]) -> Option<String> {
    let contents: Vec<Vec<u8>> = paths
        .iter()
        .map(std::fs::read)
        .collect::<Result<_, _>>()
        .ok()?;
    let parts: Vec<(&Path, &[u8])> = paths
        .iter()
        .zip(&contents)
        .map(|(p, c)| (p.as_path(), c.as_slice()))
        .collect();
    Some(digest_of(&parts))
}

fn digest_of(parts: &[(&Path, &[u8])]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (path, content) in parts {
        h.update(path.to_string_lossy().as_bytes());
        h.update([0]);
        h.update((content.len() as u64).to_le_bytes());
        h.update(content);
    }
    crate::audit::hex(&h.finalize())
}

/// Adds `e`, replacing an earlier entry of the same name in place.
fn put(entries: &mut Vec<LoadedPolicy>, e: LoadedPolicy) {
    match entries.iter_mut().find(|x| x.name == e.name) {
        Some(slot) => *slot = e,
        None => entries.push(e),
    }
}

fn metadata_of(raw: &RawFile) -> Map<String, Value> {
    let mut metadata = raw.metadata.clone().unwrap_or_default();
    let mut put = |k: &str, v: Option<Value>| {
        if let Some(v) = v {
            metadata.insert(k.to_owned(), v);
        }
    };
    put("version", raw.version.clone());
    put("environment", raw.environment.clone().map(Value::from));
    put("description", raw.description.clone().map(Value::from));
    put("last_updated", raw.last_updated.clone());
    put("owner", raw.owner.clone().map(Value::from));
    put("industry", raw.industry.clone().map(Value::from));
    put(
        "compliance_frameworks",
        raw.compliance_frameworks.clone().map(Value::from),
    );
    metadata
}
