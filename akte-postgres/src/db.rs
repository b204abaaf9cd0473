//! The connection to PostgreSQL: a pool of connections driven by a small runtime of its
//! own, and the bridge from akte's blocking storage traits to the async driver.
//!
//! The engine calls its backends from plain threads (gRPC handlers hand work to
//! `spawn_blocking`), so every database call is a future spawned on this runtime and
//! awaited through a channel: that works from any thread, inside another runtime too.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use akte_core::backend::{FaultKind, IoFailure};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio::runtime::{Handle, Runtime};

/// Calls into the database runtime so far (for benchmarks and tests).
pub static ROUND_TRIPS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Calls into the database runtime so far by what they did ("read the index", ...) and
/// whether the calling thread held a tenant's append session (those calls serialise the
/// tenant's writes), for benchmarks that explain where a write's round trips go.
static ROUND_TRIPS_BY_OP: std::sync::Mutex<std::collections::BTreeMap<(&'static str, bool), u64>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

thread_local! {
    /// Calls into the database runtime this thread made so far.
    static THREAD_ROUND_TRIPS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Calls into the database runtime this thread made so far: what one request costs, for
/// tests that count it while other work goes on.
pub fn thread_round_trips() -> u64 {
    THREAD_ROUND_TRIPS.with(std::cell::Cell::get)
}

/// [`ROUND_TRIPS`] by operation and whether the caller held an append session, so far.
pub fn round_trips_by_op() -> std::collections::BTreeMap<(&'static str, bool), u64> {
    ROUND_TRIPS_BY_OP
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone()
}

/// A database failure, with what was being done and what kind of failure it is.
#[derive(Debug, Clone, thiserror::Error)]
#[error("PostgreSQL {op}: {message}")]
pub struct PgError {
    /// What was being done ("insert entries", "connect", ...).
    pub op: &'static str,
    /// The server's or the driver's message (never the connection string).
    pub message: String,
    /// What kind of failure it is.
    pub kind: FaultKind,
}

impl PgError {
    pub(crate) fn new(op: &'static str, kind: FaultKind, message: impl Into<String>) -> PgError {
        PgError {
            op,
            message: message.into(),
            kind,
        }
    }

    /// Classifies a driver error by its SQLSTATE (class 08 connection, 53 resources, 57
    /// operator intervention: retry later; 53100 disk full; 23/40 conflicts; XX001/XX002
    /// damaged data). Errors without a state are lost or refused connections.
    pub(crate) fn of(op: &'static str, e: &tokio_postgres::Error) -> PgError {
        let Some(db) = e.as_db_error() else {
            // The driver's message names the step; its sources say why (refused, reset).
            let mut message = e.to_string();
            let mut source = std::error::Error::source(e);
            while let Some(s) = source {
                message.push_str(": ");
                message.push_str(&s.to_string());
                source = s.source();
            }
            return PgError::new(op, FaultKind::Unavailable, message);
        };
        let code = db.code().code();
        let kind = match code {
            "53100" => FaultKind::StorageFull,
            "XX001" | "XX002" => FaultKind::Corrupt,
            _ => match code.get(..2).unwrap_or("") {
                "08" | "53" | "57" | "58" => FaultKind::Unavailable,
                "23" | "40" => FaultKind::Conflict,
                _ => FaultKind::Other,
            },
        };
        PgError::new(op, kind, format!("{} (SQLSTATE {code})", db.message()))
    }

    pub(crate) fn of_pool(op: &'static str, e: deadpool_postgres::PoolError) -> PgError {
        match e {
            deadpool_postgres::PoolError::Backend(e) => PgError::of(op, &e),
            deadpool_postgres::PoolError::Timeout(_) => PgError::new(
                op,
                FaultKind::Unavailable,
                "no database connection became available in time",
            ),
            deadpool_postgres::PoolError::Closed => {
                PgError::new(op, FaultKind::Unavailable, "the connection pool is closed")
            }
            other => PgError::new(op, FaultKind::Other, other.to_string()),
        }
    }

    /// As an I/O failure on `target` (for the seams whose errors wrap I/O failures).
    pub fn io(&self, target: impl Into<String>) -> IoFailure {
        let kind = match self.kind {
            FaultKind::NotFound => io::ErrorKind::NotFound,
            FaultKind::Conflict => io::ErrorKind::AlreadyExists,
            FaultKind::Unavailable => io::ErrorKind::ConnectionAborted,
            FaultKind::StorageFull => io::ErrorKind::StorageFull,
            FaultKind::Corrupt => io::ErrorKind::InvalidData,
            FaultKind::Other => io::ErrorKind::Other,
        };
        IoFailure::new(self.op, target, io::Error::new(kind, self.to_string()))
    }
}

/// Settings of the connection.
#[derive(Clone)]
pub struct PgOptions {
    /// Connections in the pool (each append group holds one while it commits).
    pub pool_size: usize,
    /// Longest wait for a connection from the pool, and for a new connection.
    pub connect_timeout: Duration,
    /// Longest time one database operation may take before it counts as unavailable.
    pub op_timeout: Duration,
    /// PEM file of the certificate authorities that sign the server's certificate (for
    /// `sslmode=require`); the system's store when unset.
    pub ca_file: Option<std::path::PathBuf>,
    /// Password, when the connection string holds none (read from a file or the
    /// environment by the caller; never logged).
    pub password: Option<String>,
    /// The key secret blobs are sealed with (see [`crate::seal`]).
    pub seal_key: Option<crate::seal::SealKey>,
    /// Content in S3-compatible object storage instead of PostgreSQL.
    pub content: Option<crate::s3::S3Options>,
}

impl std::fmt::Debug for PgOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgOptions")
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("op_timeout", &self.op_timeout)
            .field("ca_file", &self.ca_file)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("seal_key", &self.seal_key)
            .field("content", &self.content)
            .finish()
    }
}

