//! Starting and stopping the daemon: store, tokens, gRPC services with health and
//! reflection, TLS, the metrics endpoint, and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use akte_core::records::{Records, RecordsError};
use akte_core::store::{StoreError, StoreOptions};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::admission::{AdmissionLayer, AdmissionLimits};
use crate::auth::{AuthError, TokenStore};
use crate::config::ServerConfig;
use crate::conn::ConnLimits;
use crate::metrics::{serve_http, Metrics, MetricsLayer};
use crate::pb::akte::v1::access_service_server::AccessServiceServer;
use crate::pb::akte::v1::case_service_server::CaseServiceServer;
use crate::pb::akte::v1::custom_field_service_server::CustomFieldServiceServer;
use crate::pb::akte::v1::document_service_server::DocumentServiceServer;
use crate::pb::akte::v1::file_plan_service_server::FilePlanServiceServer;
use crate::pb::akte::v1::file_service_server::FileServiceServer;
use crate::pb::akte::v1::history_service_server::HistoryServiceServer;
use crate::pb::akte::v1::journal_service_server::JournalServiceServer;
use crate::pb::akte::v1::tenant_service_server::TenantServiceServer;
use crate::pb::akte::v1::verification_service_server::VerificationServiceServer;
use crate::pb::google::longrunning::operations_server::OperationsServer;

/// Decoding limit of DisposalService: the largest received message plus room for the
/// other fields.
const DISPOSAL_MESSAGE_LIMIT: usize = crate::service::MAX_RECEIVED_MESSAGE + (64 << 10);
use crate::operations::Operations;
use crate::page_token::PageTokens;
use crate::pb::akte::v1::disposal_service_server::DisposalServiceServer;
use crate::pb::akte::v1::hold_service_server::HoldServiceServer;
use crate::pb::akte::v1::migration_service_server::MigrationServiceServer;
use crate::pb::akte::v1::retention_service_server::RetentionServiceServer;
use crate::pb::akte::v1::search_service_server::SearchServiceServer;
use crate::pb::FILE_DESCRIPTOR_SET;
use crate::service::{Api, State};
use crate::uploads::Uploads;

/// The tokio runtime akted runs on (its `main` and the memory benchmark's daemon use it).
///
/// Its blocking pool is small on purpose (tokio's default is 512 threads): every call runs
/// its core work there, and each thread keeps its stack, a malloc arena's share and a zstd
/// context for as long as it lives, so with one thread per concurrent call 64 clients
/// cost 64 of each (192 MiB peak RSS instead of 94 in the memory benchmark). Only streamed
/// uploads hold a thread while they wait for the network, and the upload memory budget
/// admits few of them at once: the pool is those plus [`SPARE_BLOCKING_THREADS`].
pub fn runtime(cfg: &ServerConfig) -> std::io::Result<tokio::runtime::Runtime> {
    let uploads = (cfg.upload_memory_bytes / crate::upload::STREAMED_UPLOAD_MEMORY) as usize;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("akted")
        .max_blocking_threads(uploads.max(1) + SPARE_BLOCKING_THREADS)
        .build()
}

/// Blocking threads beyond those streamed uploads may hold.
pub const SPARE_BLOCKING_THREADS: usize = 8;

