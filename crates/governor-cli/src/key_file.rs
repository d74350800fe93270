//! The secret keys of `governor serve` (the seal key, the approval-link
//! key): from the environment when configured, else from a key file
//! created on first start (0600, like an SSH host key), so that a server
//! works out of the box and every instance given the same file agrees.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// Which key, for file names and messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kind {
    /// `seal`, `link`.
    pub(crate) name: &'static str,
    /// What it protects, for the warning when one is created.
    pub(crate) purpose: &'static str,
}

/// The key sealing redacted arguments of parked calls.
pub(crate) const SEAL: Kind = Kind {
    name: "seal",
    purpose: "sensitive arguments of parked calls are sealed with it",
};

/// The key signing one-time approval links in emails.
pub(crate) const LINK: Kind = Kind {
    name: "link",
    purpose: "approval links in emails are signed with it",
};

/// Where a key comes from.
pub(crate) enum Source {
    /// `<kind>_key_env`: the variable holding 64 hex digits.
    Env(String),
    /// A key file (created if missing).
    File(PathBuf),
}

impl Source {
    /// The source `env` or `file` (relative to `base`) name, else the
    /// default file.
    pub(crate) fn of(
        kind: Kind,
        env: Option<&String>,
        file: Option<&PathBuf>,
        base: &Path,
        db: Option<&Path>,
    ) -> anyhow::Result<Self> {
        Ok(match (env, file) {
            (Some(_), Some(_)) => {
                anyhow::bail!("give {0}_key_env or {0}_key_file, not both", kind.name)
            }
            (Some(name), None) => Self::Env(name.clone()),
            (None, Some(file)) => Self::File(base.join(file)),
            (None, None) => Self::File(default_file(kind, db, base)),
        })
    }
}

/// The default key file: beside the SQLite database, or (for a shared
/// database) beside the config file, which every instance must share.
fn default_file(kind: Kind, db: Option<&Path>, config_dir: &Path) -> PathBuf {
    match db {
        Some(db) => {
            let mut name = db.as_os_str().to_owned();
            name.push(format!(".{}-key", kind.name));
            PathBuf::from(name)
        }
        None => config_dir.join(format!("governor.{}-key", kind.name)),
    }
}

/// Loads (or creates) the key's 32 bytes, logging where they came from.
pub(crate) fn load(kind: Kind, source: &Source) -> anyhow::Result<[u8; 32]> {
    match source {
        Source::Env(name) => {
            let hex = std::env::var(name).with_context(|| {
                format!(
                    "{}_key_env: environment variable `{name}` is not set",
                    kind.name
                )
            })?;
            let key = from_hex(&hex).with_context(|| format!("{}_key_env", kind.name))?;
            tracing::info!(variable = %name, "{} key from the environment", kind.name);
            Ok(key)
        }
        Source::File(path) => from_file(kind, path),
    }
}

fn from_hex(hex: &str) -> anyhow::Result<[u8; 32]> {
    let hex = hex.trim();
    anyhow::ensure!(
        hex.len() == 64 && hex.is_ascii(),
        "a key is 64 hex digits, not {} characters",
        hex.len()
    );
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).context("a key is 64 hex digits")?;
    }
    Ok(key)
}

fn from_file(kind: Kind, path: &Path) -> anyhow::Result<[u8; 32]> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_shared(kind, path);
            let key = from_hex(&text)
                .with_context(|| format!("{} key file {}", kind.name, path.display()))?;
            tracing::info!(file = %path.display(), "{} key from its file", kind.name);
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(kind, path),
        Err(e) => {
            Err(e).with_context(|| format!("cannot read {} key file {}", kind.name, path.display()))
        }
    }
}

fn create(kind: Kind, path: &Path) -> anyhow::Result<[u8; 32]> {
    use std::io::Write;
    let bytes = crate::demo_serve::random_key()?;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = match options.open(path) {
        Ok(file) => file,
        // Another instance created it meanwhile: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return from_file(kind, path),
        Err(e) => {
            return Err(e).with_context(|| {
                format!("cannot create {} key file {}", kind.name, path.display())
            });
        }
    };
    file.write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {} key file {}", kind.name, path.display()))?;
    tracing::warn!(
        file = %path.display(),
        "created a new {} key: {}; back it up with the database, keep it out of the database's backups' reach, and give every instance on a shared database the same file",
        kind.name,
        kind.purpose
    );
    Ok(bytes)
}

/// A key file others can read defeats it.
fn warn_if_shared(kind: Kind, path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the {} key file is readable by others: chmod 600 it",
                kind.name
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (kind, path);
}
