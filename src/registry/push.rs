//! Pushing blobs and manifests (OCI distribution spec). Pushes go to the
//! registry itself, never to a mirror, with a token of push scope. A blob
//! streams from a reader on a blocking thread, a few chunks at a time, so
//! memory stays flat whatever its size.
//!
//! Small blobs go up in one `PUT` (monolithic); an upload that fails
//! transiently starts again from a fresh reader. Larger ones go up in one
//! `PATCH` with a `Content-Range`, then a closing `PUT`: when the `PATCH`
//! breaks off, the registry is asked how much it received (`GET` on the
//! upload: `Range: 0-N`) and the upload resumes from there, as a download
//! resumes with a Range request. A registry that refuses a `PATCH` gets the
//! blob monolithically instead.

use std::io::{self, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use oci_client::RegistryOperation::Push;
use reqwest::Method;
use reqwest::header::{self, HeaderMap, HeaderValue};

use super::retry::{self, RetryPolicy};
use super::transport::Failure;
use super::{Endpoint, Registry};
use crate::cancel::Cancel;
use crate::digest::Digest;
use crate::digest::IntegrityError;
use crate::{Error, Result};

/// Bytes read from the source per chunk sent.
const CHUNK: usize = 256 * 1024;
/// Blobs at least this large are uploaded resumably (PATCH); smaller
/// ones cost little to send again.
pub const RESUMABLE: u64 = 8 * 1024 * 1024;
/// Chunks queued between the reading thread and the connection.
const QUEUED: usize = 4;
/// The header in which registries state the digest of what they stored.
const CONTENT_DIGEST: &str = "docker-content-digest";

impl Registry {
    /// Whether the registry has this blob in this repository
    /// (`HEAD /v2/<repo>/blobs/<digest>`: 200 yes, 404 no).
    pub async fn has_blob(&self, digest: &Digest) -> Result<bool> {
        let endpoint = self.push_endpoint()?;
        let described = self.describe(&digest.to_string());
        let path = format!("blobs/{digest}");
        let no_headers = HeaderMap::new();
        let result = retry::with_retries(&endpoint.policy, &format!("blob {described}"), || {
            endpoint
                .transport
                .request(Push, Method::HEAD, &path, &no_headers, None)
        })
        .await;
        match result {
            Ok(_) => Ok(true),
            Err(failure) if failure.is_not_found() => Ok(false),
            Err(failure) => Err(self.map_failure(failure, "blob", &described)),
        }
    }

    /// Ask the registry to link the blob from `from_repository` (of the
    /// same registry) into this repository, without uploading it
    /// (`POST /v2/<repo>/blobs/uploads/?mount=<digest>&from=<repository>`).
    /// `true` when it did (201); `false` when it would not (it may not
    /// have the blob there, or we may not be allowed to read it): upload
    /// it then. An upload it opened instead (202) is cancelled.
    pub async fn mount_blob(&self, digest: &Digest, from_repository: &str) -> Result<bool> {
        let endpoint = self.push_endpoint()?;
        let described = self.describe(&digest.to_string());
        // Checked rather than escaped: it goes into a query string.
        let valid = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-/".contains(c);
        if from_repository.is_empty() || !from_repository.chars().all(valid) {
            return Err(Error::InvalidReference {
                reference: from_repository.to_string(),
                reason: "not a repository name".into(),
            });
        }
        let path = format!("blobs/uploads/?mount={digest}&from={from_repository}");
        let what = format!("mount of {described} from {from_repository}");
        let no_headers = HeaderMap::new();
        let result = retry::with_retries(&endpoint.policy, &what, || {
            endpoint
                .transport
                .request(Push, Method::POST, &path, &no_headers, None)
        })
        .await;
        let response = match result {
            Ok(response) => response,
            Err(failure) if failure.verdict() == retry::Verdict::Fail => {
                tracing::debug!("{what} refused: {failure}");
                return Ok(false);
            }
            Err(failure) => return Err(self.map_failure(failure, "blob", &described)),
        };
        if response.status() == reqwest::StatusCode::CREATED {
            return Ok(true);
        }
        // It opened an upload instead: cancel it, or it lingers until the
        // registry purges stale uploads.
        if let Some(location) = location(&response) {
            let cancel =
                endpoint
                    .transport
                    .request(Push, Method::DELETE, &location, &no_headers, None);
            if let Err(e) = retry::attempt(&endpoint.policy, cancel).await {
                tracing::debug!("{what}: cancelling the upload it opened: {e}");
            }
        }
        Ok(false)
    }

    /// Upload a blob of `size` bytes that `open` reads (from the start,
    /// each time it is called: again when a transient failure restarts
    /// the upload). Its reader is read on a blocking thread, a chunk at a
    /// time, while the chunks before are sent (one `PUT`).
    ///
    /// Errors: a source that is not `size` bytes long, or a registry that
    /// states another digest for what it stored, is an integrity error;
    /// the source's own errors are returned as they are.
    pub async fn push_blob<F>(&self, digest: &Digest, size: u64, open: F) -> Result<()>
    where
        F: Fn() -> Result<Box<dyn Read + Send>> + Send + Sync + 'static,
    {
        let endpoint = self.push_endpoint()?;
        let described = self.describe(&digest.to_string());
        let source = Source {
            open: Arc::new(open),
            digest: digest.clone(),
            size,
            described: described.clone(),
            failed: Arc::new(Mutex::new(None)),
            cancel: self.cancel().clone(),
        };
        // An upload of gigabytes takes as long as it takes: what is
        // bounded is silence (see `Silence`), not the whole attempt.
        let policy = RetryPolicy {
            timeout: Duration::MAX,
            ..endpoint.policy
        };
        let result = retry::with_retries(&policy, &format!("upload of {described}"), || {
            self.upload(endpoint, &source)
        })
        .await;
        if let Some(error) = source.take_failure() {
            return Err(error);
        }
        let response = result.map_err(|e| self.map_failure(e, "blob", &described))?;
        self.check_stated_digest("blob", &response, digest)
    }

    /// Push `bytes`, exactly, as manifest `reference` (a tag or its
    /// digest) of type `media_type`. Returns its digest (sha256 of
    /// `bytes`). A `reference` digest that is not the bytes', or a registry
    /// that states another digest, is an integrity error.
    pub async fn push_manifest(
        &self,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<Digest> {
        let endpoint = self.push_endpoint()?;
        let digest = Digest::sha256_of(bytes);
        if reference.contains(':') {
            Digest::parse(reference)?.verify("manifest", bytes)?;
        }
        let described = self.describe(reference);
        let mut headers = HeaderMap::new();
        let content_type = HeaderValue::from_str(media_type).map_err(|_| {
            Error::Usage(format!(
                "{described}: media type {media_type:?} cannot be a header"
            ))
        })?;
        headers.insert(header::CONTENT_TYPE, content_type);
        let path = format!("manifests/{reference}");
        let body = Bytes::copy_from_slice(bytes);
        let make_body = || reqwest::Body::from(body.clone());
        let response =
            retry::with_retries(&endpoint.policy, &format!("manifest {described}"), || {
                endpoint
                    .transport
                    .request(Push, Method::PUT, &path, &headers, Some(&make_body))
            })
            .await
            .map_err(|e| self.map_failure(e, "manifest", &format!("{described} ({digest})")))?;
        self.check_stated_digest("manifest", &response, &digest)?;
        Ok(digest)
    }

    /// The registry itself (the last endpoint; the others are mirrors).
    fn push_endpoint(&self) -> Result<&Endpoint> {
        self.endpoints
            .iter()
            .rfind(|e| !e.mirror)
            .ok_or_else(|| Error::Registry {
                reference: self.image.to_string(),
                message: "no registry to push to (only mirrors)".into(),
            })
    }

    /// One upload attempt: open an upload, then send the blob to it,
    /// resumably if it is large and the registry takes a `PATCH`.
    async fn upload<F>(
        &self,
        endpoint: &Endpoint,
        source: &Source<F>,
    ) -> Result<reqwest::Response, Failure>
    where
        F: Fn() -> Result<Box<dyn Read + Send>> + Send + Sync + 'static,
    {
        let mut location = self.open_upload(endpoint).await?;
        if source.size >= RESUMABLE {
            match self.patch(endpoint, source, &location).await {
                Ok(received) => {
                    return self.send(endpoint, source, &received, false).await;
                }
                Err(Patched::Unsupported(failure)) => {
                    tracing::debug!(
                        "{}: no resumable upload ({failure}); sending it whole",
                        source.described
                    );
                    location = self.open_upload(endpoint).await?;
                }
                Err(Patched::Failed(failure)) => return Err(failure),
            }
        }
        self.send(endpoint, source, &location, true).await
    }

    /// Open an upload session: where to send the blob.
    async fn open_upload(&self, endpoint: &Endpoint) -> Result<String, Failure> {
        let no_headers = HeaderMap::new();
        let start =
            endpoint
                .transport
                .request(Push, Method::POST, "blobs/uploads/", &no_headers, None);
        let opened = retry::attempt(&endpoint.policy, start).await?;
        location(&opened).ok_or_else(|| {
            Failure::Protocol(
                "the registry opened an upload without saying where (no Location)".into(),
            )
        })
    }

    /// Close the upload at `location` with `PUT ?digest=`: with the whole
    /// blob as its body (`whole`), or with none (it was sent by `PATCH`).
    async fn send<F>(
        &self,
        endpoint: &Endpoint,
        source: &Source<F>,
        location: &str,
        whole: bool,
    ) -> Result<reqwest::Response, Failure>
    where
        F: Fn() -> Result<Box<dyn Read + Send>> + Send + Sync + 'static,
    {
        let separator = if location.contains('?') { '&' } else { '?' };
        let target = format!("{location}{separator}digest={}", source.digest);
        let length = if whole { source.size } else { 0 };
        let mut headers = HeaderMap::new();
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        );
        let silence = Arc::new(Silence::new());
        let make_body = || {
            if whole {
                source.body(silence.clone(), 0)
            } else {
                reqwest::Body::from(Bytes::new())
            }
        };
        let put =
            endpoint
                .transport
                .request(Push, Method::PUT, &target, &headers, Some(&make_body));
        self.watched(endpoint, source, &silence, put).await
    }

    /// Send the blob with `PATCH`, resuming where the registry says it
    /// got to when the connection breaks; where to close the upload.
    async fn patch<F>(
        &self,
        endpoint: &Endpoint,
        source: &Source<F>,
        location: &str,
    ) -> Result<String, Patched>
    where
        F: Fn() -> Result<Box<dyn Read + Send>> + Send + Sync + 'static,
    {
        let mut location = location.to_string();
        let mut offset = 0u64;
        let mut resumes = 0;
        loop {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::CONTENT_LENGTH,
                HeaderValue::from(source.size - offset),
            );
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            let range = format!("{offset}-{}", source.size - 1);
            let range = HeaderValue::from_str(&range)
                .map_err(|e| Patched::Failed(Failure::Request(e.to_string())))?;
            headers.insert(header::CONTENT_RANGE, range);
            let silence = Arc::new(Silence::new());
            let make_body = || source.body(silence.clone(), offset);
            let sent = endpoint.transport.request(
                Push,
                Method::PATCH,
                &location,
                &headers,
                Some(&make_body),
            );
            let failure = match self.watched(endpoint, source, &silence, sent).await {
                Ok(answer) => return Ok(self::location(&answer).unwrap_or(location)),
                Err(failure) => failure,
            };
            if source.has_failed() {
                return Err(Patched::Failed(failure));
            }
            // A registry without resumable uploads says so at once.
            if let (0, Failure::Status { code, .. }) = (offset, &failure)
                && matches!(code, 400 | 404 | 405 | 416 | 501)
            {
                return Err(Patched::Unsupported(failure));
            }
            let verdict = failure.verdict();
            if verdict == retry::Verdict::Fail || resumes >= endpoint.policy.retries {
                return Err(Patched::Failed(failure));
            }
            resumes += 1;
            tokio::time::sleep(endpoint.policy.delay(resumes, verdict)).await;
            // A registry that lost the upload (or will not say) gets it
            // again from the start: the original failure is retryable.
            let Ok((at, received)) = self.upload_status(endpoint, &location).await else {
                return Err(Patched::Failed(failure));
            };
            tracing::warn!(
                "upload of {}: {failure}; resuming at byte {received} of {} ({resumes}/{})",
                source.described,
                source.size,
                endpoint.policy.retries
            );
            location = at;
            offset = received;
        }
    }

    /// How much of the upload at `location` the registry has (`GET`:
    /// `204`, `Range: 0-N` for N+1 bytes), and where to go on.
    async fn upload_status(
        &self,
        endpoint: &Endpoint,
        location: &str,
    ) -> Result<(String, u64), Failure> {
        let no_headers = HeaderMap::new();
        let asked = endpoint
            .transport
            .request(Push, Method::GET, location, &no_headers, None);
        let answer = retry::attempt(&endpoint.policy, asked).await?;
        let received = match answer.headers().get(header::RANGE) {
            None => 0,
            Some(range) => range
                .to_str()
                .ok()
                .and_then(|r| r.trim().trim_start_matches("bytes=").split_once('-'))
                .and_then(|(_, end)| end.trim().parse::<u64>().ok())
                .map(|end| end + 1)
                .ok_or_else(|| {
                    Failure::Protocol(format!(
                        "an upload status with a Range header of {:?}",
                        crate::escape::bytes(range.as_bytes())
                    ))
                })?,
        };
        let next = self::location(&answer).unwrap_or_else(|| location.to_string());
        Ok((next, received))
    }

    /// Run a request whose body streams from the source, failing it when
    /// the connection stays silent too long.
    async fn watched<F>(
        &self,
        endpoint: &Endpoint,
        source: &Source<F>,
        silence: &Silence,
        request: impl std::future::Future<Output = Result<reqwest::Response, Failure>>,
    ) -> Result<reqwest::Response, Failure>
    where
        F: Fn() -> Result<Box<dyn Read + Send>> + Send + Sync + 'static,
    {
        let timeout = endpoint.policy.timeout;
        let result = tokio::select! {
            result = request => result,
            () = silence.exceeds(timeout) => Err(Failure::Timeout(timeout)),
        };
        match result {
            // Reading the blob failed here, not the network: retrying
            // would not help (the caller reports the source's error).
            Err(_) if source.has_failed() => {
                Err(Failure::Request("the blob's source failed".into()))
            }
            other => other,
        }
    }

    /// A `Docker-Content-Digest` answer that is not `digest` means the
    /// registry stored something else.
    fn check_stated_digest(
        &self,
        what: &'static str,
        response: &reqwest::Response,
        digest: &Digest,
    ) -> Result<()> {
        match response.headers().get(CONTENT_DIGEST) {
            Some(stated) if stated.as_bytes() != digest.to_string().as_bytes() => {
                Err(IntegrityError::DigestMismatch {
                    what,
                    expected: self.describe(&digest.to_string()),
                    actual: crate::escape::bytes(stated.as_bytes()),
                }
                .into())
            }
            _ => Ok(()),
        }
    }
}