/// Errors starting or running the server.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Plain text was asked for on an address other than loopback.
    #[error("refusing to serve plain text on {0}: that is not a loopback address; configure tls_cert and tls_key")]
    PlainTextNotLoopback(SocketAddr),
    /// The store could not be opened.
    #[error("opening the data directory {path}: {source}")]
    Store {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: RecordsError,
    },
    /// Tokens could not be loaded or created.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The page token key could not be loaded or created.
    #[error(transparent)]
    PageTokens(#[from] crate::page_token::PageTokenError),
    /// The stored operations could not be read.
    #[error(transparent)]
    Operations(#[from] crate::operations::LoadError),
    /// A TLS file could not be read or used.
    #[error("TLS: {0}")]
    Tls(String),
    /// An address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The transport failed.
    #[error("gRPC transport: {0}")]
    Transport(String),
    /// Making the store durable at shutdown failed.
    #[error("flushing the store at shutdown: {0}")]
    Flush(String),
    /// A task failed.
    #[error("internal: {0}")]
    Internal(String),
}

/// A running server.
#[derive(Debug)]
pub struct Running {
    /// The gRPC address actually bound.
    pub addr: SocketAddr,
    /// The metrics address actually bound, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// Where the bootstrap token was written, when this start created one.
    pub bootstrap_token: Option<PathBuf>,
    state: Arc<State>,
    metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// The records the server serves (for tests and embedding).
    pub fn records(&self) -> &Records {
        &self.state.records
    }

    /// The full-text indexes (for tests and embedding: waiting for the indexer).
    pub fn fulltext(&self) -> &Arc<akte_fulltext::Fulltext> {
        &self.state.fulltext
    }

    /// The server's metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// A handle that triggers graceful shutdown.
    pub fn shutdown_handle(&self) -> watch::Sender<bool> {
        self.shutdown.clone()
    }

    /// Stops accepting, drains calls in flight (up to the drain deadline), flushes the
    /// store and returns.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let _ = self.shutdown.send(true);
        self.wait().await
    }

    /// Waits until the server has stopped (after a shutdown was triggered).
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task
            .await
            .map_err(|e| ServerError::Internal(format!("server task: {e}")))?
    }
}

/// Health service name whose status says whether every tenant accepts writes; each
/// tenant has its own as `akte.writes/<tenant>`.
pub const WRITES_HEALTH: &str = "akte.writes";

/// Once a second: which tenants accept writes, as health statuses an orchestrator can
/// watch (`akte.writes` and `akte.writes/<tenant>`: NOT_SERVING while a full disk or a
/// failing device keeps a tenant from writing). Looking a fenced or unavailable tenant up
/// also opens it again, so it heals without traffic too.
async fn watch_writes(
    health: tonic_health::server::HealthReporter,
    records: Records,
    stop: impl std::future::Future<Output = ()>,
) {
    use tonic_health::ServingStatus;
    tokio::pin!(stop);
    let mut last: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
    let mut all_last = None;
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
        }
        let store = records.store().clone();
        let states = tokio::task::spawn_blocking(move || {
            let mut out = Vec::new();
            for t in store.tenants() {
                let writable = t.fenced().is_none()
                    || store.tenant(t.id()).is_ok_and(|t| t.fenced().is_none());
                out.push((t.id().to_owned(), writable));
            }
            for id in store.unavailable_tenants().into_keys() {
                let writable = store.tenant(&id).is_ok_and(|t| t.fenced().is_none());
                out.push((id, writable));
            }
            out
        })
        .await
        .unwrap_or_default();
        let status = |ok: bool| {
            if ok {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            }
        };
        for (id, writable) in &states {
            if last.get(id) != Some(writable) {
                if !writable {
                    tracing::warn!(tenant = %id, "tenant accepts no writes; health akte.writes/{id} is NOT_SERVING until it heals");
                }
                health
                    .set_service_status(format!("{WRITES_HEALTH}/{id}"), status(*writable))
                    .await;
                last.insert(id.clone(), *writable);
            }
        }
        let all = states.iter().all(|(_, w)| *w);
        if all_last != Some(all) {
            health.set_service_status(WRITES_HEALTH, status(all)).await;
            all_last = Some(all);
        }
    }
}

async fn triggered(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Returns the allocator's free memory to the system once calls have come and gone and
/// none has been in flight for a check interval (`alloc.rs` says why).
async fn trim_when_idle(metrics: Arc<Metrics>, shutdown: impl std::future::Future<Output = ()>) {
    const EVERY: std::time::Duration = std::time::Duration::from_secs(3);
    tokio::pin!(shutdown);
    let mut seen = metrics.started();
    let mut dirty = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(EVERY) => {}
        }
        let started = metrics.started();
        let busy = started != seen || metrics.in_flight() > 0;
        seen = started;
        if busy {
            dirty = true;
        } else if dirty {
            dirty = false;
            let _ = tokio::task::spawn_blocking(crate::alloc::trim).await;
        }
    }
}

