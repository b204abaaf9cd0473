//! A private PostgreSQL server for tests: `initdb` in a temporary directory, `postgres`
//! on a free port of 127.0.0.1, stopped when the test process ends.
//!
//! The server's binaries come from `AKTE_PG_BIN` or Debian's packages
//! (`/usr/lib/postgresql/<version>/bin`, which `.ci/run` installs). As root the server
//! runs as the `postgres` user, since PostgreSQL refuses to run as root.

use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Where the server binaries are.
pub fn bin_dir() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("AKTE_PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, p)| p)
}

/// The uid and gid of the `postgres` user, when running as root.
fn server_user() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new("postgres").ok()?;
    // SAFETY: getpwnam takes a NUL-terminated name; the result is read at once, before
    // any other call that could reuse its static buffer.
    let pw = unsafe { libc::getpwnam(name.as_ptr()) };
    if pw.is_null() {
        panic!("running as root, but there is no `postgres` user to run PostgreSQL as");
    }
    // SAFETY: pw is non-null and points to a passwd record.
    unsafe { Some(((*pw).pw_uid, (*pw).pw_gid)) }
}

fn as_server_user(cmd: &mut Command, user: Option<(u32, u32)>, die_with_parent: bool) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if die_with_parent && libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some((uid, gid)) = user {
                if libc::setgid(gid) != 0 || libc::setuid(uid) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One PostgreSQL server with its data directory.
pub struct PgServer {
    dir: tempfile::TempDir,
    bin: PathBuf,
    user: Option<(u32, u32)>,
    port: u16,
    fsync: bool,
    child: Mutex<Option<Child>>,
}

impl PgServer {
    /// Initialises a cluster and starts it, without `fsync` (tests kill processes, not
    /// machines). Panics with a clear message if PostgreSQL is not installed.
    pub fn start() -> PgServer {
        PgServer::start_with(false)
    }

    /// As [`PgServer::start`], with `fsync` on or off (benchmarks compare durable
    /// commits, so they turn it on).
    pub fn start_with(fsync: bool) -> PgServer {
        let bin = bin_dir().expect(
            "PostgreSQL is not installed: install Debian's postgresql package (.ci/run does) \
             or set AKTE_PG_BIN to the directory of initdb and postgres",
        );
        let dir = tempfile::Builder::new()
            .prefix("akte-pg-")
            .tempdir()
            .expect("a temporary directory");
        let user = server_user();
        if let Some((uid, gid)) = user {
            let path = std::ffi::CString::new(dir.path().as_os_str().as_encoded_bytes())
                .expect("a path without NUL");
            // SAFETY: path is NUL-terminated.
            assert_eq!(unsafe { libc::chown(path.as_ptr(), uid, gid) }, 0, "chown");
        }
        let mut init = Command::new(bin.join("initdb"));
        init.args(["-D"])
            .arg(dir.path().join("data"))
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .args(["--locale=C"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        as_server_user(&mut init, user, false);
        let out = init.output().expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let server = PgServer {
            dir,
            bin,
            user,
            port: free_port(),
            fsync,
            child: Mutex::new(None),
        };
        server.resume();
        server
    }

    /// The data directory's parent (the log is `postgres.log` in it).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres@127.0.0.1:{}/{database}?sslmode=disable",
            self.port
        )
    }

    /// Starts the server (again) and waits until it answers.
    pub fn resume(&self) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if child.is_some() {
            return;
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("postgres.log"))
            .expect("open the server log");
        let mut cmd = Command::new(self.bin.join("postgres"));
        cmd.arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                self.dir.path().display()
            ))
            .arg("-c")
            .arg(format!("fsync={}", if self.fsync { "on" } else { "off" }))
            .args(["-c", "synchronous_commit=on"])
            .args(["-c", "max_connections=300", "-c", "shared_buffers=64MB"])
            .stdout(log.try_clone().expect("log"))
            .stderr(log);
        as_server_user(&mut cmd, self.user, true);
        // The server is started from a thread that lives as long as the process, so that
        // PR_SET_PDEATHSIG (which follows the creating thread) stops it only at exit.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(cmd.spawn());
            loop {
                std::thread::park();
            }
        });
        let spawned = rx.recv().expect("the starter thread answers");
        *child = Some(spawned.expect("start postgres"));
        drop(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let start = Instant::now();
        loop {
            if self.psql("postgres", "SELECT 1").is_ok() {
                return;
            }
            if start.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(self.dir.path().join("postgres.log"))
                    .unwrap_or_default();
                panic!("PostgreSQL did not come up within 60 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops the server: `fast` (clients disconnected, a clean shutdown) or an immediate
    /// one (as a crash would).
    pub fn stop(&self, fast: bool) {
        let mut child = self.child.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mut c) = child.take() {
            let sig = if fast { libc::SIGINT } else { libc::SIGQUIT };
            // SAFETY: kill with a pid of our own child.
            unsafe { libc::kill(c.id() as i32, sig) };
            let _ = c.wait();
        }
    }

    /// The directory of the server's programs (psql, pgbench, ...).
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// Runs one SQL command with psql; returns its output.
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1"])
            .args([
                "-h",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
            ])
            .args(["-d", database, "-c", sql])
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Creates a new, empty database and returns its URL.
    pub fn fresh_database(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "akte_{}_{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        self.psql("postgres", &format!("CREATE DATABASE {name}"))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        self.url(&name)
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop(false);
    }
}

/// The test process's shared server, started on first use.
pub fn shared() -> &'static PgServer {
    static SERVER: OnceLock<PgServer> = OnceLock::new();
    SERVER.get_or_init(|| {
        let server = PgServer::start();
        extern "C" fn stop_at_exit() {
            if let Some(s) = SERVER.get() {
                s.stop(true);
                let _ = std::fs::remove_dir_all(s.dir());
            }
        }
        // SAFETY: registers a plain function to run at process exit.
        unsafe { libc::atexit(stop_at_exit) };
        server
    })
}
