//! Document content in S3-compatible object storage, for installations that have it:
//! one object per digest under `<prefix><tenant>/<2 hex>/<64 hex>`, the bytes unchanged.
//!
//! A put of up to 8 MiB goes up in one request; a larger one streams as a multipart upload
//! to a temporary key while it is hashed, and is copied to its digest's key once the
//! digest is known (and matches what the caller announced). An object is stored, and the
//! put returns, only after the store acknowledged it, so no entry ever names content the
//! store does not hold. Reads are ranged and verified against the digest at the end.
//! Order is never decided here: the journal in PostgreSQL does that.

use std::io::{self, Read};
use std::sync::Arc;

use akte_core::backend::content::{
    check_expected, read_full, Codec, ContentError, Destruction, ObjectInfo, PutOutcome,
};
use akte_core::backend::{ContentBackend, ContentRead, IoFailure};
use akte_core::Digest;
use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};
use sha2::{Digest as _, Sha256};

use crate::db::{Db, PgError};

/// Objects up to this size go up in one request.
const SINGLE_PUT: usize = 8 << 20;

/// Bytes read per ranged GET.
const READ_CHUNK: u64 = 1 << 20;

/// Keys listed per request.
const LIST_PAGE: usize = 1000;

/// Where the content goes: `s3://bucket[/prefix]?endpoint=…&region=…`, with credentials.
#[derive(Clone)]
pub struct S3Options {
    /// `s3://bucket` with an optional key prefix, and the query parameters `endpoint`
    /// (e.g. `http://127.0.0.1:9000`; default: AWS) and `region` (default `us-east-1`).
    pub url: String,
    /// Access key id (default: `AWS_ACCESS_KEY_ID`).
    pub access_key_id: Option<String>,
    /// Secret access key (default: `AWS_SECRET_ACCESS_KEY`); never logged.
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("url", &self.url)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The bucket, shared by every tenant's [`S3Content`].
pub struct S3Store {
    store: Arc<AmazonS3>,
    bucket: String,
    prefix: String,
}

impl std::fmt::Debug for S3Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Store(s3://{}/{})", self.bucket, self.prefix)
    }
}

impl S3Store {
    /// Connects to the bucket the options name (lazily: the first request connects).
    pub fn new(options: &S3Options) -> Result<S3Store, String> {
        let rest = options
            .url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("{}: an S3 location starts with s3://", options.url))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        if bucket.is_empty() {
            return Err(format!("{}: no bucket", options.url));
        }
        let mut endpoint = None;
        let mut region = "us-east-1".to_owned();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            match pair.split_once('=') {
                Some(("endpoint", v)) => endpoint = Some(v.to_owned()),
                Some(("region", v)) => region = v.to_owned(),
                _ => return Err(format!("{}: unknown parameter {pair:?}", options.url)),
            }
        }
        // reqwest is built without a crypto provider of its own: rustls's ring provider
        // is the process's (as tonic's), so there is only one.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_virtual_hosted_style_request(false);
        if let Some(e) = &endpoint {
            builder = builder
                .with_endpoint(e.clone())
                .with_allow_http(e.starts_with("http://"));
        }
        if let Some(k) = &options.access_key_id {
            builder = builder.with_access_key_id(k.clone());
        }
        if let Some(s) = &options.secret_access_key {
            builder = builder.with_secret_access_key(s.clone());
        }
        let store = builder.build().map_err(|e| e.to_string())?;
        let prefix = match prefix.trim_matches('/') {
            "" => String::new(),
            p => format!("{p}/"),
        };
        Ok(S3Store {
            store: Arc::new(store),
            bucket: bucket.to_owned(),
            prefix,
        })
    }
}

/// One tenant's content in the bucket.
pub struct S3Content {
    db: Arc<Db>,
    s3: Arc<S3Store>,
    /// `<prefix><tenant>/`
    base: String,
}

impl S3Content {
    pub(crate) fn new(db: Arc<Db>, s3: Arc<S3Store>, tenant: &str) -> S3Content {
        let base = format!("{}{tenant}/", s3.prefix);
        S3Content { db, s3, base }
    }

    fn key(&self, digest: &Digest) -> ObjectPath {
        let hex = digest.to_string();
        ObjectPath::from(format!("{}{}/{hex}", self.base, &hex[..2]))
    }

