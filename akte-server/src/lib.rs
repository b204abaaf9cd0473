//! akte-server: `akted`, the gRPC daemon of akte, as a library (so that tests and embedders
//! can start it in-process), plus a small client library for the `akte` CLI.
//!
//! - [`pb`], [`codec`], [`client`]: re-exported from `akte-api` (the generated code of the
//!   contract, its strict codec and the client library);
//! - [`config`]: defaults, TOML file, `AKTED_*` environment variables and flags;
//! - [`auth`]: bearer tokens known by their SHA-256, principals, tenants and roles;
//! - [`service`]: the service implementations over `akte_core::records`;
//! - [`error`]: the one mapping of core errors to gRPC statuses with `google.rpc.ErrorInfo`;
//! - [`names`], [`convert`]: resource names and message conversions;
//! - [`upload`]: streaming uploads into the content store with bounded memory;
//! - [`alloc`]: glibc arenas capped, free memory returned when the server is idle;
//! - [`conn`]: accepted connections, closed when they stay without calls;
//! - [`admission`]: authentication from the headers, the first-message deadline and the
//!   concurrency limits, before any request body is read ([`request_body`] checks it);
//! - [`metrics`]: request and connection metrics and the Prometheus endpoint;
//! - [`uploads`]: resumable upload sessions kept in the data directory;
//! - [`operations`]: long-running operations, their progress and their stored results;
//! - [`page_token`]: page tokens signed with the installation's key;
//! - [`filter`], [`range`]: AIP-160 list filters and download ranges;
//! - [`server`]: start, graceful shutdown;
//! - [`siege`]: misbehaving clients for the exhaustion test and benchmark.

pub mod admission;
pub mod alloc;
pub mod auth;
pub mod config;
pub mod conn;
pub mod convert;
pub mod error;
pub mod filter;
pub mod metrics;
pub mod names;
pub mod operations;
pub mod page_token;
pub mod range;
pub mod request_body;
pub mod server;
pub mod service;
pub mod siege;
pub mod upload;
pub mod uploads;

/// The generated code of the contract, its codec and the client library live in `akte-api`;
/// they stay reachable under their old paths.
pub use akte_api::{client, codec, pb};
