//! Configuration of akted: defaults, overridden by a TOML file (`--config`), overridden by
//! environment variables (`AKTED_*`), overridden by flags.
//!
//! ```toml
//! data_dir = "/var/lib/akte"
//! # The Kommunal-Cloud: records in PostgreSQL, shared by every akted instance; data_dir
//! # then holds only this instance's scratch files (operations and upload sessions are
//! # in the database too, so that any instance serves them).
//! database = "postgres://akte@db.example:5432/akte?sslmode=require"
//! database_password_file = "/etc/akte/db-password"  # or AKTED_DATABASE_PASSWORD
//! database_ca = "/etc/akte/db-ca.pem"               # CA of the server's certificate
//! database_key_file = "/etc/akte/db-seal.key"       # 64 hex digits: seals signing keys
//! content = "s3://akte-dokumente?endpoint=https://s3.rz.example&region=de-1"  # optional
//! content_credentials_file = "/etc/akte/s3-credentials"  # key id, secret (two lines)
//! database_pool_size = 24
//! listen = "0.0.0.0:50051"          # not loopback: TLS required
//! metrics_listen = "127.0.0.1:9464" # or "off"
//! tls_cert = "/etc/akte/server.pem"
//! tls_key = "/etc/akte/server.key"
//! client_ca = "/etc/akte/clients-ca.pem"  # mutual TLS
//! max_concurrent_requests = 64
//! max_concurrent_per_principal = 32   # default: half of max_concurrent_requests
//! upload_memory_mib = 48            # what all uploads together may buffer
//! max_connections = 2048
//! max_streams_per_connection = 100
//! header_timeout_secs = 10          # a new connection's first admitted call, and TLS
//! first_message_timeout_secs = 10   # from a call's headers to the end of its first message
//! idle_timeout_secs = 300           # a connection without calls is closed
//! max_connection_age_secs = 86400   # optional: connections are asked to go (GOAWAY)
//! keepalive_interval_secs = 30      # HTTP/2 pings find dead peers
//! keepalive_timeout_secs = 20
//! operation_heartbeat_ms = 5000     # with a database: progress of running operations is
//!                                   # stored this often; 3 missed writes = interrupted
//! content_gc_interval_hours = 24    # collect content no entry refers to; 0 = never
//! content_gc_grace_hours = 24       # unreferenced this long before it is removed
//! fulltext_dir = "/var/cache/akte/fulltext"  # this instance's full-text indexes (derived,
//!                                   # rebuilt from the journal); default: data_dir/index
//!
//! [[tokens]]                        # only the SHA-256 of the token: printf %s "$T" | sha256sum
//! sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
//! principal = "fachverfahren:bauamt"
//! tenant = "bauamt"                 # or "*" for all tenants
//! roles = ["clerk"]
//! expires = "2027-06-30T00:00:00Z"  # optional; refused from then on
//! ```

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::auth::TokenRecord;

/// Default gRPC address.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:50051";
/// Default metrics address.
pub const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";
/// Largest gRPC message by default (upload chunks are at most 1 MiB).
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Between two stored writes of a running operation on a shared backend, by default.
pub const DEFAULT_OPERATION_HEARTBEAT: Duration = Duration::from_secs(5);

/// Configuration errors.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading configuration file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML for akted.
    #[error("configuration file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// A value is invalid.
    #[error("invalid {key}: {reason}")]
    Invalid {
        /// The setting.
        key: &'static str,
        /// Why.
        reason: String,
    },
}