/// Collects unreferenced content of every tenant (akte_core::content_gc) every `every`,
/// the first time an hour after the start (or after `every`, if shorter), so that a
/// restarting instance does not list the whole store each time. Instances of a shared
/// installation each run it; removal is decided inside each tenant's append session, so
/// runs at the same time are harmless.
async fn collect_content(
    records: akte_core::records::Records,
    every: std::time::Duration,
    grace: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    let mut wait = every.min(std::time::Duration::from_secs(3600));
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = tokio::time::sleep(wait) => {}
        }
        wait = every;
        let records = records.clone();
        let ran = tokio::task::spawn_blocking(move || {
            let options = akte_core::content_gc::CollectOptions {
                grace,
                dry_run: false,
            };
            for t in records.store().tenants() {
                match akte_core::content_gc::collect_tenant(&t, chrono::Utc::now(), options) {
                    Ok(r) => {
                        for p in &r.problems {
                            tracing::warn!(tenant = t.id(), problem = %p, "collecting content");
                        }
                    }
                    Err(e) => {
                        tracing::warn!(tenant = t.id(), error = %e, "collecting content failed")
                    }
                }
            }
        })
        .await;
        if let Err(e) = ran {
            tracing::error!(error = %e, "the content collection task failed");
        }
    }
}

fn read_pem(path: &PathBuf) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|e| ServerError::Tls(format!("reading {}: {e}", path.display())))
}

/// How often an instance of a shared installation takes the tokens other instances
/// created or deleted: a deleted token stops working everywhere within this time.
const TOKEN_REFRESH: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps the token store in step with the installation's stored tokens (the database's
/// copy, which every instance of a shared installation replaces).
async fn refresh_tokens(state: Arc<State>, mut draining: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(TOKEN_REFRESH);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = draining.changed() => return,
        }
        let Ok((meta, generation)) = state.tokens.read().map(|t| (t.meta(), t.generation())) else {
            return;
        };
        let read = tokio::task::spawn_blocking(move || meta.get(crate::auth::TOKEN_FILE)).await;
        let bytes = match read {
            Ok(Ok(bytes)) => bytes,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "reading the installation's tokens failed; keeping the known ones");
                continue;
            }
            Err(_) => continue,
        };
        let Ok(mut tokens) = state.tokens.write() else {
            return;
        };
        // A token created or deleted here after the read is newer than what was read:
        // `refresh` keeps it, and the next round reads the blob again.
        if let Err(e) = tokens.refresh(generation, bytes) {
            tracing::warn!(error = %e, "the installation's stored tokens do not load; keeping the known ones");
        }
    }
}

/// The backend the configuration names: PostgreSQL when a database is configured (with
/// the upload sessions it keeps; the data directory then holds only this instance's
/// scratch files), else the data directory.
fn open_backend(
    dir: &std::path::Path,
    database: Option<&crate::config::DatabaseConfig>,
) -> Result<
    (
        Arc<dyn akte_core::backend::Backend>,
        Option<akte_postgres::uploads::PgUploads>,
    ),
    akte_core::backend::BackendError,
> {
    let Some(db) = database else {
        return Ok((akte_core::embedded::open(dir)?, None));
    };
    std::fs::create_dir_all(dir).map_err(|e| {
        akte_core::backend::BackendError::Io(akte_core::backend::IoFailure::new(
            "create",
            dir.display().to_string(),
            e,
        ))
    })?;
    let options = akte_postgres::PgOptions {
        pool_size: db.pool_size,
        ca_file: db.ca.clone(),
        password: db.password.clone(),
        seal_key: db.seal_key.clone(),
        content: db.content.clone(),
        ..akte_postgres::PgOptions::default()
    };
    let backend = akte_postgres::PgBackend::connect(&db.url, options)?;
    tracing::info!(backend = %akte_core::backend::Backend::describe(backend.as_ref()), "records in PostgreSQL");
    let uploads = backend.uploads();
    Ok((backend, Some(uploads)))
}