    fn fail(&self, op: &'static str, place: String, e: object_store::Error) -> ContentError {
        let kind = match &e {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            object_store::Error::AlreadyExists { .. } => io::ErrorKind::AlreadyExists,
            _ => io::ErrorKind::ConnectionAborted,
        };
        ContentError::Io(IoFailure::new(
            op,
            place,
            io::Error::new(kind, e.to_string()),
        ))
    }

    fn run<T: Send + 'static>(
        &self,
        op: &'static str,
        fut: impl std::future::Future<Output = Result<T, object_store::Error>> + Send + 'static,
    ) -> Result<Result<T, object_store::Error>, ContentError> {
        self.db
            .block(op, async move { Ok(fut.await) })
            .map_err(|e: PgError| {
                ContentError::Io(IoFailure::new(
                    op,
                    format!("s3://{}", self.s3.bucket),
                    io::Error::new(io::ErrorKind::TimedOut, e.to_string()),
                ))
            })
    }

    /// Size of the object, or `None` if there is none.
    fn head(&self, digest: &Digest) -> Result<Option<u64>, ContentError> {
        let (store, key) = (self.s3.store.clone(), self.key(digest));
        match self.run("look up content", async move { store.head(&key).await })? {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.fail("look up content", self.describe(digest), e)),
        }
    }

    fn put_small(&self, data: Vec<u8>, digest: Digest) -> Result<bool, ContentError> {
        if self.head(&digest)?.is_some() {
            return Ok(false);
        }
        let (store, key) = (self.s3.store.clone(), self.key(&digest));
        self.run("store content", async move {
            store.put(&key, PutPayload::from(data)).await
        })?
        .map_err(|e| self.fail("store content", self.describe(&digest), e))?;
        Ok(true)
    }
}

impl ContentBackend for S3Content {
    fn put(
        &self,
        reader: &mut dyn Read,
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        let limit = expected_size.map_or(u64::MAX, |s| s.saturating_add(1));
        let mut reader = reader.take(limit);
        let mut buf = vec![0u8; SINGLE_PUT];
        let n = read_full(&mut reader, &mut buf).map_err(|source| ContentError::Read {
            received: 0,
            source,
        })?;
        if n < SINGLE_PUT {
            buf.truncate(n);
            return self.put_bytes(&buf, expected_digest, expected_size);
        }
        // Larger: a multipart upload to a temporary key, hashed on the way.
        let mut nonce = [0u8; 16];
        getrandom::fill(&mut nonce).map_err(|e| ContentError::Compress {
            source: io::Error::other(e.to_string()),
        })?;
        let tmp_name: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        let tmp = ObjectPath::from(format!("{}tmp/{tmp_name}", self.base));
        let place = format!("s3://{}/{tmp}", self.s3.bucket);
        let (store, key) = (self.s3.store.clone(), tmp.clone());
        let upload = self
            .run(
                "store content",
                async move { store.put_multipart(&key).await },
            )?
            .map_err(|e| self.fail("store content", place.clone(), e))?;
        let mut writer = Some(WriteMultipart::new(upload));
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut filled = n;
        let abandon = |w: Option<WriteMultipart>| {
            if let Some(w) = w {
                let _ = self.run("abort an upload", async move { w.abort().await });
            }
        };
        loop {
            let chunk = buf[..filled].to_vec();
            hasher.update(&chunk);
            received += filled as u64;
            if let Some(expected) = expected_size.filter(|e| received > *e) {
                abandon(writer.take());
                return Err(ContentError::SizeMismatch {
                    expected,
                    actual: received,
                });
            }
            let Some(mut w) = writer.take() else {
                break;
            };
            let sent = self.run("store content", async move {
                w.write(&chunk);
                // At most two parts in flight: memory stays bounded.
                w.wait_for_capacity(2).await.map(|()| w)
            })?;
            match sent {
                Ok(w) => writer = Some(w),
                Err(e) => return Err(self.fail("store content", place, e)),
            }
            filled = match read_full(&mut reader, &mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(source) => {
                    abandon(writer.take());
                    return Err(ContentError::Read { received, source });
                }
            };
        }
        let digest = Digest(hasher.finalize().into());
        if let Err(e) = check_expected(digest, received, expected_digest, expected_size) {
            abandon(writer.take());
            return Err(e);
        }
        if let Some(w) = writer.take() {
            self.run("store content", async move { w.finish().await })?
                .map_err(|e| self.fail("store content", place.clone(), e))?;
        }
        let existed = self.head(&digest)?.is_some();
        let (store, from, to) = (self.s3.store.clone(), tmp.clone(), self.key(&digest));
        let copied = self.run("store content", async move {
            let r = if existed {
                Ok(())
            } else {
                store.copy(&from, &to).await
            };
            let _ = store.delete(&from).await;
            r
        })?;
        copied.map_err(|e| self.fail("store content", self.describe(&digest), e))?;
        Ok(PutOutcome {
            digest,
            size: received,
            stored_size: received,
            codec: Codec::Raw,
            newly_stored: !existed,
        })
    }