/// The TOML configuration file; every key is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Data directory.
    pub data_dir: Option<PathBuf>,
    /// Where this instance keeps its full-text indexes.
    pub fulltext_dir: Option<PathBuf>,
    /// gRPC address.
    pub listen: Option<String>,
    /// Metrics address, or "off".
    pub metrics_listen: Option<String>,
    /// Server certificate chain (PEM).
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA certificate(s) of client certificates (PEM); enables mutual TLS.
    pub client_ca: Option<PathBuf>,
    /// Most calls served at once.
    pub max_concurrent_requests: Option<usize>,
    /// Most calls of one principal at once.
    pub max_concurrent_per_principal: Option<usize>,
    /// Most client connections open at once.
    pub max_connections: Option<usize>,
    /// Most concurrent HTTP/2 streams (calls) on one connection.
    pub max_streams_per_connection: Option<u32>,
    /// Seconds a new connection has for its first admitted call.
    pub header_timeout_secs: Option<u64>,
    /// Seconds from a call's headers to the end of its first message.
    pub first_message_timeout_secs: Option<u64>,
    /// Seconds a connection without calls stays open.
    pub idle_timeout_secs: Option<u64>,
    /// Seconds after which a connection is asked to go (GOAWAY); none by default.
    pub max_connection_age_secs: Option<u64>,
    /// Seconds between HTTP/2 keepalive pings.
    pub keepalive_interval_secs: Option<u64>,
    /// Seconds a keepalive ping may go unanswered before the connection is closed.
    pub keepalive_timeout_secs: Option<u64>,
    /// Largest gRPC message, bytes.
    pub max_message_bytes: Option<usize>,
    /// MiB all uploads together may buffer in memory.
    pub upload_memory_mib: Option<u64>,
    /// How long shutdown waits for calls in flight, seconds.
    pub drain_timeout_secs: Option<u64>,
    /// Longest call, seconds (uploads included).
    pub request_timeout_secs: Option<u64>,
    /// Longest pause within an upload stream, seconds.
    pub upload_idle_timeout_secs: Option<u64>,
    /// Milliseconds between the stored progress writes of a running operation (with a
    /// database); an operation without a write for three of them counts as interrupted.
    pub operation_heartbeat_ms: Option<u64>,
    /// Hours between two collections of unreferenced content; 0 turns it off.
    pub content_gc_interval_hours: Option<u64>,
    /// Hours content must have been seen unreferenced before it is collected.
    pub content_gc_grace_hours: Option<u64>,
    /// Prefix of new tenants' checkpoint origins.
    pub origin_prefix: Option<String>,
    /// PostgreSQL connection string of the distributed backend.
    pub database: Option<String>,
    /// File holding the database password.
    pub database_password_file: Option<PathBuf>,
    /// CA certificates of the database server (PEM).
    pub database_ca: Option<PathBuf>,
    /// Database connections per instance.
    pub database_pool_size: Option<usize>,
    /// File with the key (64 hex digits) that seals secret blobs in the database.
    pub database_key_file: Option<PathBuf>,
    /// Document content in S3-compatible object storage (with a database only).
    pub content: Option<String>,
    /// File with the object storage's access key id and secret (two lines).
    pub content_credentials_file: Option<PathBuf>,
    /// Tokens, by their SHA-256.
    #[serde(default)]
    pub tokens: Vec<TokenRecord>,
}

