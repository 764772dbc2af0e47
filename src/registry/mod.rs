//! The only code that speaks HTTP (`transport`). Everything handed out is
//! either verified already (manifests, configs) or verified as it streams
//! (blobs). Failed requests are retried as `retry` says; blob downloads
//! resume where they broke off (`blob`). Which endpoints to ask — the
//! mirrors of registries.conf, then the registry itself — and what is
//! blocked or insecure come from [`config`]; extra CA roots from `certs`.
//! Pushes (`push`) go to the registry itself, never to a mirror.

pub mod auth;
mod blob;
mod certs;
pub mod config;
pub mod push;
mod retry;
mod transport;

use std::fs::File;
use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;

use crate::cache::{BlobCache, CacheWriter};
use crate::cancel::Cancel;
use crate::digest::IntegrityError;
use crate::digest::{Digest, VerifyingReader};
use crate::layer::LayerLimits;
use crate::reference::ImageRef;
use crate::{Error, Result};

use blob::{BlobSource, ResumingReader};
pub use config::RegistriesConf;
use retry::RetryPolicy;
use transport::{Failure, Security, Transport};

/// Media types of manifests we understand, in order of preference.
pub const MANIFEST_MEDIA_TYPES: &[&str] = &[
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    DOCKER_MANIFEST,
    OCI_MANIFEST,
];
/// Docker schema2 manifest list.
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
/// OCI image index.
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
/// Docker schema2 image manifest.
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// OCI image manifest.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Manifests and indexes larger than this are refused: real ones are a few KiB.
pub const MANIFEST_LIMIT: u64 = 4 * 1024 * 1024;
/// Image configs larger than this are refused (long histories reach a few MiB).
pub const CONFIG_LIMIT: u64 = 32 * 1024 * 1024;

/// Retries of a failed request, by default.
pub const DEFAULT_RETRIES: u32 = 4;
/// How long a registry may stay silent, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Wait before the first retry, by default (it doubles with each retry).
pub const DEFAULT_RETRY_DELAY: Duration = Duration::from_millis(500);

/// How to reach a registry, how hard to try, and what to accept from it.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Use plain HTTP whatever the host (loopback registries always do).
    pub insecure: bool,
    /// Explicit username and password; otherwise the credentials files
    /// (see [`auth::credentials_for`]), else anonymous.
    pub credentials: Option<(String, String)>,
    /// A credentials file to read before the default ones
    /// (`--authfile`, `REGISTRY_AUTH_FILE`).
    pub authfile: Option<std::path::PathBuf>,
    /// Retries of a request that failed transiently (connection error,
    /// timeout, 408, 429, 5xx, a body cut short).
    pub retries: u32,
    /// How long the registry may stay silent: to connect, to answer, or
    /// between two reads of a body.
    pub timeout: Duration,
    /// Wait before the first retry; doubles with each retry (with jitter).
    pub retry_delay: Duration,
    /// Caps on what one layer may decompress to.
    pub layer_limits: LayerLimits,
    /// The blob cache to read from and fill, if any.
    pub cache: Option<BlobCache>,
    /// Blob downloads at once (with a cache, later layers are fetched into
    /// it while earlier ones are applied).
    pub jobs: usize,
    /// registries.conf: blocked and insecure registries, `location`
    /// rewrites and mirrors (see [`config`]). Empty by default; the CLI
    /// loads the containers tools' files unless told otherwise.
    pub registries_conf: RegistriesConf,
    /// Directories with a `HOST[:PORT]/` directory of extra CA roots
    /// (`*.crt`, PEM) per registry, as containers-certs.d(5) and Docker's
    /// `certs.d`. Default: [`DEFAULT_CERTS_D`].
    pub certs_d: Vec<std::path::PathBuf>,
    /// A directory of `*.crt` CA roots used for every registry instead of
    /// `certs_d` (`--cert-dir`).
    pub cert_dir: Option<std::path::PathBuf>,
}

/// Where the containers tools and Docker keep per-registry certificates.
pub const DEFAULT_CERTS_D: &[&str] = &["/etc/containers/certs.d", "/etc/docker/certs.d"];

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: false,
            credentials: None,
            authfile: None,
            retries: DEFAULT_RETRIES,
            timeout: DEFAULT_TIMEOUT,
            retry_delay: DEFAULT_RETRY_DELAY,
            cache: None,
            jobs: DEFAULT_JOBS,
            layer_limits: LayerLimits::default(),
            registries_conf: RegistriesConf::default(),
            certs_d: DEFAULT_CERTS_D.iter().map(Into::into).collect(),
            cert_dir: None,
        }
    }
}