/// Why a resumable upload stopped.
enum Patched {
    /// The registry does not take `PATCH` uploads: send it whole.
    Unsupported(Failure),
    /// It failed for good (or ran out of resumes).
    Failed(Failure),
}

/// The `Location` header of an answer, if it has a usable one.
fn location(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get(header::LOCATION)?.to_str().ok()?;
    (!value.is_empty()).then(|| value.to_string())
}

/// The blob being uploaded and what became of reading it.
struct Source<F> {
    open: Arc<F>,
    digest: Digest,
    size: u64,
    /// `repo@digest`, for messages.
    described: String,
    /// Why reading the blob failed, if it did.
    failed: Arc<Mutex<Option<Error>>>,
    /// What stops the upload.
    cancel: Cancel,
}

impl<F> Source<F>
where
    F: Fn() -> Result<Box<dyn Read + Send>> + Send + Sync + 'static,
{
    /// A request body that streams a fresh reader of the blob: a thread
    /// reads it a chunk at a time into a short queue, so at most a few
    /// chunks are in memory; if the request is dropped, the thread stops.
    fn body(&self, silence: Arc<Silence>, skip: u64) -> reqwest::Body {
        let (tx, rx) = tokio::sync::mpsc::channel::<io::Result<Bytes>>(QUEUED);
        let open = self.open.clone();
        let failed = self.failed.clone();
        let (digest, size, described) = (self.digest.clone(), self.size, self.described.clone());
        let cancel = self.cancel.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(error) = produce(&*open, &digest, size, skip, &described, &tx, &cancel) {
                let message = error.to_string();
                *failed.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
                let _ = tx.blocking_send(Err(io::Error::other(message)));
            }
        });
        let chunks = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|chunk| (chunk, rx))
        })
        .inspect(move |_| silence.heard());
        reqwest::Body::wrap_stream(chunks)
    }

    fn has_failed(&self) -> bool {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
    }

    fn take_failure(&self) -> Option<Error> {
        self.failed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Read the blob from a fresh reader into `tx`, holding it to `size`
/// bytes. Returns early, without error, when the request went away.
fn produce<F>(
    open: &F,
    digest: &Digest,
    size: u64,
    skip: u64,
    described: &str,
    tx: &tokio::sync::mpsc::Sender<io::Result<Bytes>>,
    cancel: &Cancel,
) -> Result<()>
where
    F: Fn() -> Result<Box<dyn Read + Send>>,
{
    let mut reader = open()?;
    let mut sent = 0u64;
    let wrong_size = |actual| IntegrityError::SizeMismatch {
        what: "blob",
        digest: digest.to_string(),
        expected: size,
        actual,
    };
    loop {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        // One byte more than is left, to notice a source that is too long.
        let left = size.saturating_add(1).saturating_sub(sent);
        let mut buf = vec![0u8; usize::try_from(left).unwrap_or(CHUNK).min(CHUNK)];
        let n = match reader.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(read_error(e, described)),
        };
        if n == 0 {
            return if sent == size {
                Ok(())
            } else {
                Err(wrong_size(sent).into())
            };
        }
        let start = sent;
        sent += n as u64;
        if sent > size {
            return Err(wrong_size(sent).into());
        }
        // What the registry has already (a resumed upload) is read, for
        // the checks that see every byte, but not sent again.
        if sent <= skip {
            continue;
        }
        let from = skip.saturating_sub(start) as usize;
        buf.truncate(n);
        let chunk = Bytes::from(buf).slice(from..);
        if tx.blocking_send(Ok(chunk)).is_err() {
            return Ok(());
        }
    }
}

/// Our error for a failed read of a blob to upload: an integrity error if
/// the source verifies what it reads, else an I/O error naming the blob.
fn read_error(err: io::Error, described: &str) -> Error {
    if let Some(integrity) = crate::digest::integrity_cause(&err) {
        return Error::Integrity(integrity.clone());
    }
    Error::io(format!("{described} (reading it to upload)"), err)
}

/// When an upload last made progress, to tell a slow upload from one
/// that stalled: a stalled one has sent nothing, and heard nothing, for
/// the whole timeout.
struct Silence {
    start: Instant,
    /// Milliseconds from `start` to the last chunk sent.
    last: AtomicU64,
}

impl Silence {
    fn new() -> Silence {
        Silence {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn heard(&self) {
        let now = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last.store(now, Ordering::Relaxed);
    }

    /// Completes once nothing was heard for `timeout`.
    async fn exceeds(&self, timeout: Duration) {
        loop {
            let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
            let quiet = self.start.elapsed().saturating_sub(last);
            if quiet >= timeout {
                return;
            }
            tokio::time::sleep(timeout - quiet).await;
        }
    }
}