impl FileConfig {
    /// Parses the text of the configuration file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<FileConfig, ConfigError> {
        toml::from_str::<FileConfig>(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// Settings given as flags or environment variables (flags win).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct Overrides {
    /// TOML configuration file.
    #[arg(long, env = "AKTED_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (created on first start) [default: ./data].
    #[arg(long, env = "AKTED_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// This instance's full-text indexes, one directory per tenant: derived from the
    /// journal, rebuilt when missing [default: the data directory's index/].
    #[arg(long, env = "AKTED_FULLTEXT_DIR")]
    pub fulltext_dir: Option<PathBuf>,
    /// gRPC address [default: 127.0.0.1:50051]. Plain text only on loopback.
    #[arg(long, env = "AKTED_LISTEN")]
    pub listen: Option<String>,
    /// Prometheus metrics address, or "off" [default: 127.0.0.1:9464].
    #[arg(long, env = "AKTED_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    /// Server certificate chain, PEM (enables TLS).
    #[arg(long, env = "AKTED_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// Server private key, PEM.
    #[arg(long, env = "AKTED_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// CA of client certificates, PEM (enables mutual TLS).
    #[arg(long, env = "AKTED_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,
    /// Most calls served at once; more get RESOURCE_EXHAUSTED [default: 64].
    #[arg(long, env = "AKTED_MAX_CONCURRENT_REQUESTS")]
    pub max_concurrent_requests: Option<usize>,
    /// Most calls of one principal (token holder) at once; more get RESOURCE_EXHAUSTED
    /// [default: half of --max-concurrent-requests].
    #[arg(long, env = "AKTED_MAX_CONCURRENT_PER_PRINCIPAL")]
    pub max_concurrent_per_principal: Option<usize>,
    /// Most client connections open at once; beyond, new ones are closed [default: 2048].
    #[arg(long, env = "AKTED_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Most concurrent calls (HTTP/2 streams) on one connection [default: 100].
    #[arg(long, env = "AKTED_MAX_STREAMS_PER_CONNECTION")]
    pub max_streams_per_connection: Option<u32>,
    /// Seconds a new connection has for its first authenticated call (TLS handshake and
    /// headers included); then it is closed [default: 10].
    #[arg(long, env = "AKTED_HEADER_TIMEOUT_SECS")]
    pub header_timeout_secs: Option<u64>,
    /// Seconds from a call's headers to the end of its first message; a call that stalls
    /// longer gets DEADLINE_EXCEEDED [default: 10].
    #[arg(long, env = "AKTED_FIRST_MESSAGE_TIMEOUT_SECS")]
    pub first_message_timeout_secs: Option<u64>,
    /// Seconds a connection without calls stays open [default: 300].
    #[arg(long, env = "AKTED_IDLE_TIMEOUT_SECS")]
    pub idle_timeout_secs: Option<u64>,
    /// Seconds after which a connection is asked to go (HTTP/2 GOAWAY; calls in flight
    /// finish) [default: none].
    #[arg(long, env = "AKTED_MAX_CONNECTION_AGE_SECS")]
    pub max_connection_age_secs: Option<u64>,
    /// Seconds between HTTP/2 keepalive pings to the client [default: 30].
    #[arg(long, env = "AKTED_KEEPALIVE_INTERVAL_SECS")]
    pub keepalive_interval_secs: Option<u64>,
    /// Seconds a keepalive ping may go unanswered before the connection is closed
    /// [default: 20].
    #[arg(long, env = "AKTED_KEEPALIVE_TIMEOUT_SECS")]
    pub keepalive_timeout_secs: Option<u64>,
    /// Largest gRPC message in bytes [default: 4194304].
    #[arg(long, env = "AKTED_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// MiB all uploads together may buffer in memory; more uploads wait [default: 48].
    #[arg(long, env = "AKTED_UPLOAD_MEMORY_MIB")]
    pub upload_memory_mib: Option<u64>,
    /// Seconds shutdown waits for calls in flight [default: 30].
    #[arg(long, env = "AKTED_DRAIN_TIMEOUT_SECS")]
    pub drain_timeout_secs: Option<u64>,
    /// Longest call in seconds, uploads included [default: 3600].
    #[arg(long, env = "AKTED_REQUEST_TIMEOUT_SECS")]
    pub request_timeout_secs: Option<u64>,
    /// Longest pause within an upload stream in seconds [default: 60].
    #[arg(long, env = "AKTED_UPLOAD_IDLE_TIMEOUT_SECS")]
    pub upload_idle_timeout_secs: Option<u64>,
    /// Prefix of new tenants' checkpoint origins [default: akte.local].
    #[arg(long, env = "AKTED_ORIGIN_PREFIX")]
    pub origin_prefix: Option<String>,
    /// PostgreSQL connection string (postgres://user@host:port/db?sslmode=require): keep
    /// the records there, shared by every instance, instead of in the data directory.
    #[arg(long, env = "AKTED_DATABASE", hide_env_values = true)]
    pub database: Option<String>,
    /// File holding the database password (instead of a password in the string).
    #[arg(long, env = "AKTED_DATABASE_PASSWORD_FILE")]
    pub database_password_file: Option<PathBuf>,
    /// CA certificates of the database server, PEM [default: the system's].
    #[arg(long, env = "AKTED_DATABASE_CA")]
    pub database_ca: Option<PathBuf>,
    /// File with the key (64 hex digits, the same on every instance) that seals signing
    /// keys and tokens in the database.
    #[arg(long, env = "AKTED_DATABASE_KEY_FILE")]
    pub database_key_file: Option<PathBuf>,
    /// Document content in S3-compatible object storage instead of the database:
    /// s3://bucket[/prefix]?endpoint=https://…&region=… (credentials from
    /// --content-credentials-file or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY).
    #[arg(long, env = "AKTED_CONTENT")]
    pub content: Option<String>,
    /// File with the object storage's access key id (first line) and secret (second).
    #[arg(long, env = "AKTED_CONTENT_CREDENTIALS_FILE")]
    pub content_credentials_file: Option<PathBuf>,
}

/// The distributed backend's database.
#[derive(Clone)]
pub struct DatabaseConfig {
    /// Connection string (may hold a password: never logged).
    pub url: String,
    /// Password, from a file or the environment.
    pub password: Option<String>,
    /// CA certificates of the server.
    pub ca: Option<PathBuf>,
    /// Connections per instance.
    pub pool_size: usize,
    /// The key that seals secret blobs.
    pub seal_key: Option<akte_postgres::seal::SealKey>,
    /// Content in object storage, if configured.
    pub content: Option<akte_postgres::s3::S3Options>,
}

impl std::fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DatabaseConfig")
            .field("url", &"<redacted>")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("ca", &self.ca)
            .field("pool_size", &self.pool_size)
            .field("seal_key", &self.seal_key)
            .field("content", &self.content)
            .finish()
    }
}

/// TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// Certificate chain.
    pub cert: PathBuf,
    /// Private key.
    pub key: PathBuf,
    /// Client CA for mutual TLS.
    pub client_ca: Option<PathBuf>,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// gRPC address (port 0: any free port).
    pub listen: SocketAddr,
    /// Metrics address; `None` disables the endpoint.
    pub metrics_listen: Option<SocketAddr>,
    /// TLS, if any.
    pub tls: Option<TlsFiles>,
    /// Most calls at once.
    pub max_concurrent_requests: usize,
    /// Most calls of one principal at once.
    pub max_concurrent_per_principal: usize,
    /// Most client connections at once.
    pub max_connections: usize,
    /// Most concurrent calls on one connection.
    pub max_streams_per_connection: u32,
    /// A new connection's time for its first admitted call.
    pub header_timeout: Duration,
    /// From a call's headers to the end of its first message.
    pub first_message_timeout: Duration,
    /// How long a connection without calls stays open.
    pub idle_timeout: Duration,
    /// When a connection is asked to go, if ever.
    pub max_connection_age: Option<Duration>,
    /// HTTP/2 keepalive ping interval.
    pub keepalive_interval: Duration,
    /// HTTP/2 keepalive ping timeout.
    pub keepalive_timeout: Duration,
    /// Largest gRPC message.
    pub max_message_bytes: usize,
    /// What all uploads together may buffer.
    pub upload_memory_bytes: u64,
    /// Shutdown drain deadline.
    pub drain_timeout: Duration,
    /// Longest call.
    pub request_timeout: Duration,
    /// Longest pause in an upload.
    pub upload_idle_timeout: Duration,
    /// Between two stored progress writes of a running operation (shared backend).
    pub operation_heartbeat: Duration,
    /// Between two collections of unreferenced content (`None`: never).
    pub content_gc_interval: Option<Duration>,
    /// How long content must have been unreferenced before it is collected.
    pub content_gc_grace: Duration,
    /// Checkpoint origin prefix.
    pub origin_prefix: String,
    /// Configured tokens.
    pub tokens: Vec<TokenRecord>,
    /// The distributed backend, if configured (the data directory otherwise).
    pub database: Option<DatabaseConfig>,
    /// Where this instance keeps its full-text indexes (`<dir>/<tenant>/fulltext`);
    /// `None`: the data directory's `index/`. With a database every instance keeps its
    /// own, caught up from the shared journals.
    pub fulltext_dir: Option<PathBuf>,
}

