//! Where images come from, named as containers-transports(5) names them
//! ([`ImageName`]): a registry ([`crate::registry`]), a `docker save`
//! archive, an OCI layout, an `oci-archive` or the local engine. A [`Source`] hands out
//! manifests and blobs and decides nothing about trust: what it gives is
//! verified by [`crate::image`] (manifests, configs) and the layer pipeline
//! ([`crate::layer`]: blobs, diff_ids) whichever source it is.
//!
//! Archives are read where they lie: a tar is indexed by seeking from
//! header to header, then each file is read at its offset; nothing is
//! extracted or spooled. Only the engine's export stream is spooled (to
//! an anonymous file), as its format forces: a classic `docker save`
//! stream lists its layers' order last, in `manifest.json`.
//!
//! Sources are an enum, not a trait object: the transports are all ours,
//! and the registry's are async while the others are plain file reads.

mod docker_archive;
mod files;
mod layout;
pub mod name;

use std::fs::File;
use std::path::Path;

use crate::cache::BlobCache;
use crate::cancel::Cancel;
use crate::digest::Digest;
use crate::escape;
use crate::layer::LayerLimits;
use crate::reference::ImageRef;
use crate::registry::{BlobReader, RawManifest, Registry, RegistryOptions};
use crate::{Error, Result};

pub use layout::{REF_NAME, blob_path};
pub use name::{ArchiveImage, ImageName};

use docker_archive::DockerArchive;
use files::Files;
use layout::Layout;

/// An opened source of one image's manifests and blobs.
pub enum Source {
    /// A registry (and its mirrors), with the blob cache if any.
    Registry(Registry),
    /// A docker-archive tarball or directory.
    DockerArchive(Local<DockerArchive>),
    /// An OCI layout or oci-archive.
    Oci(Local<Layout>),
}

/// A source on this machine, and what it was opened as.
pub struct Local<T> {
    inner: T,
    name: ImageName,
    limits: LayerLimits,
    cancel: Cancel,
}

impl Source {
    /// Open what `name` names, for an operation that `cancel` stops. A
    /// registry is not contacted yet; an archive or layout is opened,
    /// indexed and its image picked.
    pub fn open(name: &ImageName, opts: &RegistryOptions, cancel: &Cancel) -> Result<Source> {
        let local = Wrap {
            name,
            limits: opts.layer_limits,
            cancel,
        };
        Ok(match name {
            ImageName::Registry(reference) => {
                Source::Registry(Registry::connect(reference, opts)?.with_cancel(cancel.clone()))
            }
            ImageName::DockerArchive { path, image } => Source::DockerArchive(
                local.wrap(DockerArchive::open(files_at(path)?, image.as_ref())?),
            ),
            ImageName::Oci {
                path,
                image,
                archive,
            } => {
                let files = if *archive {
                    Files::tar(path)?
                } else {
                    Files::dir(path)?
                };
                Source::Oci(local.wrap(Layout::open(files, image.as_deref())?))
            }
            ImageName::DockerDaemon(image) => {
                let spooled = crate::engine::export(image, &std::env::temp_dir())?;
                let files = Files::tar_file(spooled, Path::new(&name.to_string()))?;
                Source::DockerArchive(local.wrap(DockerArchive::open(files, None)?))
            }
            ImageName::Path(path) => {
                let files = files_at(path)?;
                if files.exists("manifest.json") {
                    Source::DockerArchive(local.wrap(DockerArchive::open(files, None)?))
                } else if files.exists("oci-layout") {
                    Source::Oci(local.wrap(Layout::open(files, None)?))
                } else {
                    return Err(Error::Usage(format!(
                        "{}: neither a docker-archive (no manifest.json) nor an OCI layout (no oci-layout); image names are REF, docker://REF, docker-archive:PATH, oci:PATH or oci-archive:PATH",
                        escape::path(path)
                    )));
                }
            }
        })
    }

    /// The name the image was asked for by, for messages and reports.
    pub fn name(&self) -> String {
        match self {
            Source::Registry(r) => r.image().to_string(),
            Source::DockerArchive(l) => l.name.to_string(),
            Source::Oci(l) => l.name.to_string(),
        }
    }

    /// The registry-style name the image goes by, for tags: the one
    /// pulled, or the one an archive or layout records.
    pub fn reference(&self) -> Option<ImageRef> {
        match self {
            Source::Registry(r) => Some(r.image().clone()),
            Source::DockerArchive(l) => l.inner.reference.clone(),
            Source::Oci(l) => l.inner.reference.clone(),
        }
    }

