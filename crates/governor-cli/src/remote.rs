//! Talking to a running `governor serve` with a bearer token.

use anyhow::{Context, bail};
use serde_json::Value;

/// Where the server is and who we are to it.
#[derive(clap::Args, Clone)]
pub(crate) struct RemoteArgs {
    /// The server's base URL (default http://127.0.0.1:8080).
    #[arg(long, env = "GOVERNOR_SERVER")]
    pub(crate) server: Option<String>,
    /// The API token (prefer the GOVERNOR_TOKEN environment variable:
    /// command lines are visible to other users).
    #[arg(long, env = "GOVERNOR_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// A PEM file of certificate authorities to trust for an https://
    /// server besides the system's (a private CA).
    #[arg(long, env = "GOVERNOR_CA_FILE")]
    ca_file: Option<std::path::PathBuf>,
}

/// A client of one server.
pub(crate) struct Remote {
    base: String,
    token: String,
    http: reqwest::Client,
}

impl Remote {
    pub(crate) fn new(args: RemoteArgs) -> anyhow::Result<Self> {
        let Some(token) = args.token.filter(|t| !t.is_empty()) else {
            bail!("an API token is needed: set GOVERNOR_TOKEN (or --token)");
        };
        Ok(Self {
            base: args
                .server
                .as_deref()
                .unwrap_or("http://127.0.0.1:8080")
                .trim_end_matches('/')
                .to_owned(),
            token,
            http: client(args.ca_file.as_deref())?,
        })
    }

    pub(crate) async fn get(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.get(self.url(path))).await
    }

    pub(crate) async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(self.url(path)).json(body)).await
    }

    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(self.url(path))).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Sends with the token; a problem document becomes an error naming
    /// its status, kind and detail.
    async fn send(&self, req: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let res = req
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the governor server at {}", self.base))?;
        let status = res.status();
        let text = res.text().await.context("reading the server's answer")?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(body);
        }
        let kind = body["type"]
            .as_str()
            .and_then(|t| t.rsplit(':').next())
            .unwrap_or("error");
        let detail = body["detail"].as_str().unwrap_or("no detail");
        bail!("{} {kind}: {detail}", status.as_u16())
    }
}

/// An HTTP client that speaks TLS (rustls on ring) to https:// servers,
/// trusting the system's roots and those in `ca_file`.
fn client(ca_file: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    // Once per process; a second install finds the first in place.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder();
    if let Some(path) = ca_file {
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read the CA file {}", path.display()))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem)
            .with_context(|| format!("{} holds no PEM certificate", path.display()))?;
        if certificates.is_empty() {
            bail!("{} holds no PEM certificate", path.display());
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    builder.build().context("cannot set up the HTTP client")
}