impl ServerConfig {
    /// Defaults for a data directory: loopback, no TLS, metrics on 127.0.0.1:9464.
    pub fn new(data_dir: &Path) -> ServerConfig {
        ServerConfig {
            data_dir: data_dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            metrics_listen: Some(SocketAddr::from(([127, 0, 0, 1], 9464))),
            tls: None,
            max_concurrent_requests: 64,
            max_concurrent_per_principal: 32,
            max_connections: 2048,
            max_streams_per_connection: 100,
            header_timeout: Duration::from_secs(10),
            first_message_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(300),
            max_connection_age: None,
            keepalive_interval: Duration::from_secs(30),
            keepalive_timeout: Duration::from_secs(20),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            upload_memory_bytes: 48 << 20,
            drain_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(3600),
            upload_idle_timeout: Duration::from_secs(60),
            operation_heartbeat: DEFAULT_OPERATION_HEARTBEAT,
            content_gc_interval: Some(Duration::from_secs(24 * 3600)),
            content_gc_grace: akte_core::content_gc::DEFAULT_GRACE,
            origin_prefix: "akte.local".into(),
            tokens: Vec::new(),
            database: None,
            fulltext_dir: None,
        }
    }

    /// The root of this instance's full-text indexes.
    pub fn fulltext_root(&self) -> PathBuf {
        self.fulltext_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("index"))
    }

    /// Resolves file, environment and flags into a configuration.
    pub fn resolve(o: &Overrides) -> Result<ServerConfig, ConfigError> {
        let file = match &o.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.clone(),
                    source,
                })?;
                FileConfig::parse(&text, path)?
            }
            None => FileConfig::default(),
        };
        ServerConfig::combine(o, file)
    }

    /// The configuration of a parsed file overridden by `o` (whose `config` is ignored).
    pub fn combine(o: &Overrides, file: FileConfig) -> Result<ServerConfig, ConfigError> {
        let data_dir = o
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let mut c = ServerConfig::new(&data_dir);
        c.fulltext_dir = o.fulltext_dir.clone().or(file.fulltext_dir);
        let listen = o
            .listen
            .clone()
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.into());
        c.listen = addr("listen", &listen)?;
        let metrics = o
            .metrics_listen
            .clone()
            .or(file.metrics_listen)
            .unwrap_or_else(|| DEFAULT_METRICS_LISTEN.into());
        c.metrics_listen = match metrics.as_str() {
            "off" | "" => None,
            m => Some(addr("metrics_listen", m)?),
        };
        let cert = o.tls_cert.clone().or(file.tls_cert);
        let key = o.tls_key.clone().or(file.tls_key);
        let client_ca = o.client_ca.clone().or(file.client_ca);
        c.tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert,
                key,
                client_ca,
            }),
            (None, None) if client_ca.is_none() => None,
            _ => {
                return Err(ConfigError::Invalid {
                    key: "tls_cert",
                    reason: "TLS needs both tls_cert and tls_key (and client_ca only with them)"
                        .into(),
                })
            }
        };
        if let Some(n) = o.max_concurrent_requests.or(file.max_concurrent_requests) {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    key: "max_concurrent_requests",
                    reason: "must be at least 1".into(),
                });
            }
            c.max_concurrent_requests = n;
        }
        c.max_concurrent_per_principal = match o
            .max_concurrent_per_principal
            .or(file.max_concurrent_per_principal)
        {
            Some(0) => {
                return Err(ConfigError::Invalid {
                    key: "max_concurrent_per_principal",
                    reason: "must be at least 1".into(),
                })
            }
            Some(n) => n,
            None => (c.max_concurrent_requests / 2).max(1),
        };
        if let Some(n) = o.max_connections.or(file.max_connections) {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    key: "max_connections",
                    reason: "must be at least 1".into(),
                });
            }
            c.max_connections = n;
        }
        if let Some(n) = o
            .max_streams_per_connection
            .or(file.max_streams_per_connection)
        {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    key: "max_streams_per_connection",
                    reason: "must be at least 1".into(),
                });
            }
            c.max_streams_per_connection = n;
        }
        if let Some(n) = o.max_message_bytes.or(file.max_message_bytes) {
            if n < (1 << 20) + 4096 {
                return Err(ConfigError::Invalid {
                    key: "max_message_bytes",
                    reason: "must leave room for a 1 MiB chunk (at least 1052672)".into(),
                });
            }
            c.max_message_bytes = n;
        }
        if let Some(mib) = o.upload_memory_mib.or(file.upload_memory_mib) {
            if !(6..=65536).contains(&mib) {
                return Err(ConfigError::Invalid {
                    key: "upload_memory_mib",
                    reason: "must be 6 (one streamed upload) to 65536".into(),
                });
            }
            c.upload_memory_bytes = mib << 20;
        }
        let secs =
            |v: Option<u64>, key: &'static str, d: Duration| -> Result<Duration, ConfigError> {
                match v {
                    None => Ok(d),
                    Some(0) => Err(ConfigError::Invalid {
                        key,
                        reason: "must be at least 1 second".into(),
                    }),
                    Some(s) => Ok(Duration::from_secs(s)),
                }
            };
        c.drain_timeout = secs(
            o.drain_timeout_secs.or(file.drain_timeout_secs),
            "drain_timeout_secs",
            c.drain_timeout,
        )?;
        c.request_timeout = secs(
            o.request_timeout_secs.or(file.request_timeout_secs),
            "request_timeout_secs",
            c.request_timeout,
        )?;
        c.upload_idle_timeout = secs(
            o.upload_idle_timeout_secs.or(file.upload_idle_timeout_secs),
            "upload_idle_timeout_secs",
            c.upload_idle_timeout,
        )?;
        if let Some(ms) = file.operation_heartbeat_ms {
            if !(50..=60_000).contains(&ms) {
                return Err(ConfigError::Invalid {
                    key: "operation_heartbeat_ms",
                    reason: "must be 50 to 60000".into(),
                });
            }
            c.operation_heartbeat = Duration::from_millis(ms);
        }
        if let Some(h) = file.content_gc_interval_hours {
            if h > 87_600 {
                return Err(ConfigError::Invalid {
                    key: "content_gc_interval_hours",
                    reason: "must be 0 (never) to 87600".into(),
                });
            }
            c.content_gc_interval = (h > 0).then(|| Duration::from_secs(h * 3600));
        }
        if let Some(h) = file.content_gc_grace_hours {
            if !(1..=87_600).contains(&h) {
                return Err(ConfigError::Invalid {
                    key: "content_gc_grace_hours",
                    reason: "must be 1 to 87600: uploads being recorded must not be collected"
                        .into(),
                });
            }
            c.content_gc_grace = Duration::from_secs(h * 3600);
        }
        c.header_timeout = secs(
            o.header_timeout_secs.or(file.header_timeout_secs),
            "header_timeout_secs",
            c.header_timeout,
        )?;
        c.first_message_timeout = secs(
            o.first_message_timeout_secs
                .or(file.first_message_timeout_secs),
            "first_message_timeout_secs",
            c.first_message_timeout,
        )?;
        c.idle_timeout = secs(
            o.idle_timeout_secs.or(file.idle_timeout_secs),
            "idle_timeout_secs",
            c.idle_timeout,
        )?;
        c.keepalive_interval = secs(
            o.keepalive_interval_secs.or(file.keepalive_interval_secs),
            "keepalive_interval_secs",
            c.keepalive_interval,
        )?;
        c.keepalive_timeout = secs(
            o.keepalive_timeout_secs.or(file.keepalive_timeout_secs),
            "keepalive_timeout_secs",
            c.keepalive_timeout,
        )?;
        if let Some(age) = o.max_connection_age_secs.or(file.max_connection_age_secs) {
            c.max_connection_age =
                Some(secs(Some(age), "max_connection_age_secs", Duration::ZERO)?);
        }
        if let Some(p) = o.origin_prefix.clone().or(file.origin_prefix) {
            c.origin_prefix = p;
        }
        if let Some(url) = o.database.clone().or(file.database) {
            let password = match o
                .database_password_file
                .clone()
                .or(file.database_password_file)
            {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|source| ConfigError::Read { path, source })?
                        .trim_end_matches(['\r', '\n'])
                        .to_owned(),
                ),
                None => std::env::var("AKTED_DATABASE_PASSWORD").ok(),
            };
            let pool_size = file.database_pool_size.unwrap_or(24);
            if !(2..=1000).contains(&pool_size) {
                return Err(ConfigError::Invalid {
                    key: "database_pool_size",
                    reason: format!("{pool_size} is not between 2 and 1000"),
                });
            }
            let seal_key = match o.database_key_file.clone().or(file.database_key_file) {
                Some(path) => {
                    let text =
                        std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                            path: path.clone(),
                            source,
                        })?;
                    Some(
                        akte_postgres::seal::SealKey::parse(&text).map_err(|reason| {
                            ConfigError::Invalid {
                                key: "database_key_file",
                                reason: format!("{}: {reason}", path.display()),
                            }
                        })?,
                    )
                }
                None => None,
            };
            let content = match o.content.clone().or(file.content.clone()) {
                Some(location) => {
                    let (mut key_id, mut secret) = (None, None);
                    if let Some(path) = o
                        .content_credentials_file
                        .clone()
                        .or(file.content_credentials_file)
                    {
                        let text =
                            std::fs::read_to_string(&path).map_err(|source| ConfigError::Read {
                                path: path.clone(),
                                source,
                            })?;
                        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
                        match (lines.next(), lines.next()) {
                            (Some(k), Some(s)) => {
                                key_id = Some(k.to_owned());
                                secret = Some(s.to_owned());
                            }
                            _ => {
                                return Err(ConfigError::Invalid {
                                    key: "content_credentials_file",
                                    reason: format!(
                                        "{}: the access key id on the first line, the secret on the second",
                                        path.display()
                                    ),
                                })
                            }
                        }
                    }
                    Some(akte_postgres::s3::S3Options {
                        url: location,
                        access_key_id: key_id,
                        secret_access_key: secret,
                    })
                }
                None => None,
            };
            c.database = Some(DatabaseConfig {
                url,
                password,
                ca: o.database_ca.clone().or(file.database_ca),
                pool_size,
                seal_key,
                content,
            });
        }
        if c.database.is_none() && (o.content.is_some() || file.content.is_some()) {
            return Err(ConfigError::Invalid {
                key: "content",
                reason: "content in object storage needs a database (database = \"postgres://…\")"
                    .into(),
            });
        }
        c.tokens = file.tokens;
        Ok(c)
    }
}

