//! Connections: a fixed set of clients shared round-robin (each client
//! pipelines concurrent queries on its one connection), reconnected when
//! the server drops them, each with its own prepared-statement cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use governor_core::{StoreError, StoreErrorKind};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_postgres::config::SslMode;
use tokio_postgres::{AsyncMessage, Client, Config, Connection, NoTls, Statement};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::map;

/// Where to connect, and with which TLS settings: TLS when the URL says
/// `sslmode=require`, verifying the server's certificate and host name
/// against the web PKI roots plus any roots given.
#[derive(Clone)]
pub(crate) struct Endpoint {
    config: Config,
    tls: Option<MakeRustlsConnect>,
}

impl Endpoint {
    pub(crate) fn new(url: &str, extra_roots: &[Vec<u8>]) -> Result<Self, StoreError> {
        // TLS here always verifies the certificate and the host name: libpq's
        // `verify-full` (and the weaker `verify-ca`) ask for exactly that,
        // which tokio-postgres calls `require`.
        let url = url
            .replace("sslmode=verify-full", "sslmode=require")
            .replace("sslmode=verify-ca", "sslmode=require");
        let config: Config = url.parse().map_err(|e| {
            StoreError::new(
                StoreErrorKind::Invalid,
                "connect",
                format!("invalid PostgreSQL URL: {e}"),
            )
        })?;
        let tls = if config.get_ssl_mode() == SslMode::Require {
            Some(MakeRustlsConnect::new(tls_config(extra_roots)?))
        } else {
            None
        };
        if tls.is_none()
            && let Some(host) = remote_host(&config)
        {
            tracing::warn!(
                host = %host,
                "connecting to PostgreSQL on another machine without TLS: add sslmode=verify-full to the URL"
            );
        }
        Ok(Self { config, tls })
    }

    /// Opens a connection named `application`; a task drives it, passing
    /// notification payloads to `notifications`.
    pub(crate) async fn connect(
        &self,
        application: &str,
        notifications: Option<mpsc::UnboundedSender<String>>,
    ) -> Result<(Client, JoinHandle<()>), tokio_postgres::Error> {
        let mut config = self.config.clone();
        // Named as `pg_stat_activity` shows it, unless the URL names it.
        if config.get_application_name().is_none() {
            config.application_name(application);
        }
        match &self.tls {
            Some(tls) => {
                let (client, connection) = config.connect(tls.clone()).await?;
                Ok((client, drive(connection, notifications)))
            }
            None => {
                let (client, connection) = config.connect(NoTls).await?;
                Ok((client, drive(connection, notifications)))
            }
        }
    }
}

/// The first host of `config` that is not this machine (a TCP host other
/// than a loopback address or `localhost`; sockets are local).
fn remote_host(config: &Config) -> Option<String> {
    use tokio_postgres::config::Host;
    config.get_hosts().iter().find_map(|h| match h {
        Host::Tcp(name) => {
            let local = name == "localhost"
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            (!local).then(|| name.clone())
        }
        #[cfg(unix)]
        Host::Unix(_) => None,
    })
}