impl RegistryOptions {
    fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries: self.retries,
            base_delay: self.retry_delay,
            timeout: self.timeout,
        }
    }
}

/// A manifest or index exactly as the registry sent it, verified.
#[derive(Debug, Clone)]
pub struct RawManifest {
    /// The exact bytes (their digest is the manifest's identity).
    pub bytes: Bytes,
    /// sha256 of `bytes`.
    pub digest: Digest,
    /// The declared media type (from the body; inferred for OCI bodies without one).
    pub media_type: String,
}

/// Default number of concurrent blob downloads.
pub const DEFAULT_JOBS: usize = 4;

/// A connection to one repository of one registry, and to its mirrors
/// (registries.conf). Clones share the connection pools and tokens.
///
/// Endpoints: the mirrors that serve this kind of pull, in order, then the
/// registry itself. A manifest is asked of each in turn until one answers;
/// a mirror that fails (any error: connection, 5xx, 404, a bad digest) is
/// warned about and skipped for the rest of this connection's life. Blobs
/// are asked first of the endpoint that served the last manifest, then of
/// the endpoints after it. Mirrors cannot change content: blobs and
/// manifests fetched by digest are verified as always; a manifest fetched
/// by tag is whatever the mirror says the tag is (`pull-from-mirror =
/// "digest-only"` avoids that).
#[derive(Clone)]
pub struct Registry {
    endpoints: Arc<Vec<Endpoint>>,
    /// The endpoint that served the last manifest.
    served_by: Arc<AtomicUsize>,
    image: ImageRef,
    layer_limits: LayerLimits,
    cache: Option<BlobCache>,
    jobs: usize,
    cancel: Cancel,
}

impl Registry {
    /// This connection, stopped by `cancel` (prefetches, uploads).
    pub fn with_cancel(mut self, cancel: Cancel) -> Registry {
        self.cancel = cancel;
        self
    }

    /// What stops this connection's work.
    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// Prepare a client for `image`'s repository (no request is made yet).
    /// A blocked registry (registries.conf) is an error.
    pub fn connect(image: &ImageRef, opts: &RegistryOptions) -> Result<Registry> {
        let mut endpoints = Vec::new();
        for endpoint in opts.registries_conf.endpoints(image)? {
            let target = &endpoint.image;
            // Explicit credentials are for the registry named, not for
            // its mirrors (those use the credentials files).
            let explicit = (!endpoint.mirror)
                .then(|| opts.credentials.clone())
                .flatten();
            let auth = auth::credentials_for(target, explicit, opts.authfile.as_deref())?;
            let security = if opts.insecure || target.is_loopback_registry() {
                Security::Http
            } else if endpoint.insecure {
                Security::Insecure
            } else {
                Security::Https
            };
            let roots = certs::roots_for(&target.registry, opts)?;
            let transport = Transport::new(target.to_oci(), auth, security, opts.timeout, roots)
                .map_err(|e| Error::Registry {
                    reference: target.to_string(),
                    message: e.to_string(),
                })?;
            let mut policy = opts.retry_policy();
            if endpoint.mirror {
                // A mirror that is down should cost little before the
                // next endpoint is tried.
                policy.retries = policy.retries.min(1);
            }
            endpoints.push(Endpoint {
                transport: Arc::new(transport),
                host: target.registry.clone(),
                mirror: endpoint.mirror,
                policy,
                failed: AtomicBool::new(false),
            });
        }
        if endpoints.len() > 1 || endpoints[0].host != image.registry {
            let list: Vec<_> = endpoints.iter().map(|e| e.host.as_str()).collect();
            tracing::debug!("{image}: endpoints {}", list.join(", "));
        }
        Ok(Registry {
            endpoints: Arc::new(endpoints),
            served_by: Arc::new(AtomicUsize::new(0)),
            image: image.clone(),
            layer_limits: opts.layer_limits,
            cache: opts.cache.clone(),
            jobs: opts.jobs.max(1),
            cancel: Cancel::new(),
        })
    }

    /// How many blob downloads may run at once.
    pub fn jobs(&self) -> usize {
        self.jobs
    }

    /// The blob cache downloads go into (so they can run ahead), if any.
    pub fn cache(&self) -> Option<&BlobCache> {
        self.cache.as_ref()
    }

