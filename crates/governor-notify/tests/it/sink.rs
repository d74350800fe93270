//! A real SMTP server (aiosmtpd, from PyPI) run by the tests:
//! `tests/support/smtp_sink.py`. `GOVERNOR_TEST_SMTP_PYTHON` names a
//! Python with aiosmtpd installed (`scripts/services.sh` makes one);
//! without it, `python3`.

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// A running SMTP server writing what it accepts to a directory.
pub(crate) struct Sink {
    pub(crate) port: u16,
    dir: tempfile::TempDir,
    pub(crate) tls_dir: Option<PathBuf>,
    auth: Option<String>,
    child: Option<Child>,
}

impl Sink {
    /// A plain server, no TLS, no AUTH.
    pub(crate) fn start() -> Self {
        Self::with(false, None)
    }

    /// A server requiring STARTTLS (with a throwaway certificate) and, if
    /// given, AUTH as `user:password`.
    pub(crate) fn with(tls: bool, auth: Option<&str>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = tls.then(|| dir.path().join("tls"));
        if let Some(t) = &tls_dir {
            std::fs::create_dir_all(t).unwrap();
        }
        let mut sink = Self {
            port: free_port(),
            dir,
            tls_dir,
            auth: auth.map(str::to_owned),
            child: None,
        };
        sink.up();
        sink
    }

    /// A server that is not running yet (start it with [`Sink::up`]).
    pub(crate) fn down_at_first() -> Self {
        Self {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            tls_dir: None,
            auth: None,
            child: None,
        }
    }

    /// Starts the server (again), on the same port and directory.
    pub(crate) fn up(&mut self) {
        let python =
            std::env::var("GOVERNOR_TEST_SMTP_PYTHON").unwrap_or_else(|_| "python3".into());
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/smtp_sink.py");
        let mut cmd = Command::new(&python);
        cmd.arg(script)
            .args(["--port", &self.port.to_string()])
            .arg("--dir")
            .arg(self.dir.path().join("mail"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some(t) = &self.tls_dir {
            cmd.arg("--tls").arg(t);
        }
        if let Some(a) = &self.auth {
            cmd.args(["--auth", a]);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("cannot start {python} {script}: {e} (set GOVERNOR_TEST_SMTP_PYTHON to a Python with aiosmtpd, or source scripts/services.sh)")
        });
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(
            line.trim(),
            "ready",
            "the SMTP sink did not start: is aiosmtpd installed for {python}? (source scripts/services.sh)"
        );
        self.child = Some(child);
    }

    /// Stops the server (SIGKILL).
    pub(crate) fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The CA certificate clients must trust (with TLS).
    pub(crate) fn certificate(&self) -> Vec<u8> {
        std::fs::read(self.tls_dir.as_ref().unwrap().join("ca.pem")).unwrap()
    }

    /// Every message accepted so far, oldest first: `rcpt_tos`,
    /// `headers` (lower-case names), `text`, `html`.
    pub(crate) fn messages(&self) -> Vec<Value> {
        let Ok(entries) = std::fs::read_dir(self.dir.path().join("mail")) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap())
            .collect()
    }

    /// Waits (up to `within`) until `n` messages arrived; returns them.
    pub(crate) async fn wait_for(&self, n: usize, within: Duration) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let got = self.messages();
            if got.len() >= n || tokio::time::Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.down();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
