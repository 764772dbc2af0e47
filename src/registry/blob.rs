//! A blob download that survives broken connections: when the body fails
//! or ends early it is requested again from the first byte not yet
//! delivered (HTTP Range), or, if the registry answers with the whole blob,
//! from the start with the bytes already delivered skipped. Whoever reads
//! sees one seamless stream, so the digest check downstream hashes every
//! byte exactly once, in order.

use std::io::{self, Read};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use oci_client::client::BlobResponse;
use oci_client::errors::OciDistributionError;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::retry::{self, Failure, RetryPolicy, Verdict};

/// A response body as a blocking reader.
pub type Body = Box<dyn Read + Send>;

/// Where a blob comes from, enough to ask for it again.
pub struct BlobSource {
    /// The registry client (shares its connection pool and tokens).
    pub client: oci_client::Client,
    /// The blob's repository.
    pub oci_ref: oci_client::Reference,
    /// `sha256:...`.
    pub digest: String,
    /// The size the descriptor announces.
    pub size: u64,
    /// How hard to try.
    pub policy: RetryPolicy,
    /// The runtime that drives the HTTP streams.
    pub handle: tokio::runtime::Handle,
}

impl BlobSource {
    /// One request for the blob from `offset` on (no timeout: the caller
    /// sets one). Returns the body and how many of its leading bytes to
    /// skip (when the registry ignored the Range and sent everything).
    pub async fn request(&self, offset: u64) -> Result<(Body, u64), OciDistributionError> {
        let layer = self.digest.as_str();
        if offset == 0 {
            let stream = self.client.pull_blob_stream(&self.oci_ref, layer).await?;
            return Ok((body(stream.stream), 0));
        }
        let partial = self
            .client
            .pull_blob_stream_partial(&self.oci_ref, layer, offset, None)
            .await?;
        Ok(match partial {
            BlobResponse::Partial(stream) => (body(stream.stream), 0),
            BlobResponse::Full(stream) => (body(stream.stream), offset),
        })
    }
}

fn body(stream: futures_util::stream::BoxStream<'static, io::Result<Bytes>>) -> Body {
    Box::new(SyncIoBridge::new(StreamReader::new(OwnVerification(
        stream,
    ))))
}

/// The blob's bytes, in order, however many requests it takes. Read it
/// from a blocking thread: it blocks on the runtime to reconnect.
pub struct ResumingReader {
    source: BlobSource,
    body: Option<Body>,
    /// Bytes of the current body still to discard (already delivered).
    skip: u64,
    /// Bytes handed to the reader so far.
    delivered: u64,
    /// Failures since bytes last got through.
    failures: u32,
    /// The end was reported: stay there (no new requests).
    ended: bool,
}

impl ResumingReader {
    /// Continue from `body`, the answer to the first request.
    pub fn new(source: BlobSource, body: Body) -> ResumingReader {
        ResumingReader {
            source,
            body: Some(body),
            skip: 0,
            delivered: 0,
            failures: 0,
            ended: false,
        }
    }

    /// Count a failure; wait before the next try, or give up with `err`.
    fn after_failure(&mut self, err: io::Error, verdict: Verdict) -> io::Result<()> {
        self.body = None;
        let Verdict::Retry { rate_limited } = verdict else {
            return Err(err);
        };
        let policy = self.source.policy;
        if self.failures >= policy.retries {
            return Err(io::Error::other(format!(
                "{err} (gave up after {} retries)",
                policy.retries
            )));
        }
        self.failures += 1;
        let delay = policy.delay(self.failures, rate_limited);
        tracing::warn!(
            "blob {}: {err} after {} of {} bytes; retry {}/{} in {:.1} s",
            self.source.digest,
            self.delivered,
            self.source.size,
            self.failures,
            policy.retries,
            delay.as_secs_f64()
        );
        std::thread::sleep(delay);
        Ok(())
    }

    /// Ask again from the first byte not yet delivered.
    fn reopen(&mut self) -> io::Result<()> {
        let offset = self.delivered;
        let source = &self.source;
        match source
            .handle
            .block_on(retry::attempt(&source.policy, source.request(offset)))
        {
            Ok((body, skip)) => {
                self.body = Some(body);
                self.skip = skip;
                Ok(())
            }
            Err(failure) => {
                let verdict = failure.verdict();
                let message = match &failure {
                    Failure::Oci(OciDistributionError::ServerError { code, message, .. }) => {
                        format!("HTTP {code}: {message}")
                    }
                    other => other.to_string(),
                };
                self.after_failure(io::Error::other(message), verdict)
            }
        }
    }

    /// Drop the leading bytes of `buf[..n]` that were delivered before;
    /// returns how many remain (moved to the front).
    fn skip_delivered(&mut self, buf: &mut [u8], n: usize) -> usize {
        let dropped = self.skip.min(n as u64) as usize;
        self.skip -= dropped as u64;
        buf.copy_within(dropped..n, 0);
        n - dropped
    }
}

impl Read for ResumingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() || self.ended {
            return Ok(0);
        }
        loop {
            let Some(body) = self.body.as_mut() else {
                self.reopen()?;
                continue;
            };
            match body.read(buf) {
                Ok(0) if self.delivered >= self.source.size && self.skip == 0 => {
                    self.ended = true;
                    return Ok(0);
                }
                Ok(0) => {
                    // Cut short without an error (no length announced). If
                    // it stays short, let it end: the size check names it.
                    let short = io::Error::other("the body ended early");
                    let transient = Verdict::Retry {
                        rate_limited: false,
                    };
                    if self.failures >= self.source.policy.retries {
                        self.body = None;
                        self.ended = true;
                        return Ok(0);
                    }
                    self.after_failure(short, transient)?;
                }
                Ok(n) => {
                    let n = self.skip_delivered(buf, n);
                    if n > 0 {
                        self.delivered += n as u64;
                        self.failures = 0;
                        return Ok(n);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) if self.delivered >= self.source.size && self.skip == 0 => {
                    // Every byte arrived before the connection broke: end
                    // here (asking for more would be refused with 416) and
                    // let the digest check judge.
                    self.ended = true;
                    return Ok(0);
                }
                Err(e) => {
                    let transient = Verdict::Retry {
                        rate_limited: false,
                    };
                    self.after_failure(e, transient)?;
                }
            }
        }
    }
}

/// oci-client checks the digest itself and reports a mismatch as an error
/// in place of the end of stream; we end the stream there instead, so our
/// own check (against the descriptor, with sizes) gives the precise error.
struct OwnVerification(futures_util::stream::BoxStream<'static, io::Result<Bytes>>);

impl Stream for OwnVerification {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.0.poll_next_unpin(cx) {
            Poll::Ready(Some(Err(e)))
                if e.get_ref()
                    .is_some_and(|inner| inner.is::<oci_client::errors::DigestError>()) =>
            {
                Poll::Ready(None)
            }
            other => other,
        }
    }
}
