//! The README's command blocks, run as written so that they cannot drift from the tool.
//!
//! Every ```` ```sh ```` block of `README.md` runs, top to bottom, in one bash with
//! `set -euo pipefail` in a new directory, with the `akte` and `akted` this test suite
//! built first on PATH (what `cargo install --path akte-server`, the README's first
//! command, puts there; `cargo install` itself is skipped). A block right after a line
//! `<!-- readme-test: skip (why) -->` is left out, and must say why. The daemon's
//! addresses are moved to free ports so that runs in parallel do not meet. It needs `jq`,
//! as the README says.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One `sh` block of the README: where it starts and its text.
struct Block {
    line: usize,
    text: String,
    skip: Option<String>,
}

fn blocks(readme: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut lines = readme.lines().enumerate().peekable();
    let mut previous = "";
    while let Some((i, line)) = lines.next() {
        if line.trim_end() == "```sh" {
            let skip = previous
                .trim()
                .strip_prefix("<!-- readme-test: skip")
                .and_then(|r| r.strip_suffix("-->"))
                .map(|r| r.trim().to_owned());
            let mut text = String::new();
            for (_, l) in lines.by_ref() {
                if l.trim_end() == "```" {
                    break;
                }
                text.push_str(l);
                text.push('\n');
            }
            out.push(Block {
                line: i + 1,
                text,
                skip,
            });
        }
        previous = line;
    }
    out
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn readme() -> (PathBuf, String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md");
    let text = std::fs::read_to_string(&path).expect("README.md");
    (path, text)
}

#[test]
fn every_block_is_run_or_says_why_not_and_none_needs_the_target_directory() {
    let (_, text) = readme();
    let all = blocks(&text);
    assert!(all.len() >= 8, "found {} sh blocks", all.len());
    for b in &all {
        if let Some(why) = &b.skip {
            assert!(
                why.starts_with('(') && why.len() > 2,
                "README line {}: a skipped block says why: {why:?}",
                b.line
            );
        }
        // With CARGO_TARGET_DIR set there is no ./target: the README calls the installed
        // binaries, never a build directory.
        assert!(
            !b.text.contains("target/"),
            "README line {} uses a build directory:\n{}",
            b.line,
            b.text
        );
    }
}

#[test]
fn readme_commands_run_as_written() {
    let (path, text) = readme();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_akte"));
    let bin_dir = bin.parent().expect("the binaries' directory");
    assert!(
        bin_dir.join("akted").exists(),
        "akted beside akte in {}",
        bin_dir.display()
    );
    let jq = Command::new("jq").arg("--version").output();
    assert!(
        jq.is_ok_and(|o| o.status.success()),
        "the README test needs jq on PATH (Debian: apt-get install jq), as the README says"
    );
    let (grpc, metrics) = (free_port(), free_port());
    let mut script = String::from(
        "set -euo pipefail\n\
         cargo() { if [ \"$1\" = install ]; then echo \"(cargo $*: the test's own binaries are on PATH)\"; return 0; fi; \
         echo \"the README test runs no cargo $*\" >&2; return 1; }\n\
         trap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n",
    );
    for b in blocks(&text).iter().filter(|b| b.skip.is_none()) {
        script.push_str(&format!("echo '== README.md line {}'\n", b.line));
        script.push_str(
            &b.text
                .replace("127.0.0.1:50051", &format!("127.0.0.1:{grpc}"))
                .replace("127.0.0.1:9464", &format!("127.0.0.1:{metrics}")),
        );
    }
    let work = tempfile::tempdir().expect("tempdir");
    let path_var = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(&script)
        .current_dir(work.path())
        .env("PATH", path_var)
        .env("TMPDIR", work.path());
    for (k, _) in std::env::vars() {
        if k.starts_with("AKTE_") || k.starts_with("AKTED_") {
            cmd.env_remove(k);
        }
    }
    let out = cmd.output().expect("running bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}\n{stderr}");
    assert!(
        out.status.success(),
        "a command of {} failed ({:?}); the last lines:\n{}\n{}",
        path.display(),
        out.status.code(),
        tail(&stdout, 15),
        tail(&stderr, 15)
    );
    // The story's ends are there: the demo's clean verify, the rehearsal's destruction
    // records, the witness's cosignature and the final offline verify.
    for seen in [
        "-> verify: clean",
        "legal basis § 18 ThürEGovG, vom Archiv übernommen",
        "cosigned akte.local/bauamt-erfurt",
        "verify: clean",
    ] {
        assert!(
            stdout.contains(seen) || stderr.contains(seen),
            "{seen:?} in the output"
        );
    }
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
