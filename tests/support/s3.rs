//! A private S3-protocol server for tests: moto's standalone server (PyPI `moto[server]`,
//! pinned in `tools/test.sh`, which installs it into a virtual environment), on a free
//! port of 127.0.0.1, stopped when the test process ends. Real S3 requests (SigV4
//! signatures, multipart uploads, ranged reads) go to it; nothing is mocked in-process.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The moto server program: `AKTE_MOTO_SERVER`, or the virtual environment
/// `tools/test.sh` makes in the target directory.
pub fn moto_server() -> PathBuf {
    if let Ok(p) = std::env::var("AKTE_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("moto-venv/bin/moto_server")
}

/// One S3 server.
pub struct S3Server {
    port: u16,
    child: Mutex<Option<Child>>,
}

impl S3Server {
    /// Starts moto and waits until it answers. Panics with what to do if it is missing.
    pub fn start() -> S3Server {
        let program = moto_server();
        assert!(
            program.exists(),
            "{} is missing: run tools/test.sh (it installs moto[server] into a virtual \
             environment) or set AKTE_MOTO_SERVER",
            program.display()
        );
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let mut cmd = Command::new(&program);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: only an async-signal-safe call between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        // Started from a thread that lives as long as the process (PR_SET_PDEATHSIG
        // follows the creating thread).
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(cmd.spawn());
            loop {
                std::thread::park();
            }
        });
        let child = rx.recv().expect("starter").expect("start moto_server");
        let server = S3Server {
            port,
            child: Mutex::new(Some(child)),
        };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        server
    }

    /// The endpoint URL.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a new bucket and returns the `s3://` location akte is configured with.
    pub fn fresh_bucket(&self) -> String {
        static N: AtomicU32 = AtomicU32::new(0);
        let bucket = format!(
            "akte-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        // moto creates buckets without checking signatures.
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .expect("send");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "create bucket: {answer}"
        );
        format!(
            "s3://{bucket}?endpoint={}&region=eu-central-1",
            self.endpoint()
        )
    }

    /// Stores `bytes` under `key` in `bucket` directly (moto does not check signatures),
    /// as a process that died halfway through akte's upload would leave them.
    pub fn put_raw(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            s,
            "PUT /{bucket}/{key} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            bytes.len()
        )
        .expect("send");
        s.write_all(bytes).expect("send");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "put {key}: {answer}");
    }

    /// Freezes the server (SIGSTOP): connections are accepted by the kernel but never
    /// answered, as with a hung storage node. moto keeps its objects in memory only, so
    /// this, not a restart, is how a test takes it away and brings it back.
    pub fn pause(&self, paused: bool) {
        if let Some(c) = self
            .child
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
        {
            let sig = if paused { libc::SIGSTOP } else { libc::SIGCONT };
            // SAFETY: kill with the pid of our own child.
            unsafe { libc::kill(c.id() as i32, sig) };
        }
    }

    /// Stops the server (object storage down).
    pub fn stop(&self) {
        if let Some(mut c) = self.child.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The test process's shared server.
pub fn shared() -> &'static S3Server {
    static SERVER: OnceLock<S3Server> = OnceLock::new();
    SERVER.get_or_init(S3Server::start)
}

/// Options for `s3` with moto's test credentials.
pub fn options(location: String) -> akte_postgres::s3::S3Options {
    akte_postgres::s3::S3Options {
        url: location,
        access_key_id: Some("akte-test".into()),
        secret_access_key: Some("akte-test-secret".into()),
    }
}
