//! The request body of a gRPC call as the admission layer hands it on: it follows the
//! gRPC message framing (a flag byte, a 4-byte length, the message) without buffering
//! anything, and ends the body with a precise status where tonic would answer INTERNAL or
//! wait for ever:
//!
//! - the first message must be complete within the first-message deadline
//!   (DEADLINE_EXCEEDED), so a call that sent its headers and stalls cannot keep a
//!   permit, a worker or its connection;
//! - a flag byte other than 0 is refused (akted accepts no compressed requests; tonic
//!   reports it as INTERNAL), as is a body that ends inside a message or, where the
//!   method needs one, without any message (INVALID_ARGUMENT);
//! - calls made without a token (health, reflection) may send only a few KiB in all.
//!
//! Errors are `tonic::Status` values with akte's `ErrorInfo`; tonic hands a body error that
//! is a `Status` to the caller unchanged.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use http_body::{Body as HttpBody, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tonic::body::Body;
use tonic::{Code, Status};

use crate::error::{server_status, ApiError};

/// Bytes an unauthenticated call (health, reflection) may send in all.
pub const ANONYMOUS_BODY_LIMIT: u64 = 64 << 10;

/// Where the parser stands in the framing.
#[derive(Debug, Clone, Copy)]
enum Framing {
    /// Inside a 5-byte message header, `n` bytes of it seen.
    Header { n: usize, buf: [u8; 5] },
    /// Inside a message body, `left` bytes to come.
    Message { left: u64 },
}

/// Follows the message framing of a byte stream.
#[derive(Debug, Clone)]
pub struct FrameParser {
    state: Framing,
    messages: u64,
    total: u64,
}

impl Default for FrameParser {
    fn default() -> Self {
        FrameParser {
            state: Framing::Header { n: 0, buf: [0; 5] },
            messages: 0,
            total: 0,
        }
    }
}

impl FrameParser {
    /// Feeds the next bytes of the body.
    pub fn feed(&mut self, mut data: &[u8]) -> Result<(), Status> {
        self.total += data.len() as u64;
        while !data.is_empty() {
            match &mut self.state {
                Framing::Header { n, buf } => {
                    let take = (5 - *n).min(data.len());
                    buf[*n..*n + take].copy_from_slice(&data[..take]);
                    *n += take;
                    data = &data[take..];
                    if *n == 5 {
                        if buf[0] != 0 {
                            return Err(malformed(&format!(
                                "message {} has the compressed-flag byte {}; akted accepts only uncompressed messages (flag 0)",
                                self.messages + 1,
                                buf[0]
                            )));
                        }
                        let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as u64;
                        if len == 0 {
                            self.messages += 1;
                            self.state = Framing::Header { n: 0, buf: [0; 5] };
                        } else {
                            self.state = Framing::Message { left: len };
                        }
                    }
                }
                Framing::Message { left } => {
                    let take = (*left).min(data.len() as u64);
                    *left -= take;
                    data = &data[take as usize..];
                    if *left == 0 {
                        self.messages += 1;
                        self.state = Framing::Header { n: 0, buf: [0; 5] };
                    }
                }
            }
        }
        Ok(())
    }

    /// Complete messages seen.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// Bytes seen.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// Checks the end of the body: no message may be cut off, and with `need_message`
    /// there must have been one.
    pub fn finish(&self, need_message: bool) -> Result<(), Status> {
        match self.state {
            Framing::Header { n: 0, .. } => {}
            Framing::Header { n, .. } => {
                return Err(malformed(&format!(
                "the request ended inside the 5-byte header of message {} ({n} bytes of it came)",
                self.messages + 1
            )))
            }
            Framing::Message { left } => {
                return Err(malformed(&format!(
                    "the request ended {left} bytes before the end of message {}",
                    self.messages + 1
                )))
            }
        }
        if need_message && self.messages == 0 {
            return Err(malformed("the request holds no message"));
        }
        Ok(())
    }
}

fn malformed(why: &str) -> Status {
    ApiError::field("request", format!("malformed gRPC framing: {why}")).to_status()
}

/// The status of a call whose first message did not arrive in time.
pub fn first_message_late(timeout: Duration) -> Status {
    server_status(
        Code::DeadlineExceeded,
        crate::pb::akte::v1::ErrorReason::UploadIdle,
        &format!(
            "the request sent no complete message within {} ms of its headers",
            timeout.as_millis()
        ),
    )
}

