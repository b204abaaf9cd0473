//! akted's configuration file: TOML into the file settings, then the checks that resolve
//! them into a server configuration.
#![no_main]
use std::path::Path;

use akte_server::config::{FileConfig, Overrides, ServerConfig};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(file) = FileConfig::parse(text, Path::new("akted.toml")) {
        let _ = ServerConfig::combine(&Overrides::default(), file);
    }
});
