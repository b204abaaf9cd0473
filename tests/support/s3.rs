//! A private S3-protocol server for tests: moto's standalone server (PyPI `moto[server]`,
//! pinned in `tools/test.sh`, which installs it into a virtual environment), on a free
//! port of 127.0.0.1, stopped when the test process ends. Real S3 requests (SigV4
//! signatures, multipart uploads, ranged reads) go to it; nothing is mocked in-process.
//!
//! moto checks signatures only with its IAM emulation on (`INITIAL_NO_AUTH_ACTION_COUNT`):
//! the server is started with three unauthenticated actions, which create an IAM user
//! allowed `s3:*` and its access key; every request after that must be signed with that
//! key (a wrong secret is refused with SignatureDoesNotMatch). The few requests the tests
//! send themselves (creating buckets, planting objects) are signed here (SigV4, written
//! from the AWS documentation of the algorithm).

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
    /// The access key id and secret of the IAM user every request signs with.
    key: (String, String),
}

/// Region of the buckets the tests create.
const REGION: &str = "eu-central-1";

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
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
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
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "moto_server did not come up"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let key = create_access_key(port);
        S3Server {
            port,
            child: Mutex::new(Some(child)),
            key,
        }
    }

    /// Options for akte's S3 content on `location` (from [`S3Server::fresh_bucket`]), with
    /// this server's access key.
    pub fn options(&self, location: String) -> akte_postgres::s3::S3Options {
        akte_postgres::s3::S3Options {
            url: location,
            access_key_id: Some(self.key.0.clone()),
            secret_access_key: Some(self.key.1.clone()),
        }
    }

    /// The access key id and secret, as akted's `content_credentials_file` holds them.
    pub fn credentials(&self) -> (String, String) {
        self.key.clone()
    }

    /// Sends one request signed with this server's key; returns the HTTP status line and
    /// the whole answer.
    fn signed(&self, method: &str, path: &str, body: &[u8]) -> String {
        let host = format!("127.0.0.1:{}", self.port);
        let now = chrono::Utc::now();
        let headers = sigv4::sign(
            &sigv4::Request {
                method,
                host: &host,
                path,
                body,
                region: REGION,
                service: "s3",
            },
            (&self.key.0, &self.key.1),
            now,
        );
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!(
            "Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        ));
        s.write_all(head.as_bytes()).expect("send");
        s.write_all(body).expect("send");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer
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
        let config = format!(
            "<CreateBucketConfiguration><LocationConstraint>{REGION}</LocationConstraint>\
             </CreateBucketConfiguration>"
        );
        let answer = self.signed("PUT", &format!("/{bucket}"), config.as_bytes());
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "create bucket: {answer}"
        );
        format!(
            "s3://{bucket}?endpoint={}&region=eu-central-1",
            self.endpoint()
        )
    }

    /// Stores `bytes` under `key` in `bucket` directly, as a process that died halfway
    /// through akte's upload would leave them.
    pub fn put_raw(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let answer = self.signed("PUT", &format!("/{bucket}/{key}"), bytes);
        assert!(answer.starts_with("HTTP/1.1 200"), "put {key}: {answer}");
    }

    /// Whether a request signed with a wrong secret is refused (moto checks signatures).
    pub fn refuses_a_wrong_signature(&self, bucket: &str) -> bool {
        let host = format!("127.0.0.1:{}", self.port);
        let path = format!("/{bucket}/forged");
        let headers = sigv4::sign(
            &sigv4::Request {
                method: "PUT",
                host: &host,
                path: &path,
                body: b"x",
                region: REGION,
                service: "s3",
            },
            (&self.key.0, "not-the-secret"),
            chrono::Utc::now(),
        );
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        let mut head = format!("PUT {path} HTTP/1.1\r\nHost: {host}\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("Content-Length: 1\r\nConnection: close\r\n\r\nx");
        s.write_all(head.as_bytes()).expect("send");
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        answer.starts_with("HTTP/1.1 403") && answer.contains("SignatureDoesNotMatch")
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

/// Creates, with the server's three unauthenticated actions, the IAM user the tests
/// sign with, allowed everything on S3, and returns its access key.
fn create_access_key(port: u16) -> (String, String) {
    let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
    let actions = [
        "Action=CreateUser&UserName=akte-tests".to_owned(),
        format!(
            "Action=PutUserPolicy&UserName=akte-tests&PolicyName=s3&PolicyDocument={}",
            form_escape(policy)
        ),
        "Action=CreateAccessKey&UserName=akte-tests".to_owned(),
    ];
    let mut last = String::new();
    for action in actions {
        let body = format!("{action}&Version=2010-05-08");
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to moto");
        // Unauthenticated, but with a credential scope so that moto routes it to IAM.
        write!(
            s,
            "POST / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: \
             application/x-www-form-urlencoded\r\nAuthorization: AWS4-HMAC-SHA256 \
             Credential=setup/20260101/us-east-1/iam/aws4_request, SignedHeaders=host, \
             Signature=0\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .expect("send");
        last.clear();
        let _ = s.read_to_string(&mut last);
        assert!(last.starts_with("HTTP/1.1 200"), "IAM {action}: {last}");
    }
    let field = |name: &str| -> String {
        let open = format!("<{name}>");
        let start = last.find(&open).map(|i| i + open.len());
        let end = last.find(&format!("</{name}>"));
        match (start, end) {
            (Some(a), Some(b)) if a <= b => last[a..b].to_owned(),
            _ => panic!("no {name} in the CreateAccessKey answer: {last}"),
        }
    };
    (field("AccessKeyId"), field("SecretAccessKey"))
}

/// `application/x-www-form-urlencoded` escaping.
fn form_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// AWS Signature Version 4 for the tests' own requests (path without query, no
/// special characters in it).
mod sigv4 {
    use sha2::{Digest, Sha256};

    pub struct Request<'a> {
        pub method: &'a str,
        pub host: &'a str,
        pub path: &'a str,
        pub body: &'a [u8],
        pub region: &'a str,
        pub service: &'a str,
    }

    fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
        // HMAC (RFC 2104) over SHA-256, block size 64.
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let pad = |byte: u8| block.iter().map(|b| b ^ byte).collect::<Vec<u8>>();
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(data)
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .into()
    }

    /// The headers to add: x-amz-date, x-amz-content-sha256, Authorization.
    pub fn sign(
        r: &Request<'_>,
        (key_id, secret): (&str, &str),
        now: chrono::DateTime<chrono::Utc>,
    ) -> Vec<(String, String)> {
        let stamp = now.format("%Y%m%dT%H%M%SZ").to_string();
        let day = &stamp[..8];
        let payload = hex::encode(Sha256::digest(r.body));
        let signed_headers = "host;x-amz-content-sha256;x-amz-date";
        let canonical = format!(
            "{}\n{}\n\nhost:{}\nx-amz-content-sha256:{payload}\nx-amz-date:{stamp}\n\n{signed_headers}\n{payload}",
            r.method, r.path, r.host
        );
        let scope = format!("{day}/{}/{}/aws4_request", r.region, r.service);
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}",
            hex::encode(Sha256::digest(canonical.as_bytes()))
        );
        let k_date = hmac(format!("AWS4{secret}").as_bytes(), day.as_bytes());
        let k_region = hmac(&k_date, r.region.as_bytes());
        let k_service = hmac(&k_region, r.service.as_bytes());
        let k_signing = hmac(&k_service, b"aws4_request");
        let signature = hex::encode(hmac(&k_signing, to_sign.as_bytes()));
        vec![
            ("x-amz-date".into(), stamp.clone()),
            ("x-amz-content-sha256".into(), payload),
            (
                "Authorization".into(),
                format!(
                    "AWS4-HMAC-SHA256 Credential={key_id}/{scope}, SignedHeaders={signed_headers}, Signature={signature}"
                ),
            ),
        ]
    }

    #[cfg(test)]
    mod tests {
        /// RFC 4231, test case 2.
        #[test]
        fn hmac_sha256_matches_rfc_4231() {
            let mac = super::hmac(b"Jefe", b"what do ya want for nothing?");
            assert_eq!(
                hex::encode(mac),
                "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
            );
        }
    }
}