impl Default for PgOptions {
    fn default() -> Self {
        PgOptions {
            pool_size: 24,
            connect_timeout: Duration::from_secs(5),
            op_timeout: Duration::from_secs(60),
            ca_file: None,
            password: None,
            seal_key: None,
            content: None,
        }
    }
}

/// The pool, its runtime, and how to name the database in messages.
pub(crate) struct Db {
    rt: Option<Runtime>,
    handle: Handle,
    pub(crate) pool: Pool,
    place: String,
    op_timeout: Duration,
}

impl Drop for Db {
    fn drop(&mut self) {
        self.pool.close();
        if let Some(rt) = self.rt.take() {
            // Dropping a runtime inside another one panics; this never waits.
            rt.shutdown_background();
        }
    }
}

/// Where a connection string points, without user name or password (for messages).
pub(crate) fn describe_config(config: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}:{port}/{}",
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

fn tls_config(options: &PgOptions) -> Result<rustls::ClientConfig, PgError> {
    let bad = |m: String| PgError::new("configure TLS", FaultKind::Other, m);
    let path = options
        .ca_file
        .clone()
        .unwrap_or_else(|| "/etc/ssl/certs/ca-certificates.crt".into());
    let pem = std::fs::read(&path)
        .map_err(|e| bad(format!("reading CA file {}: {e}", path.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        let cert = cert.map_err(|e| bad(format!("CA file {}: {e}", path.display())))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("CA file {}: {e}", path.display())))?;
    }
    if roots.is_empty() {
        return Err(bad(format!(
            "CA file {} holds no certificate",
            path.display()
        )));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

impl Db {
    /// Connects (lazily: the pool opens connections when first needed) and checks that
    /// the server answers.
    pub(crate) fn connect(url: &str, options: &PgOptions) -> Result<Arc<Db>, PgError> {
        let mut config: tokio_postgres::Config =
            url.parse().map_err(|e: tokio_postgres::Error| {
                PgError::new(
                    "parse the connection string",
                    FaultKind::Other,
                    e.to_string(),
                )
            })?;
        if let Some(password) = &options.password {
            config.password(password.as_bytes());
        }
        if config.get_application_name().is_none() {
            config.application_name("akted");
        }
        let place = describe_config(&config);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("akte-postgres")
            .enable_all()
            .build()
            .map_err(|e| PgError::new("start the runtime", FaultKind::Other, e.to_string()))?;
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match config.get_ssl_mode() {
            tokio_postgres::config::SslMode::Disable => {
                Manager::from_config(config, tokio_postgres::NoTls, manager_config)
            }
            _ => {
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(options)?);
                Manager::from_config(config, tls, manager_config)
            }
        };
        let pool = {
            let _guard = rt.enter();
            Pool::builder(manager)
                .max_size(options.pool_size.max(2))
                .runtime(deadpool_postgres::Runtime::Tokio1)
                // Waiting for a pooled connection under load is not a failure of the
                // database: only a long wait is.
                .wait_timeout(Some(options.op_timeout.min(Duration::from_secs(30))))
                .create_timeout(Some(options.connect_timeout))
                .recycle_timeout(Some(options.connect_timeout))
                .build()
                .map_err(|e| PgError::new("build the pool", FaultKind::Other, e.to_string()))?
        };
        let db = Arc::new(Db {
            handle: rt.handle().clone(),
            rt: Some(rt),
            pool,
            place,
            op_timeout: options.op_timeout,
        });
        db.run("connect", |c| async move {
            c.simple_query("SELECT 1")
                .await
                .map_err(|e| PgError::of("connect", &e))?;
            Ok(())
        })?;
        Ok(db)
    }

    /// The database, as messages name it (no credentials).
    pub(crate) fn place(&self) -> &str {
        &self.place
    }

    /// Runs `fut` on the database runtime and waits for it, from any thread, bounded by
    /// the operation timeout.
    pub(crate) fn block<T, F>(&self, op: &'static str, fut: F) -> Result<T, PgError>
    where
        F: Future<Output = Result<T, PgError>> + Send + 'static,
        T: Send + 'static,
    {
        ROUND_TRIPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        THREAD_ROUND_TRIPS.with(|c| c.set(c.get() + 1));
        *ROUND_TRIPS_BY_OP
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry((op, crate::journal::in_a_session()))
            .or_default() += 1;
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let timeout = self.op_timeout;
        self.handle.spawn(async move {
            let r = match tokio::time::timeout(timeout, fut).await {
                Ok(r) => r,
                Err(_) => Err(PgError::new(
                    op,
                    FaultKind::Unavailable,
                    format!("no answer within {} s", timeout.as_secs()),
                )),
            };
            let _ = tx.send(r);
        });
        rx.recv().unwrap_or_else(|_| {
            Err(PgError::new(
                op,
                FaultKind::Other,
                "the database task ended without an answer",
            ))
        })
    }

    /// Runs `fut` on the database runtime without waiting for it (clean-ups in `Drop`).
    pub(crate) fn detach<F>(&self, fut: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.handle.spawn(fut);
    }

    /// Runs `f` with a pooled connection (returned to the pool afterwards, or dropped if
    /// the operation failed in a way that may leave it unusable).
    pub(crate) fn run<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T, PgError>
    where
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, PgError>> + Send + 'static,
        T: Send + 'static,
    {
        let pool = self.pool.clone();
        self.block(op, async move {
            let client = pool.get().await.map_err(|e| PgError::of_pool(op, e))?;
            f(client).await
        })
    }

    /// A connection of its own, for a transaction that spans several calls.
    pub(crate) fn connection(&self, op: &'static str) -> Result<Object, PgError> {
        let pool = self.pool.clone();
        self.block(op, async move {
            pool.get().await.map_err(|e| PgError::of_pool(op, e))
        })
    }
}
