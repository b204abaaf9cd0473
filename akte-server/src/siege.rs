//! Clients that misbehave on purpose, for the exhaustion test (`tests/admission.rs`) and
//! the benchmark part `attack`: the pre-authentication attacks of issue 19, each on
//! connections of its own.
//!
//! - [`Siege::idle_sockets`]: TCP connections that send nothing at all;
//! - [`Siege::unauthenticated_uploads`]: connections that start an upload without a token
//!   and send a body (the header and a 1 MiB chunk), then hold the stream open;
//! - [`Siege::stalled_calls`]: connections with a valid token whose call sends its headers
//!   and then nothing.
//!
//! Everything stays open until the [`Siege`] is dropped. Only loopback servers are meant.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Code, Status};

use crate::client::{ClientError, ClientTls, Clients};
use crate::pb::akte::v1 as pb;

/// How one attacking call ended.
pub type Outcome = Result<(), Status>;

/// The attacking connections and calls; dropping it ends them.
#[derive(Default)]
pub struct Siege {
    sockets: Vec<TcpStream>,
    senders: Vec<mpsc::Sender<pb::AddVersionRequest>>,
    calls: Vec<JoinHandle<Outcome>>,
    /// Keep the connections open after their calls ended.
    clients: Vec<Clients>,
}

// `..Default::default()` so that a field added in `proto/` does not break this.
#[allow(clippy::needless_update)]
fn header(document: &str, size: u64) -> pb::AddVersionRequest {
    pb::AddVersionRequest {
        message: Some(pb::add_version_request::Message::Header(
            pb::AddVersionHeader {
                parent: document.to_owned(),
                upload: Some(pb::RenditionUpload {
                    file_name: "siege.bin".into(),
                    media_type: "application/octet-stream".into(),
                    sha256: bytes::Bytes::from(vec![0u8; 32]),
                    size,
                    ..Default::default()
                }),
                ..Default::default()
            },
        )),
    }
}

impl Siege {
    /// An empty siege.
    pub fn new() -> Siege {
        Siege::default()
    }

    /// Opens `n` TCP connections to `addr` that send nothing.
    pub async fn idle_sockets(&mut self, addr: SocketAddr, n: usize) -> std::io::Result<()> {
        for _ in 0..n {
            self.sockets.push(TcpStream::connect(addr).await?);
        }
        Ok(())
    }

    /// Starts `n` uploads into `document` without a token, each on a connection of its own:
    /// the header, a chunk of `chunk` bytes, then the stream stays open.
    pub async fn unauthenticated_uploads(
        &mut self,
        url: &str,
        document: &str,
        n: usize,
        chunk: usize,
    ) -> Result<(), ClientError> {
        for _ in 0..n {
            let mut c = Clients::connect(url, None, &ClientTls::default()).await?;
            let (tx, rx) = mpsc::channel(2);
            // The channel holds both messages, so they are sent whatever the server does.
            let _ = tx.try_send(header(document, chunk as u64 * 2));
            let _ = tx.try_send(pb::AddVersionRequest {
                message: Some(pb::add_version_request::Message::Chunk(Bytes::from(vec![
                        0x5a;
                        chunk
                    ]))),
            });
            self.senders.push(tx);
            self.clients.push(c.clone());
            self.calls.push(tokio::spawn(async move {
                c.documents
                    .add_version(ReceiverStream::new(rx))
                    .await
                    .map(|_| ())
            }));
        }
        Ok(())
    }

    /// Starts `n` calls with `token` that send their headers and then nothing, each on a
    /// connection of its own.
    pub async fn stalled_calls(
        &mut self,
        url: &str,
        token: &str,
        n: usize,
    ) -> Result<(), ClientError> {
        for _ in 0..n {
            let mut c = Clients::connect(url, Some(token), &ClientTls::default()).await?;
            let (tx, rx) = mpsc::channel(1);
            self.senders.push(tx);
            self.clients.push(c.clone());
            self.calls.push(tokio::spawn(async move {
                c.documents
                    .add_version(ReceiverStream::new(rx))
                    .await
                    .map(|_| ())
            }));
        }
        Ok(())
    }

    /// Waits up to `within` for every attacking call to end; returns how each ended
    /// (`None` for those still running).
    pub async fn outcomes(&mut self, within: Duration) -> Vec<Option<Outcome>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut out = Vec::new();
        for call in self.calls.iter_mut() {
            out.push(match tokio::time::timeout_at(deadline, call).await {
                Err(_) => None,
                Ok(Ok(r)) => Some(r),
                Ok(Err(e)) => Some(Err(Status::new(Code::Unknown, e.to_string()))),
            });
        }
        out
    }

    /// How many of the idle sockets the server has closed by now.
    pub async fn sockets_closed(&mut self) -> usize {
        use tokio::io::AsyncReadExt as _;
        let mut closed = 0;
        let mut buf = [0u8; 256];
        for s in &mut self.sockets {
            // The server sends its HTTP/2 SETTINGS first: read them away. A closed
            // connection then reads as end-of-file or an error, an open one blocks.
            loop {
                match tokio::time::timeout(Duration::from_millis(5), s.read(&mut buf)).await {
                    Ok(Ok(0)) | Ok(Err(_)) => {
                        closed += 1;
                        break;
                    }
                    Ok(Ok(_)) => continue,
                    Err(_) => break,
                }
            }
        }
        closed
    }
}

impl Drop for Siege {
    fn drop(&mut self) {
        for c in &self.calls {
            c.abort();
        }
    }
}
