//! akte-api: the public contract (`proto/akte/v1`) as Rust code, shared by the daemon
//! (akte-server) and its clients (akte-cli, tests, benchmarks).
//!
//! - [`pb`]: the code generated from `proto/` by `build.rs` (protox + tonic-prost-build)
//!   and the encoded file descriptor set (reflection, the CLI's proto3 JSON);
//! - [`codec`]: the protobuf codec every generated service and client uses, with
//!   undecodable messages answered INVALID_ARGUMENT;
//! - [`client`]: connecting with a token (and TLS), upload streams, error details;
//! - [`limits`]: the message and chunk sizes both sides agree on.
//!
//! It must not depend on akte-core or akte-server: a client of the API needs neither the
//! engine nor the server, and the server depends on this crate.

pub mod client;
pub mod codec;
pub mod limits;

/// The domain of every `google.rpc.ErrorInfo` akte sends.
pub const DOMAIN: &str = "akte.de";

/// Code generated from `proto/` by `build.rs` (protox + tonic-prost-build).
#[allow(missing_docs, clippy::all)]
pub mod pb {
    /// The akte API.
    pub mod akte {
        /// Version 1.
        pub mod v1 {
            tonic::include_proto!("akte.v1");
        }
    }
    /// Vendored Google types.
    pub mod google {
        /// google.api: annotations (field behavior, resources, HTTP and client options).
        pub mod api {
            tonic::include_proto!("google.api");
        }
        /// google.longrunning: the Operations service.
        pub mod longrunning {
            tonic::include_proto!("google.longrunning");
        }
        /// google.rpc: Status and error details.
        pub mod rpc {
            tonic::include_proto!("google.rpc");
        }
        /// google.type: Date.
        pub mod r#type {
            tonic::include_proto!("google.r#type");
        }
    }
    /// The encoded `FileDescriptorSet` of `proto/`, for server reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("akte_descriptor");
}