    /// Make sure a blob is in the cache, verified, ahead of its use:
    /// check the cached copy, or download one; `stop` abandons a download.
    /// Returns the verified copy, ready for [`Registry::cached_blob`];
    /// `None` if there is no cache or it failed (the real read then tries
    /// again and reports errors).
    pub async fn prefetch(
        &self,
        digest: &Digest,
        size: u64,
        stop: Arc<AtomicBool>,
    ) -> Option<File> {
        let cache = self.cache.clone()?;
        if cache.contains(digest, size) {
            let digest = digest.clone();
            if let Some(Some(file)) = in_background(move || cache.get(&digest, size)).await {
                return Some(file);
            }
        }
        let mut blob = self.open_blob("layer", digest, size).await.ok()?;
        let cancel = self.cancel.clone();
        in_background(move || {
            let mut buf = vec![0u8; 256 * 1024];
            while !stop.load(Ordering::Relaxed) && !cancel.is_cancelled() {
                match blob.read(&mut buf) {
                    Ok(0) => return blob.published.take(),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
            None
        })
        .await
        .flatten()
    }

    /// A blob from a copy [`Registry::prefetch`] verified.
    pub fn cached_blob(
        &self,
        what: &'static str,
        digest: &Digest,
        size: u64,
        file: File,
    ) -> BlobReader {
        BlobReader {
            inner: VerifyingReader::verified(Box::new(file), what, digest.clone(), size),
            reference: self.describe(&digest.to_string()),
            tee: None,
            published: None,
            local: None,
        }
    }

    /// The caps on what a layer of this registry may decompress to.
    pub fn layer_limits(&self) -> LayerLimits {
        self.layer_limits
    }

    /// The image this connection was made for.
    pub fn image(&self) -> &ImageRef {
        &self.image
    }

    /// Fetch a manifest or index by tag or digest, checking it against the
    /// digest when there is one.
    pub async fn manifest(&self, reference: &str) -> Result<RawManifest> {
        let mut last = None;
        for index in self.candidates(0) {
            let endpoint = &self.endpoints[index];
            match self.manifest_from(endpoint, reference).await {
                Ok(manifest) => {
                    self.served_by.store(index, Ordering::Relaxed);
                    return Ok(manifest);
                }
                Err(e) if endpoint.mirror => self.mirror_failed(endpoint, &e),
                Err(e) => return Err(e),
            }
            last = Some(index);
        }
        Err(Error::Registry {
            reference: self.describe(reference),
            message: format!(
                "no endpoint left to try (last: {})",
                last.map_or("none", |i| self.endpoints[i].host.as_str())
            ),
        })
    }

    /// The endpoints to try, from `start` on, leaving out failed mirrors.
    fn candidates(&self, start: usize) -> Vec<usize> {
        (start..self.endpoints.len())
            .filter(|&i| !self.endpoints[i].failed.load(Ordering::Relaxed))
            .collect()
    }

    fn mirror_failed(&self, endpoint: &Endpoint, error: &Error) {
        if !endpoint.failed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "mirror {} failed, trying the next endpoint: {error}",
                endpoint.host
            );
        }
    }

    async fn manifest_from(&self, endpoint: &Endpoint, reference: &str) -> Result<RawManifest> {
        let what = format!("manifest {}", self.describe_at(endpoint, reference));
        let path = format!("manifests/{reference}");
        let accept = MANIFEST_MEDIA_TYPES.join(", ");
        let bytes = retry::with_retries(&endpoint.policy, &what, || async {
            let response = endpoint.transport.get(&path, Some(&accept), 0).await?;
            transport::read_capped(response, MANIFEST_LIMIT).await
        })
        .await
        .map_err(|e| self.map_failure(e, "manifest", &self.describe_at(endpoint, reference)))?;
        let digest = Digest::sha256_of(&bytes);
        if reference.contains(':') {
            Digest::parse(reference)?.verify("manifest", &bytes)?;
        }
        let media_type =
            manifest_media_type(&bytes, &format!("{} ({digest})", self.describe(reference)))?;
        Ok(RawManifest {
            bytes,
            digest,
            media_type,
        })
    }