    fn put_bytes(
        &self,
        data: &[u8],
        expected_digest: Option<Digest>,
        expected_size: Option<u64>,
    ) -> Result<PutOutcome, ContentError> {
        let size = data.len() as u64;
        let digest = Digest::of(data);
        check_expected(digest, size, expected_digest, expected_size)?;
        let newly_stored = self.put_small(data.to_vec(), digest)?;
        Ok(PutOutcome {
            digest,
            size,
            stored_size: size,
            codec: Codec::Raw,
            newly_stored,
        })
    }

    fn get(&self, digest: &Digest) -> Result<Box<dyn ContentRead>, ContentError> {
        let size = self.head(digest)?.ok_or_else(|| ContentError::NotFound {
            digest: *digest,
            place: self.describe(digest),
        })?;
        Ok(Box::new(RangedReader {
            db: self.db.clone(),
            store: self.s3.store.clone(),
            key: self.key(digest),
            place: self.describe(digest),
            digest: *digest,
            size,
            at: 0,
            buf: Vec::new(),
            buf_at: 0,
            hasher: Sha256::new(),
            verified: false,
        }))
    }

    fn stat(&self, digest: &Digest) -> Result<ObjectInfo, ContentError> {
        match self.head(digest)? {
            Some(size) => Ok(ObjectInfo {
                size,
                stored_size: size,
                codec: Codec::Raw,
            }),
            None => Err(ContentError::NotFound {
                digest: *digest,
                place: self.describe(digest),
            }),
        }
    }

    fn remove(&self, digest: &Digest, _authority: Destruction) -> Result<bool, ContentError> {
        if self.head(digest)?.is_none() {
            return Ok(false);
        }
        let (store, key) = (self.s3.store.clone(), self.key(digest));
        self.run("remove content", async move { store.delete(&key).await })?
            .map_err(|e| self.fail("remove content", self.describe(digest), e))?;
        Ok(true)
    }