fn tls_config(extra_roots: &[Vec<u8>]) -> Result<rustls::ClientConfig, StoreError> {
    let invalid = |what: String| StoreError::new(StoreErrorKind::Invalid, "connect", what);
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for pem in extra_roots {
        let mut found = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| invalid(format!("TLS root certificate: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| invalid(format!("TLS root certificate: {e}")))?;
            found += 1;
        }
        if found == 0 {
            return Err(invalid(
                "TLS root certificate: no PEM certificate found".into(),
            ));
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(format!("TLS: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// Drives `connection` until it ends, passing on notifications.
fn drive<S, T>(
    mut connection: Connection<S, T>,
    notifications: Option<mpsc::UnboundedSender<String>>,
) -> JoinHandle<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(message) = messages.next().await {
            match message {
                Ok(AsyncMessage::Notification(n)) => {
                    if let Some(tx) = &notifications
                        && tx.send(n.payload().to_owned()).is_err()
                    {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "postgres connection ended");
                    return;
                }
            }
        }
    })
}

/// One client and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

impl Conn {
    /// Connects to `endpoint` with `search_path` set to `schema`.
    pub(crate) async fn open(endpoint: &Endpoint, schema: &str) -> Result<Self, StoreError> {
        let (client, _driver) = endpoint
            .connect("governor", None)
            .await
            .map_err(|e| map("connect", e))?;
        // Custom plans: a generic plan made while a table was small (a new
        // schema, no statistics yet) kept scanning `executions` whole for
        // every batch's update long after it had grown (804 sequential
        // scans, 6 million rows read, in a 5 s benchmark).
        client
            .batch_execute(&format!(
                "SET search_path TO {schema}; SET plan_cache_mode TO force_custom_plan"
            ))
            .await
            .map_err(|e| map("connect", e))?;
        Ok(Self {
            client,
            statements: Mutex::new(HashMap::new()),
        })
    }

    /// The client, for statements that are not worth preparing.
    pub(crate) fn client(&self) -> &Client {
        &self.client
    }

    /// `sql`, prepared once per connection.
    pub(crate) async fn statement(
        &self,
        op: &'static str,
        sql: &str,
    ) -> Result<Statement, StoreError> {
        if let Some(s) = self.cached(sql) {
            return Ok(s);
        }
        let prepared = self.client.prepare(sql).await.map_err(|e| map(op, e))?;
        if let Ok(mut cache) = self.statements.lock() {
            cache.insert(sql.to_owned(), prepared.clone());
        }
        Ok(prepared)
    }

    fn cached(&self, sql: &str) -> Option<Statement> {
        self.statements.lock().ok()?.get(sql).cloned()
    }
}

/// A fixed number of shared connections.
pub(crate) struct Pool {
    endpoint: Endpoint,
    schema: String,
    slots: Vec<tokio::sync::RwLock<Arc<Conn>>>,
    next: AtomicUsize,
}

impl Pool {
    pub(crate) async fn open(
        endpoint: &Endpoint,
        schema: &str,
        size: usize,
    ) -> Result<Self, StoreError> {
        let mut slots = Vec::with_capacity(size);
        for _ in 0..size.max(1) {
            slots.push(tokio::sync::RwLock::new(Arc::new(
                Conn::open(endpoint, schema).await?,
            )));
        }
        Ok(Self {
            endpoint: endpoint.clone(),
            schema: schema.to_owned(),
            slots,
            next: AtomicUsize::new(0),
        })
    }

    /// The next connection, reconnected first if the server closed it.
    pub(crate) async fn get(&self) -> Result<Arc<Conn>, StoreError> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let slot = &self.slots[i];
        let current = Arc::clone(&*slot.read().await);
        if !current.client.is_closed() {
            return Ok(current);
        }
        let mut guard = slot.write().await;
        if guard.client.is_closed() {
            *guard = Arc::new(Conn::open(&self.endpoint, &self.schema).await?);
        }
        Ok(Arc::clone(&guard))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verify_full_turns_verified_tls_on_and_plain_remote_hosts_are_named() {
        for mode in ["verify-full", "verify-ca", "require"] {
            let url = format!("postgres://u@db.example.com/x?sslmode={mode}");
            assert!(Endpoint::new(&url, &[]).unwrap().tls.is_some(), "{mode}");
        }
        let plain = Endpoint::new("postgres://u@db.example.com/x", &[]).unwrap();
        assert!(plain.tls.is_none());
        assert_eq!(
            remote_host(&plain.config).as_deref(),
            Some("db.example.com")
        );
        for local in ["localhost", "127.0.0.1", "[::1]"] {
            let e = Endpoint::new(&format!("postgres://u@{local}/x"), &[]).unwrap();
            assert_eq!(remote_host(&e.config), None, "{local}");
        }
    }
}