    /// Open a blob as a blocking reader that verifies size and digest as
    /// it streams. Read it from a blocking thread (`spawn_blocking`).
    pub async fn open_blob(
        &self,
        what: &'static str,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobReader> {
        let reference = self.describe(&digest.to_string());
        if let Some(file) = self.cache.as_ref().and_then(|c| c.get(digest, size)) {
            tracing::debug!("{what} {digest}: from the cache");
            return Ok(self.cached_blob(what, digest, size, file));
        }
        let served_by = self.served_by.load(Ordering::Relaxed);
        let mut opened = None;
        for index in self.candidates(served_by) {
            let endpoint = &self.endpoints[index];
            let source = BlobSource {
                transport: endpoint.transport.clone(),
                digest: digest.to_string(),
                size,
                policy: endpoint.policy,
                handle: tokio::runtime::Handle::current(),
            };
            let described = self.describe_at(endpoint, &source.digest);
            match retry::with_retries(&endpoint.policy, &format!("{what} {described}"), || {
                source.request(0)
            })
            .await
            {
                Ok((body, _)) => {
                    opened = Some((source, body));
                    break;
                }
                Err(e) => {
                    let error = self.map_failure(e, what, &described);
                    if endpoint.mirror {
                        self.mirror_failed(endpoint, &error);
                    } else {
                        return Err(error);
                    }
                }
            }
        }
        let Some((source, body)) = opened else {
            return Err(Error::Registry {
                reference,
                message: "no endpoint left to try".into(),
            });
        };
        let reader: Box<dyn Read + Send> = Box::new(ResumingReader::new(source, body));
        Ok(BlobReader {
            inner: VerifyingReader::new(reader, what, digest.clone(), Some(size)),
            reference,
            tee: self.cache.as_ref().and_then(|c| c.writer(digest)),
            published: None,
            local: None,
        })
    }

    /// `repo:tag` or `repo@sha256:...`, for messages.
    fn describe(&self, what: &str) -> String {
        format!("{}:{}", self.image.familiar_repository(), what).replace(":sha256:", "@sha256:")
    }

    /// Like [`Registry::describe`], naming the endpoint when it is not the
    /// registry the user named.
    fn describe_at(&self, endpoint: &Endpoint, what: &str) -> String {
        let described = self.describe(what);
        if endpoint.host == self.image.registry && self.endpoints.len() == 1 {
            described
        } else {
            format!("{described} (at {})", endpoint.host)
        }
    }

    /// Our error for a request for `what` (`reference`, described) that
    /// failed for good, classed by what the user can do about it.
    fn map_failure(&self, failure: Failure, what: &'static str, reference: &str) -> Error {
        let message = failure.to_string();
        let reference = reference.to_string();
        if let Failure::TooLarge(limit) = failure {
            IntegrityError::TooLarge {
                what,
                digest: reference,
                limit,
            }
            .into()
        } else if failure.is_not_found() {
            Error::NotFound { reference, message }
        } else if failure.is_denied() {
            Error::Auth { reference, message }
        } else {
            Error::Registry { reference, message }
        }
    }
}

/// One place to pull from: a mirror or the registry itself.
struct Endpoint {
    transport: Arc<Transport>,
    /// Host and port, for messages.
    host: String,
    mirror: bool,
    policy: RetryPolicy,
    /// A mirror that failed once is not asked again.
    failed: AtomicBool,
}

/// A blob being downloaded, verified as it is read.
pub struct BlobReader {
    inner: VerifyingReader<Box<dyn Read + Send>>,
    reference: String,
    /// Where a download is copied for the cache: published once the end
    /// of the blob verified.
    tee: Option<CacheWriter>,
    /// The cache's copy, once published.
    published: Option<File>,
    /// The file on this machine it is read from, if not downloaded.
    local: Option<std::path::PathBuf>,
}

impl BlobReader {
    /// A blob read from a file on this machine (at `path`, which may be
    /// `ARCHIVE/MEMBER`), verified as it streams.
    pub fn local(
        reader: Box<dyn Read + Send>,
        what: &'static str,
        digest: Digest,
        size: u64,
        path: std::path::PathBuf,
    ) -> BlobReader {
        BlobReader {
            inner: VerifyingReader::new(reader, what, digest, Some(size)),
            reference: crate::escape::path(&path).to_string(),
            tee: None,
            published: None,
            local: Some(path),
        }
    }

    /// Turn an error from reading this blob into the library's error.
    pub fn classify(&self, err: io::Error) -> Error {
        if let Some(i) = crate::digest::integrity_cause(&err) {
            return Error::Integrity(i.clone());
        }
        let message = match crate::error::find_cause::<TransportError>(&err) {
            Some(t) => t.message.clone(),
            None => err.to_string(),
        };
        match &self.local {
            Some(path) => Error::io(path, err),
            None => Error::Registry {
                reference: self.reference.clone(),
                message: format!("download failed: {message}"),
            },
        }
    }
}