    /// The manifest or index the name points at, verified against its
    /// digest wherever one names it.
    pub async fn top(&self) -> Result<RawManifest> {
        match self {
            Source::Registry(r) => r.manifest(r.image().reference_string()).await,
            Source::DockerArchive(l) => Ok(l.inner.top.clone()),
            Source::Oci(l) => Ok(l.inner.top.clone()),
        }
    }

    /// An index's child manifest, verified.
    pub async fn manifest(&self, digest: &Digest) -> Result<RawManifest> {
        match self {
            Source::Registry(r) => r.manifest(&digest.to_string()).await,
            Source::DockerArchive(l) => Err(layout::missing(&l.inner.files, "manifest", digest)),
            Source::Oci(l) => layout::read_manifest(&l.inner.files, digest),
        }
    }

    /// A small blob (an image config) in memory, verified.
    pub async fn blob_bytes(
        &self,
        what: &'static str,
        digest: &Digest,
        size: u64,
        limit: u64,
    ) -> Result<Vec<u8>> {
        crate::digest::within_limit(what, digest, size, limit)?;
        let mut reader = self.open_blob(what, digest, size).await?;
        // A download blocks on the runtime: read it from a blocking thread.
        tokio::task::spawn_blocking(move || {
            let mut out = Vec::with_capacity(size as usize);
            std::io::Read::read_to_end(&mut reader, &mut out).map_err(|e| reader.classify(e))?;
            Ok(out)
        })
        .await
        .map_err(|e| Error::Usage(format!("internal error: {e}")))?
    }

    /// Open a blob as a blocking reader that verifies size and digest as
    /// it streams.
    pub async fn open_blob(
        &self,
        what: &'static str,
        digest: &Digest,
        size: u64,
    ) -> Result<BlobReader> {
        let (files, path) = match self {
            Source::Registry(r) => return r.open_blob(what, digest, size).await,
            Source::DockerArchive(l) => {
                let files = &l.inner.files;
                let path = l.inner.blobs.get(digest).cloned();
                (
                    files,
                    path.ok_or_else(|| layout::missing(files, what, digest))?,
                )
            }
            Source::Oci(l) => (&l.inner.files, layout::blob_path(digest)),
        };
        let (reader, _) = files
            .open(&path, u64::MAX)?
            .ok_or_else(|| layout::missing(files, what, digest))?;
        Ok(BlobReader::local(
            reader,
            what,
            digest.clone(),
            size,
            files.path().join(&path),
        ))
    }

    /// What stops the operation this source serves.
    pub fn cancel(&self) -> &Cancel {
        match self {
            Source::Registry(r) => r.cancel(),
            Source::DockerArchive(l) => &l.cancel,
            Source::Oci(l) => &l.cancel,
        }
    }

    /// The caps on what a layer may decompress to.
    pub fn layer_limits(&self) -> LayerLimits {
        match self {
            Source::Registry(r) => r.layer_limits(),
            Source::DockerArchive(l) => l.limits,
            Source::Oci(l) => l.limits,
        }
    }

    /// The blob cache downloads go into, if any (registries only: other
    /// sources are on this machine already).
    pub fn cache(&self) -> Option<&BlobCache> {
        match self {
            Source::Registry(r) => r.cache(),
            _ => None,
        }
    }

    /// A blob from a verified copy in the cache.
    pub fn cached_blob(
        &self,
        what: &'static str,
        digest: &Digest,
        size: u64,
        file: File,
    ) -> BlobReader {
        match self {
            Source::Registry(r) => r.cached_blob(what, digest, size, file),
            _ => BlobReader::local(
                Box::new(file),
                what,
                digest.clone(),
                size,
                self.name().into(),
            ),
        }
    }
}

/// What every local source of one `open` is given.
struct Wrap<'a> {
    name: &'a ImageName,
    limits: LayerLimits,
    cancel: &'a Cancel,
}

impl Wrap<'_> {
    fn wrap<T>(&self, inner: T) -> Local<T> {
        Local {
            inner,
            name: self.name.clone(),
            limits: self.limits,
            cancel: self.cancel.clone(),
        }
    }
}

/// A directory or tar file's files.
fn files_at(path: &Path) -> Result<Files> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        Files::dir(path)
    } else {
        Files::tar(path)
    }
}