/// Starts the server and returns once it accepts calls.
pub async fn start(cfg: ServerConfig) -> Result<Running, ServerError> {
    if cfg.tls.is_none() {
        if !cfg.listen.ip().is_loopback() {
            return Err(ServerError::PlainTextNotLoopback(cfg.listen));
        }
        tracing::warn!(listen = %cfg.listen, "serving plain text (no TLS) on loopback; configure tls_cert and tls_key before serving other hosts");
    }
    if let Some(m) = cfg.metrics_listen {
        if !m.ip().is_loopback() {
            tracing::warn!(metrics = %m, "the metrics endpoint (no authentication) listens beyond loopback");
        }
    }
    let dir = cfg.data_dir.clone();
    let origin_prefix = cfg.origin_prefix.clone();
    let configured = cfg.tokens.clone();
    let database = cfg.database.clone();
    let heartbeat = cfg.operation_heartbeat;
    let fulltext_root = cfg.fulltext_root();
    let opened = tokio::task::spawn_blocking(move || {
        let options = StoreOptions {
            origin_prefix,
            ..StoreOptions::default()
        };
        let store_error = |source: RecordsError| ServerError::Store {
            path: dir.clone(),
            source,
        };
        let (backend, shared_uploads) = open_backend(&dir, database.as_ref())
            .map_err(|e| store_error(RecordsError::from(StoreError::from(e))))?;
        let install = backend.installation_meta();
        let records = Records::open(backend, options).map_err(store_error)?;
        // ZIPs of disposal streams a crash interrupted (the store lock is ours now).
        crate::service::remove_temporary_zips(&dir);
        let mut tokens = TokenStore::load(install.clone(), configured)?;
        let bootstrap = tokens.bootstrap(&dir)?;
        // Instances of one installation share the page-token key through the database;
        // a data directory keeps its own.
        let page_tokens = match &database {
            Some(_) => PageTokens::load_or_create_shared(install.as_ref())?,
            None => PageTokens::load_or_create(&dir)?,
        };
        let operations = match database {
            Some(_) => Operations::open_shared(&dir, install.clone(), heartbeat),
            None => Arc::new(Operations::open(&dir)?),
        };
        let uploads = match shared_uploads {
            Some(db) => Uploads::open_shared(&dir, db),
            None => Uploads::open(&dir),
        };
        // Follows every tenant's journal in a thread of its own; writes never wait for it.
        let fulltext = akte_fulltext::Fulltext::start(records.clone(), fulltext_root)
            .map_err(|e| ServerError::Internal(format!("starting the full-text indexer: {e}")))?;
        Ok::<_, ServerError>((
            records,
            tokens,
            bootstrap,
            page_tokens,
            operations,
            uploads,
            fulltext,
        ))
    })
    .await
    .map_err(|e| ServerError::Internal(e.to_string()))??;
    let (records, tokens, bootstrap, page_tokens, operations, uploads, fulltext) = opened;
    if let Some(p) = &bootstrap {
        tracing::warn!(path = %p.display(), "no token was configured: created an admin token for all tenants and wrote it to this file (mode 0600); create tenants and their tokens with it, then delete the file");
    }
    // Turns true when shutdown starts: the services answer SHUTTING_DOWN from then on.
    let (shutdown, rx) = watch::channel(false);
    let state = Arc::new(State {
        records,
        tokens: RwLock::new(tokens),
        verify_lock: Arc::new(tokio::sync::Mutex::new(())),
        scratch_dir: cfg.data_dir.clone(),
        upload_idle: cfg.upload_idle_timeout,
        page_tokens,
        operations,
        uploads: Arc::new(uploads),
        draining: rx.clone(),
        watchers: Arc::new(tokio::sync::Semaphore::new(crate::service::MAX_WATCHERS)),
        upload_memory: crate::upload::UploadMemory::new(cfg.upload_memory_bytes),
        fulltext: Arc::new(fulltext),
    });
    if cfg.database.is_some() {
        tokio::spawn(refresh_tokens(state.clone(), rx.clone()));
    }
    let api = Api::new(state.clone());
    let metrics = Arc::new(Metrics::default());

    let listener = TcpListener::bind(cfg.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: cfg.listen,
        source,
    })?;
    let metrics_listener = match cfg.metrics_listen {
        Some(m) => Some(
            TcpListener::bind(m)
                .await
                .map_err(|source| ServerError::Bind { addr: m, source })?,
        ),
        None => None,
    };
    let metrics_addr = match &metrics_listener {
        Some(l) => Some(l.local_addr().map_err(|source| ServerError::Bind {
            addr: cfg.listen,
            source,
        })?),
        None => None,
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<TenantServiceServer<Api>>().await;
    health.set_serving::<FilePlanServiceServer<Api>>().await;
    health.set_serving::<FileServiceServer<Api>>().await;
    health.set_serving::<CaseServiceServer<Api>>().await;
    health.set_serving::<DocumentServiceServer<Api>>().await;
    health.set_serving::<HistoryServiceServer<Api>>().await;
    health.set_serving::<JournalServiceServer<Api>>().await;
    health.set_serving::<VerificationServiceServer<Api>>().await;
    health.set_serving::<RetentionServiceServer<Api>>().await;
    health.set_serving::<HoldServiceServer<Api>>().await;
    health.set_serving::<DisposalServiceServer<Api>>().await;
    health.set_serving::<MigrationServiceServer<Api>>().await;
    health.set_serving::<SearchServiceServer<Api>>().await;
    health.set_serving::<OperationsServer<Api>>().await;
    health.set_serving::<AccessServiceServer<Api>>().await;
    health.set_serving::<CustomFieldServiceServer<Api>>().await;
    // Reflection in both versions: grpcurl and current tools speak v1, many others
    // (Python's grpcio-reflection, older grpcurl, Postman, Kreya) only v1alpha.
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1()
        .map_err(|e| ServerError::Internal(format!("reflection: {e}")))?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
        .build_v1alpha()
        .map_err(|e| ServerError::Internal(format!("reflection: {e}")))?;

    let max = cfg.max_message_bytes;
    macro_rules! limited {
        ($server:ident) => {
            $server::new(api.clone())
                .max_decoding_message_size(max)
                .max_encoding_message_size(max)
        };
    }

    // hyper's HTTP/2 settings: keepalive finds dead peers; the stream and header limits
    // bound what one connection can make the server hold (hyper's own defaults allow
    // unlimited streams once tonic passes its `None` on).
    let mut builder = Server::builder()
        .timeout(cfg.request_timeout)
        .http2_keepalive_interval(Some(cfg.keepalive_interval))
        .http2_keepalive_timeout(Some(cfg.keepalive_timeout))
        .max_concurrent_streams(cfg.max_streams_per_connection)
        // What a client may push before the server reads it: hyper's 1 MiB per stream and
        // per connection made 64 uploading clients cost 64 MiB of receive buffers.
        .initial_stream_window_size(256 << 10)
        .initial_connection_window_size(512 << 10)
        .http2_max_header_list_size(16 << 10);
    if let Some(age) = cfg.max_connection_age {
        builder = builder.max_connection_age(age);
    }
    if let Some(tls) = &cfg.tls {
        let identity = Identity::from_pem(read_pem(&tls.cert)?, read_pem(&tls.key)?);
        let mut t = ServerTlsConfig::new()
            .identity(identity)
            .timeout(cfg.header_timeout);
        if let Some(ca) = &tls.client_ca {
            t = t.client_ca_root(Certificate::from_pem(read_pem(ca)?));
        }
        builder = builder
            .tls_config(t)
            .map_err(|e| ServerError::Tls(e.to_string()))?;
    }
    let router = builder
        .layer(MetricsLayer::new(metrics.clone()))
        .layer(AdmissionLayer::new(
            state.clone(),
            metrics.clone(),
            AdmissionLimits {
                max_concurrent: cfg.max_concurrent_requests,
                max_per_principal: cfg.max_concurrent_per_principal,
                first_message_timeout: cfg.first_message_timeout,
            },
        ))
        .add_service(health_service)
        .add_service(reflection)
        .add_service(reflection_v1alpha)
        .add_service(limited!(OperationsServer))
        .add_service(limited!(TenantServiceServer))
        .add_service(limited!(FilePlanServiceServer))
        .add_service(limited!(FileServiceServer))
        .add_service(limited!(CaseServiceServer))
        // CreateDocument takes a first version of up to 4 MiB inline, with its metadata.
        .add_service(
            DocumentServiceServer::new(api.clone())
                .max_decoding_message_size(max.max(
                    akte_api::limits::MAX_INLINE_CONTENT
                        + akte_api::limits::CREATE_DOCUMENT_METADATA,
                ))
                .max_encoding_message_size(max),
        )
        .add_service(limited!(HistoryServiceServer))
        .add_service(limited!(JournalServiceServer))
        .add_service(limited!(VerificationServiceServer))
        .add_service(limited!(RetentionServiceServer))
        .add_service(limited!(HoldServiceServer))
        .add_service(limited!(SearchServiceServer))
        .add_service(limited!(AccessServiceServer))
        .add_service(limited!(CustomFieldServiceServer))
        // ReceiveMessage takes an archive message of up to 16 MiB in one request.
        .add_service(
            DisposalServiceServer::new(api.clone())
                .max_decoding_message_size(max.max(DISPOSAL_MESSAGE_LIMIT))
                .max_encoding_message_size(max),
        )
        // A 0402, 0403 or 0301 of up to 16 MiB in one request; the 0402 answer of a
        // large import may be as large.
        .add_service(
            MigrationServiceServer::new(api.clone())
                .max_decoding_message_size(max.max(DISPOSAL_MESSAGE_LIMIT))
                .max_encoding_message_size(max.max(DISPOSAL_MESSAGE_LIMIT)),
        );

    tokio::spawn(watch_writes(
        health.clone(),
        state.records.clone(),
        triggered(rx.clone()),
    ));
    tokio::spawn(trim_when_idle(metrics.clone(), triggered(rx.clone())));
    if let Some(every) = cfg.content_gc_interval {
        tokio::spawn(collect_content(
            state.records.clone(),
            every,
            cfg.content_gc_grace,
            triggered(rx.clone()),
        ));
    }
    if let Some(l) = metrics_listener {
        tokio::spawn(serve_http(
            l,
            metrics.clone(),
            state.records.clone(),
            triggered(rx.clone()),
        ));
    }
    let incoming = crate::conn::incoming(
        listener,
        ConnLimits {
            header_timeout: cfg.header_timeout,
            idle_timeout: cfg.idle_timeout,
            max_connections: cfg.max_connections,
        },
        metrics.clone(),
    );
    let signal = {
        let rx = rx.clone();
        let health = health.clone();
        async move {
            triggered(rx).await;
            tracing::info!("shutting down: no new connections; draining calls in flight");
            health
                .set_service_status("", tonic_health::ServingStatus::NotServing)
                .await;
        }
    };
    let drain = cfg.drain_timeout;
    let task_state = state.clone();
    let task = tokio::spawn(async move {
        let mut serve = Box::pin(router.serve_with_incoming_shutdown(incoming, signal));
        let deadline = async {
            triggered(rx).await;
            tokio::time::sleep(drain).await;
        };
        let served = tokio::select! {
            r = &mut serve => r.map_err(|e| ServerError::Transport(e.to_string())),
            _ = deadline => {
                tracing::warn!(seconds = drain.as_secs(), "drain deadline passed; dropping the calls still in flight (none of them was acknowledged)");
                Ok(())
            }
        };
        // Whatever is left of the server (after a missed drain deadline) goes before the flush.
        drop(serve);
        // Transfers and imports stop (ending as interrupted); verifications and
        // destructions get the drain deadline to finish.
        task_state.operations.shutdown(drain).await;
        let flushed = tokio::task::spawn_blocking(move || {
            // The indexer ends its batch first (its position is committed with it).
            task_state.fulltext.stop();
            task_state.records.store().flush()
        })
        .await
        .map_err(|e| ServerError::Internal(e.to_string()))?;
        flushed.map_err(|e| ServerError::Flush(e.to_string()))?;
        tracing::info!("stopped; the store is flushed");
        served
    });
    tracing::info!(%addr, metrics = ?metrics_addr, tls = cfg.tls.is_some(), "akted listening");
    Ok(Running {
        addr,
        metrics_addr,
        bootstrap_token: bootstrap,
        state,
        metrics,
        shutdown,
        task,
    })
}
