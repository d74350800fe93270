//! Connections: a fixed set of clients shared round-robin (each client
//! pipelines concurrent queries on its one connection), reconnected when
//! the server drops them, each with its own prepared-statement cache.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use governor_core::{StoreError, StoreErrorKind};
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::error::map;

/// The connection settings in `url`, naming the connection `application`
/// (as `pg_stat_activity` shows it) unless the URL names it.
pub(crate) fn config(url: &str, application: &str) -> Result<Config, StoreError> {
    let mut config: Config = url.parse().map_err(|e| {
        StoreError::new(
            StoreErrorKind::Invalid,
            "connect",
            format!("invalid PostgreSQL URL: {e}"),
        )
    })?;
    if config.get_application_name().is_none() {
        config.application_name(application);
    }
    Ok(config)
}

/// One client and the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    statements: Mutex<HashMap<String, Statement>>,
}

impl Conn {
    /// Connects to `url` with `search_path` set to `schema`.
    pub(crate) async fn open(url: &str, schema: &str) -> Result<Self, StoreError> {
        let (client, connection) = config(url, "governor")?
            .connect(NoTls)
            .await
            .map_err(|e| map("connect", e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "postgres connection ended");
            }
        });
        client
            .batch_execute(&format!("SET search_path TO {schema}"))
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
    url: String,
    schema: String,
    slots: Vec<tokio::sync::RwLock<Arc<Conn>>>,
    next: AtomicUsize,
}

impl Pool {
    pub(crate) async fn open(url: &str, schema: &str, size: usize) -> Result<Self, StoreError> {
        let mut slots = Vec::with_capacity(size);
        for _ in 0..size.max(1) {
            slots.push(tokio::sync::RwLock::new(Arc::new(
                Conn::open(url, schema).await?,
            )));
        }
        Ok(Self {
            url: url.to_owned(),
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
            *guard = Arc::new(Conn::open(&self.url, &self.schema).await?);
        }
        Ok(Arc::clone(&guard))
    }
}