impl Read for BlobReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf);
        match (&read, self.tee.as_mut()) {
            (Ok(0), Some(_)) if !buf.is_empty() => {
                self.published = self.tee.take().and_then(CacheWriter::commit);
            }
            (Ok(n), Some(tee)) => tee.write(&buf[..*n]),
            _ => {}
        }
        read.map_err(|e| {
            if crate::digest::integrity_cause(&e).is_some() || self.local.is_some() {
                e
            } else {
                // Tagged so that readers further down the pipeline can tell a
                // failed download from corrupt content.
                io::Error::other(TransportError {
                    reference: self.reference.clone(),
                    message: e.to_string(),
                })
            }
        })
    }
}

pub use crate::error::TransportError;

/// Work out what a manifest body is. Docker schema1 and unknown types are
/// refused; errors name the manifest as `name`.
// Public only for the manifest fuzz target (fuzz/checks.rs).
#[doc(hidden)]
pub fn manifest_media_type(bytes: &[u8], name: &str) -> Result<String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        schema_version: Option<u32>,
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(|e| Error::Malformed {
        what: "manifest".into(),
        digest: name.to_string(),
        reason: e.to_string(),
    })?;
    let unsupported = |media_type: &str, reason: &str| Error::UnsupportedManifest {
        reference: name.to_string(),
        media_type: media_type.to_string(),
        reason: reason.to_string(),
    };
    if probe.schema_version == Some(1) {
        return Err(unsupported(
            probe.media_type.as_deref().unwrap_or("schema1"),
            "Docker schema1 manifests are deprecated and not supported; push the image again with a current client",
        ));
    }
    match probe.media_type {
        Some(mt) if MANIFEST_MEDIA_TYPES.contains(&mt.as_str()) => Ok(mt),
        Some(mt) => Err(unsupported(&mt, "not an image manifest or index")),
        None if probe.manifests.is_some() => Ok(OCI_INDEX.to_string()),
        None if probe.layers.is_some() => Ok(OCI_MANIFEST.to_string()),
        None => Err(unsupported("(none)", "neither a manifest nor an index")),
    }
}

/// Run `work` on a thread of its own at a lower CPU priority: prefetching
/// (hashing, cache writes) must not take a core from the layer being
/// decoded and applied now, which is what the user waits for. A thread of
/// its own, not the blocking pool's, because an unprivileged thread cannot
/// raise its priority again and pool threads go on to decode. `None` if the
/// thread could not be started or panicked.
async fn in_background<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("prefetch".into())
        .spawn(move || {
            // SAFETY: setpriority has no memory-safety preconditions; who 0
            // with PRIO_PROCESS means the calling thread on Linux.
            unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, BACKGROUND_NICE) };
            let _ = tx.send(work());
        })
        .ok()?;
    rx.await.ok()
}

/// The niceness of prefetch threads: under contention they get about a
/// tenth of what a foreground thread gets, and all of an idle core.
const BACKGROUND_NICE: libc::c_int = 10;

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(body: &str) -> Result<String> {
        manifest_media_type(body.as_bytes(), "test")
    }

    #[test]
    fn manifest_types() {
        assert_eq!(
            kind(r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","layers":[]}"#).unwrap(),
            DOCKER_MANIFEST
        );
        assert_eq!(
            kind(r#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            OCI_INDEX
        );
        assert_eq!(
            kind(r#"{"schemaVersion":2,"config":{},"layers":[]}"#).unwrap(),
            OCI_MANIFEST
        );
        let schema1 = kind(r#"{"schemaVersion":1,"name":"x","fsLayers":[]}"#).unwrap_err();
        assert!(schema1.to_string().contains("schema1"), "{schema1}");
        assert_eq!(schema1.kind(), crate::error::ErrorKind::Integrity);
        let other =
            kind(r#"{"schemaVersion":2,"mediaType":"application/vnd.example+json"}"#).unwrap_err();
        assert!(
            other.to_string().contains("application/vnd.example+json"),
            "{other}"
        );
        assert!(matches!(kind("not json"), Err(Error::Malformed { .. })));
        assert!(matches!(
            kind(r#"{"schemaVersion":2}"#),
            Err(Error::UnsupportedManifest { .. })
        ));
    }
}