/// What a [`CheckedBody`] enforces.
#[derive(Debug, Clone, Copy)]
pub struct BodyRules {
    /// When the first message must be complete.
    pub first_message_by: Instant,
    /// The first-message timeout (for the message).
    pub first_message_timeout: Duration,
    /// Whether a body without any message is malformed.
    pub need_message: bool,
    /// Most bytes in all, if limited.
    pub limit: Option<u64>,
}

/// A request body checked as described in the module documentation.
pub struct CheckedBody {
    first: Option<Frame<Bytes>>,
    inner: Body,
    parser: FrameParser,
    rules: BodyRules,
    timer: Pin<Box<Sleep>>,
    done: bool,
}

impl CheckedBody {
    /// Wraps `inner`, of which `first` (if any) was already taken (and is not yet fed).
    pub fn new(first: Option<Frame<Bytes>>, inner: Body, rules: BodyRules) -> CheckedBody {
        CheckedBody {
            first,
            inner,
            parser: FrameParser::default(),
            timer: Box::pin(tokio::time::sleep_until(rules.first_message_by)),
            rules,
            done: false,
        }
    }

    fn check_data(&mut self, data: &Bytes) -> Result<(), Status> {
        self.parser.feed(data.chunk())?;
        if let Some(limit) = self.rules.limit {
            if self.parser.total() > limit {
                return Err(ApiError::field(
                    "request",
                    format!("a call without a token may send at most {limit} bytes"),
                )
                .to_status());
            }
        }
        Ok(())
    }

    fn fail(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.done = true;
        Poll::Ready(Some(Err(status)))
    }
}

impl HttpBody for CheckedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.done {
            return Poll::Ready(None);
        }
        let polled = match self.first.take() {
            Some(f) => Poll::Ready(Some(Ok(f))),
            None => Pin::new(&mut self.inner).poll_frame(cx),
        };
        match polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    if let Err(s) = self.check_data(data) {
                        return self.fail(s);
                    }
                } else if let Err(s) = self.parser.finish(self.rules.need_message) {
                    // Trailers end the request body.
                    return self.fail(s);
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(s))) => {
                self.done = true;
                Poll::Ready(Some(Err(s)))
            }
            Poll::Ready(None) => match self.parser.finish(self.rules.need_message) {
                Ok(()) => {
                    self.done = true;
                    Poll::Ready(None)
                }
                Err(s) => self.fail(s),
            },
            Poll::Pending => {
                if self.parser.messages() == 0 && self.timer.as_mut().poll(cx).is_ready() {
                    let s = first_message_late(self.rules.first_message_timeout);
                    return self.fail(s);
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done || (self.first.is_none() && self.inner.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        if self.first.is_some() {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flag: u8, msg: &[u8]) -> Vec<u8> {
        let mut v = vec![flag];
        v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
        v.extend_from_slice(msg);
        v
    }

    #[test]
    fn parser_counts_messages_across_any_split() {
        let mut all = frame(0, b"hello");
        all.extend(frame(0, b""));
        all.extend(frame(0, &[7; 300]));
        for split in 0..all.len() {
            let mut p = FrameParser::default();
            p.feed(&all[..split]).unwrap();
            p.feed(&all[split..]).unwrap();
            assert_eq!(p.messages(), 3, "split at {split}");
            p.finish(true).unwrap();
        }
        // Byte by byte.
        let mut p = FrameParser::default();
        for b in &all {
            p.feed(std::slice::from_ref(b)).unwrap();
        }
        assert_eq!(p.messages(), 3);
    }

    #[test]
    fn parser_refuses_flags_cut_messages_and_empty_requests() {
        let mut p = FrameParser::default();
        let e = p.feed(&frame(1, b"x")).unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        assert_eq!(crate::error::reason(&e), "INVALID_FIELD");

        let mut p = FrameParser::default();
        p.feed(&frame(0, b"hello")[..7]).unwrap();
        assert_eq!(p.finish(true).unwrap_err().code(), Code::InvalidArgument);

        let mut p = FrameParser::default();
        p.feed(&[0, 0]).unwrap();
        assert!(p.finish(false).is_err(), "a header cut off");

        let p = FrameParser::default();
        assert!(p.finish(true).is_err(), "no message where one is needed");
        assert!(p.finish(false).is_ok(), "an empty client stream");
    }
}