    fn list(&self) -> Box<dyn Iterator<Item = Result<Digest, ContentError>> + Send + '_> {
        let prefix = ObjectPath::from(self.base.trim_end_matches('/'));
        let mut offset: Option<ObjectPath> = None;
        let mut page: std::collections::VecDeque<Result<Digest, ContentError>> = Default::default();
        let mut done = false;
        Box::new(std::iter::from_fn(move || {
            if page.is_empty() && !done {
                let (store, prefix, from) = (self.s3.store.clone(), prefix.clone(), offset.clone());
                let got = self.run("list content", async move {
                    let stream = match &from {
                        Some(o) => store.list_with_offset(Some(&prefix), o),
                        None => store.list(Some(&prefix)),
                    };
                    let items: Vec<_> = stream.take(LIST_PAGE).collect().await;
                    items.into_iter().collect::<Result<Vec<_>, _>>()
                });
                match got {
                    Ok(Ok(items)) => {
                        done = items.len() < LIST_PAGE;
                        for meta in items {
                            offset = Some(meta.location.clone());
                            let name = meta.location.filename().unwrap_or_default().to_owned();
                            let in_tmp = meta
                                .location
                                .as_ref()
                                .starts_with(&format!("{}tmp/", self.base));
                            if in_tmp {
                                continue; // an upload in progress, or one a crash left
                            }
                            page.push_back(name.parse::<Digest>().map_err(|_| {
                                ContentError::Stray {
                                    place: format!("s3://{}/{}", self.s3.bucket, meta.location),
                                    reason: "not named by a SHA-256 digest".into(),
                                }
                            }));
                        }
                    }
                    Ok(Err(e)) => {
                        done = true;
                        return Some(Err(self.fail(
                            "list content",
                            format!("s3://{}/{}", self.s3.bucket, self.base),
                            e,
                        )));
                    }
                    Err(e) => {
                        done = true;
                        return Some(Err(e));
                    }
                }
            }
            page.pop_front()
        }))
    }

    fn describe(&self, digest: &Digest) -> String {
        format!("s3://{}/{}", self.s3.bucket, self.key(digest))
    }

    /// Removes `tmp/` objects older than `older_than`: uploads completed to their temporary
    /// key whose copy into place (or whose removal afterwards) a crash or a failed
    /// connection interrupted. Incomplete multipart uploads are not objects; the bucket's
    /// lifecycle rule aborts them (docs/DEPLOYMENT.md).
    fn sweep_leftovers(&self, older_than: std::time::Duration) -> Result<u64, ContentError> {
        let prefix = ObjectPath::from(format!("{}tmp", self.base));
        let cutoff = chrono::Utc::now()
            - chrono::Duration::from_std(older_than).unwrap_or(chrono::Duration::MAX);
        let place = format!("s3://{}/{prefix}/", self.s3.bucket);
        let store = self.s3.store.clone();
        let listed = self.run("list upload leftovers", async move {
            store
                .list(Some(&prefix))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
        })?;
        let stale: Vec<ObjectPath> = listed
            .map_err(|e| self.fail("list upload leftovers", place.clone(), e))?
            .into_iter()
            .filter(|meta| meta.last_modified < cutoff)
            .map(|meta| meta.location)
            .collect();
        let mut removed = 0;
        for key in stale {
            let (store, at) = (self.s3.store.clone(), key.clone());
            self.run("remove an upload leftover", async move {
                store.delete(&at).await
            })?
            .map_err(|e| {
                self.fail(
                    "remove an upload leftover",
                    format!("s3://{}/{key}", self.s3.bucket),
                    e,
                )
            })?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// Reads an object in ranged GETs and checks length and digest at the end.
struct RangedReader {
    db: Arc<Db>,
    store: Arc<AmazonS3>,
    key: ObjectPath,
    place: String,
    digest: Digest,
    size: u64,
    at: u64,
    buf: Vec<u8>,
    buf_at: usize,
    hasher: Sha256,
    verified: bool,
}

impl RangedReader {
    fn corrupt(&self, reason: String) -> io::Error {
        io::Error::other(ContentError::Corrupt {
            digest: self.digest,
            place: self.place.clone(),
            reason,
        })
    }
}

impl Read for RangedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() || self.verified {
            return Ok(0);
        }
        if self.buf_at >= self.buf.len() {
            if self.at >= self.size {
                let actual = Digest(self.hasher.finalize_reset().into());
                if actual != self.digest {
                    return Err(self.corrupt(format!("content hashes to {actual}")));
                }
                self.verified = true;
                return Ok(0);
            }
            let end = (self.at + READ_CHUNK).min(self.size);
            let (store, key, range) = (self.store.clone(), self.key.clone(), self.at..end);
            let got = self
                .db
                .block("read content", async move {
                    Ok(store.get_range(&key, range).await)
                })
                .map_err(|e| io::Error::other(ContentError::Io(e.io(self.place.clone()))))?;
            let bytes = got.map_err(|e| {
                let kind = match e {
                    object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
                    _ => io::ErrorKind::ConnectionAborted,
                };
                io::Error::other(ContentError::Io(IoFailure::new(
                    "read content",
                    self.place.clone(),
                    io::Error::new(kind, e.to_string()),
                )))
            })?;
            if bytes.is_empty() {
                return Err(self.corrupt(format!(
                    "ends at byte {}, its size is {}",
                    self.at, self.size
                )));
            }
            self.at += bytes.len() as u64;
            self.buf = bytes.to_vec();
            self.buf_at = 0;
        }
        let n = (self.buf.len() - self.buf_at).min(out.len());
        out[..n].copy_from_slice(&self.buf[self.buf_at..self.buf_at + n]);
        self.hasher.update(&out[..n]);
        self.buf_at += n;
        Ok(n)
    }
}

impl ContentRead for RangedReader {
    fn size(&self) -> u64 {
        self.size
    }

    fn digest(&self) -> &Digest {
        &self.digest
    }

    fn place(&self) -> String {
        self.place.clone()
    }
}
