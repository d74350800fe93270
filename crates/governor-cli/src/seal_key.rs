//! The seal key of `governor serve`: from the environment when configured,
//! else from a key file created on first start (0600, like an SSH host
//! key), so that approved calls with sensitive arguments can run out of
//! the box.

use std::path::{Path, PathBuf};

use agent_governor::SealKey;
use anyhow::Context;

/// Where the key comes from.
pub(crate) enum Source {
    /// `seal_key_env`: the variable holding 64 hex digits.
    Env(String),
    /// A key file (created if missing).
    File(PathBuf),
}

/// The default key file: beside the SQLite database, or (for a shared
/// database) beside the config file, which every instance must share.
pub(crate) fn default_file(db: Option<&Path>, config_dir: &Path) -> PathBuf {
    match db {
        Some(db) => {
            let mut name = db.as_os_str().to_owned();
            name.push(".seal-key");
            PathBuf::from(name)
        }
        None => config_dir.join("governor.seal-key"),
    }
}

/// Loads (or creates) the key, logging where it came from.
pub(crate) fn load(source: &Source) -> anyhow::Result<SealKey> {
    match source {
        Source::Env(name) => {
            let hex = std::env::var(name).with_context(|| {
                format!("seal_key_env: environment variable `{name}` is not set")
            })?;
            let key = SealKey::from_hex(&hex).context("seal_key_env")?;
            tracing::info!(variable = %name, "seal key from the environment");
            Ok(key)
        }
        Source::File(path) => from_file(path),
    }
}

fn from_file(path: &Path) -> anyhow::Result<SealKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_shared(path);
            let key = SealKey::from_hex(&text)
                .with_context(|| format!("seal key file {}", path.display()))?;
            tracing::info!(file = %path.display(), "seal key from its file");
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(e).with_context(|| format!("cannot read seal key file {}", path.display())),
    }
}

fn create(path: &Path) -> anyhow::Result<SealKey> {
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
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return from_file(path),
        Err(e) => {
            return Err(e)
                .with_context(|| format!("cannot create seal key file {}", path.display()));
        }
    };
    file.write_all(format!("{hex}\n").as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write seal key file {}", path.display()))?;
    tracing::warn!(
        file = %path.display(),
        "created a new seal key: sensitive arguments of parked calls are sealed with it; back it up with the database, keep it out of the database's backups' reach, and give every instance on a shared database the same file"
    );
    Ok(SealKey::from_bytes(bytes))
}

/// A key file others can read defeats it.
fn warn_if_shared(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %path.display(),
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the seal key file is readable by others: chmod 600 it"
            );
        }
    }
}
