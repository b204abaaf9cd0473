//! `akte`, the command-line tool: its code is the library akte-cli. The binary is built
//! here, beside `akted`, so that `cargo install --path akte-server` installs both and the
//! server's end-to-end tests can run it (`CARGO_BIN_EXE_akte`).

fn main() -> std::process::ExitCode {
    akte_cli::main()
}
