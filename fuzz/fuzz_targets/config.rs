//! akted's configuration file: TOML into the file settings, then the checks that resolve
//! them into a server configuration.
//!
//! The two modules are compiled here from akte-server's own source files, unchanged, so
//! that the fuzz build does not compile the whole gRPC server (tonic, hyper, rustls) for
//! them: that halves the build CI waits for. The functions called are their public API.
#![no_main]
use std::path::Path;

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../akte-server/src/auth.rs"]
mod auth;
#[allow(dead_code)]
#[path = "../../akte-server/src/config.rs"]
mod config;

use config::{FileConfig, Overrides, ServerConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = FileConfig::parse(text, Path::new("akted.toml")) {
        let _ = ServerConfig::combine(&Overrides::default(), file);
    }
});