fn addr(key: &'static str, s: &str) -> Result<SocketAddr, ConfigError> {
    s.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| ConfigError::Invalid {
            key,
            reason: format!("{s:?} is not an address such as 127.0.0.1:50051"),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_override_file_which_overrides_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("akted.toml");
        std::fs::write(
            &path,
            r#"
data_dir = "/srv/akte"
listen = "127.0.0.1:6000"
metrics_listen = "off"
max_concurrent_requests = 8
[[tokens]]
sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
principal = "clerk:a"
tenant = "t"
roles = ["clerk"]
expires = "2027-06-30T00:00:00Z"
"#,
        )
        .unwrap();
        let o = Overrides {
            config: Some(path.clone()),
            listen: Some("127.0.0.1:7000".into()),
            ..Overrides::default()
        };
        let c = ServerConfig::resolve(&o).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/srv/akte"));
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.metrics_listen, None);
        assert_eq!(c.max_concurrent_requests, 8);
        assert_eq!(c.tokens.len(), 1);
        assert_eq!(
            c.tokens[0].expires.map(|t| t.to_rfc3339()).as_deref(),
            Some("2027-06-30T00:00:00+00:00")
        );
        let d = ServerConfig::resolve(&Overrides::default()).unwrap();
        assert_eq!(d.listen.to_string(), DEFAULT_LISTEN);
        std::fs::write(&path, "unknown_key = 1\n").unwrap();
        assert!(ServerConfig::resolve(&Overrides {
            config: Some(path),
            ..Overrides::default()
        })
        .is_err());
    }
}
