//! Compiles the public contract in `../proto` with the pure-Rust `protox` (no `protoc`
//! needed) and generates the tonic server and client code from it. The encoded file
//! descriptor set is written beside the code for server reflection.

use std::path::PathBuf;

use prost::Message;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../proto");
    let files = [
        "akte/v1/common.proto",
        "akte/v1/error_reason.proto",
        "akte/v1/operations.proto",
        "akte/v1/tenants.proto",
        "akte/v1/file_plan.proto",
        "akte/v1/files.proto",
        "akte/v1/cases.proto",
        "akte/v1/documents.proto",
        "akte/v1/history.proto",
        "akte/v1/journal.proto",
        "akte/v1/verification.proto",
        "akte/v1/retention.proto",
        "akte/v1/disposal.proto",
        "akte/v1/search.proto",
        "akte/v1/migration.proto",
        "akte/v1/access.proto",
        "akte/v1/custom_fields.proto",
        "google/rpc/status.proto",
        "google/rpc/error_details.proto",
        "google/type/date.proto",
        "google/longrunning/operations.proto",
    ];
    for f in &files {
        println!("cargo:rerun-if-changed={}", proto_root.join(f).display());
    }
    let fds = protox::compile(files, [&proto_root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("akte_descriptor.bin"), fds.encode_to_vec())?;
    // Type names (`prost::Name`) let the CLI find each message's descriptor for its
    // proto3 JSON output.
    let mut config = tonic_prost_build::Config::new();
    config.enable_type_names();
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .bytes(".")
        // tonic-prost's codec, but an undecodable message is INVALID_ARGUMENT (codec.rs).
        .codec_path("crate::codec::StrictCodec")
        .compile_fds_with_config(fds, config)?;
    Ok(())
}
