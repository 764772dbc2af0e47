//! A blob download that survives broken connections: when the body fails
//! or ends early it is requested again from the first byte not yet
//! delivered (HTTP Range), or, if the registry answers with the whole blob,
//! from the start with the bytes already delivered skipped. Whoever reads
//! sees one seamless stream, so the digest check downstream hashes every
//! byte exactly once, in order.

use std::io::{self, Read};
use std::sync::Arc;

use futures_util::TryStreamExt;
use reqwest::StatusCode;
use tokio_util::io::{StreamReader, SyncIoBridge};

use super::retry::{self, RetryPolicy, Verdict};
use super::transport::{self, Failure, Transport};

/// A response body as a blocking reader.
pub type Body = Box<dyn Read + Send>;

/// Where a blob comes from, enough to ask for it again.
pub struct BlobSource {
    /// The repository's connection (shares its pool and token).
    pub transport: Arc<Transport>,
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
    pub async fn request(&self, offset: u64) -> Result<(Body, u64), Failure> {
        let path = format!("blobs/{}", self.digest);
        let response = self.transport.get(&path, None, offset).await?;
        let skip = match response.status() {
            StatusCode::PARTIAL_CONTENT => match transport::range_start(response.headers()) {
                Some(start) if start == offset => 0,
                other => {
                    return Err(Failure::Protocol(format!(
                        "asked for bytes from {offset} on, got a range starting at {}",
                        other.map_or("(unknown)".to_string(), |s| s.to_string())
                    )));
                }
            },
            _ => offset,
        };
        let stream = response.bytes_stream().map_err(io::Error::other);
        Ok((Box::new(SyncIoBridge::new(StreamReader::new(stream))), skip))
    }
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
        if verdict == Verdict::Fail {
            return Err(err);
        }
        let policy = self.source.policy;
        if self.failures >= policy.retries {
            return Err(io::Error::other(format!(
                "{err} (gave up after {} retries)",
                policy.retries
            )));
        }
        self.failures += 1;
        let delay = policy.delay(self.failures, verdict);
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
                self.after_failure(io::Error::other(failure.to_string()), verdict)
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
                        after: None,
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
                        after: None,
                    };
                    self.after_failure(e, transient)?;
                }
            }
        }
    }
}
