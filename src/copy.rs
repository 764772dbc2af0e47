//! Copy images blob for blob into a destination that stores images as
//! they are (an OCI layout or oci-archive): manifests, indexes, configs and
//! layers keep their bytes, so every digest is preserved.
//!
//! Nothing passes unchecked: each blob is verified against its digest as
//! it streams into the destination, and each layer is also decompressed
//! and walked by our tar reader on a second thread, to check its diff_id
//! and the limits a bundle would apply. Blobs the destination has already
//! are not copied. With `all`, an index is copied whole, its images first
//! and the index last; otherwise the platform's image is picked from it,
//! as for a bundle.

use std::io::{self, Read, Write};

use futures_util::{StreamExt, TryStreamExt};
use std::sync::mpsc::{Receiver, sync_channel};
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use crate::digest::{Digest, Hasher, HashingReader};
use crate::export::docker_save::CopyError;
use crate::export::oci_layout::LayoutWriter;
use crate::filter::Filter;
use crate::image;
use crate::layer::{Compression, LayerDecoder, LayerLimits};
use crate::platform::Platform;
use crate::registry::{self, RawManifest};
use crate::source::Source;
use crate::{Error, Result};

/// Chunks between the copying and the checking thread (× 256 KiB).
const DEPTH: usize = 16;

/// What a copy did.
#[derive(Debug, Clone)]
pub struct Copied {
    /// The manifest or index the destination now names (its bytes and
    /// digest are the source's).
    pub manifest: RawManifest,
    /// Images copied (more than one for an index with `all`).
    pub images: usize,
    /// Blobs written.
    pub written: usize,
    /// Blobs the destination had already.
    pub present: usize,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default)]
    platform: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Manifest {
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

/// Where a copy goes: a destination that stores images as they are.
pub(crate) enum Destination {
    /// An OCI layout or oci-archive being written.
    Layout(LayoutWriter),
    /// A registry's repository, and the tag (or digest) to push the image
    /// as. Blobs it has are skipped; blobs in another repository of the
    /// same registry that the source reads are mounted, not uploaded.
    Registry {
        registry: crate::registry::Registry,
        reference: String,
    },
}

/// How to copy.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    /// Copy an index whole (every platform), not the platform's image.
    pub all: bool,
    /// Recompress layers that are not so already (`None`: keep each
    /// layer's compression, and every digest). Recompressed layers get new
    /// digests, so their manifests (and an index over them) are rewritten
    /// and get new digests too; configs, and so image IDs, are unchanged.
    /// gzip at level 6 and zstd at level 3, without timestamps, so the same
    /// input gives the same bytes.
    pub compress: Option<Compression>,
    /// Rewrite each image's layers and config (see [`crate::filter`]): new
    /// layers, compressed as `compress` says or gzip, a new config (a new
    /// image ID) and new manifests. Artifacts are copied as they are.
    pub filter: Filter,
}

/// Copy the image `source` names into `dest`, and commit it (a layout's
/// `index.json`, a registry's tag).
pub(crate) async fn copy(
    source: Arc<Source>,
    dest: Destination,
    platform: &Platform,
    options: CopyOptions,
) -> Result<Copied> {
    let top = source.top().await?;
    let dest = match dest {
        Destination::Layout(writer) => Dest::Layout(Some(writer)),
        Destination::Registry {
            registry,
            reference,
        } => {
            // A mount needs the blob in another repository of the same
            // registry: the source's.
            let mount_from = match &*source {
                Source::Registry(from)
                    if from.image().registry == registry.image().registry
                        && from.image().repository != registry.image().repository =>
                {
                    Some(from.image().repository.clone())
                }
                _ => None,
            };
            Dest::Registry {
                registry,
                reference,
                mount_from,
            }
        }
    };
    let mut copy = Copy {
        source: source.clone(),
        dest,
        compress: options.compress,
        filter: (!options.filter.is_empty()).then(|| Arc::new(options.filter)),
        copied: Copied {
            manifest: top.clone(),
            images: 0,
            written: 0,
            present: 0,
        },
    };
    let entry_platform = if !is_index(&top) {
        copy.copied.manifest = copy.image(&top, true).await?;
        None
    } else if options.all {
        let index: Index = parse("index", &top)?;
        let mut rewritten = Vec::new();
        for child in &index.manifests {
            let digest = Digest::parse(&child.digest)?;
            let manifest = source.manifest(&digest).await?;
            if is_index(&manifest) {
                return Err(Error::UnsupportedManifest {
                    reference: format!("{}@{digest}", source.name()),
                    media_type: manifest.media_type,
                    reason: "an index nested in an index is not supported".into(),
                });
            }
            let written = copy.image(&manifest, false).await?;
            if written.digest != digest {
                rewritten.push((digest, written));
            }
        }
        let top = if rewritten.is_empty() {
            top
        } else {
            rewrite(&top, "manifests", &rewritten)?
        };
        if let Dest::Layout(_) = copy.dest {
            copy.layout()?.put_bytes(&top.digest, &top.bytes)?;
        }
        copy.copied.manifest = top;
        None
    } else {
        let resolved = image::resolve(&source, platform).await?;
        let index: Index = parse("index", &top)?;
        let entry = index
            .manifests
            .into_iter()
            .find(|m| m.digest == resolved.manifest.digest.to_string())
            .and_then(|m| m.platform);
        copy.copied.manifest = copy.image(&resolved.manifest, true).await?;
        entry
    };
    copy.commit(entry_platform).await?;
    Ok(copy.copied)
}

/// The destination as a copy holds it.
enum Dest {
    /// Away while a blocking thread writes to it.
    Layout(Option<LayoutWriter>),
    Registry {
        registry: crate::registry::Registry,
        reference: String,
        mount_from: Option<String>,
    },
}

struct Copy {
    source: Arc<Source>,
    dest: Dest,
    compress: Option<Compression>,
    filter: Option<Arc<Filter>>,
    copied: Copied,
}

impl Copy {
    fn layout(&mut self) -> Result<&mut LayoutWriter> {
        match &mut self.dest {
            Dest::Layout(writer) => writer.as_mut().ok_or_else(lost),
            Dest::Registry { .. } => Err(lost()),
        }
    }

    /// One image: config, layers, then its manifest (but a registry's
    /// root, pushed by tag at the end). Returns the manifest as written
    /// (rewritten if layers were recompressed or filtered).
    async fn image(&mut self, manifest: &RawManifest, root: bool) -> Result<RawManifest> {
        let parsed: Manifest = parse("manifest", manifest)?;
        let config_digest = Digest::parse(&parsed.config.digest)?;
        let config = self
            .source
            .blob_bytes(
                "config",
                &config_digest,
                parsed.config.size,
                registry::CONFIG_LIMIT,
            )
            .await?;
        // Layers of an image are checked as layers; an artifact's blobs
        // (signatures, SBOMs) by their digests alone.
        let diff_ids = if is_image_config(&parsed.config.media_type) {
            let (_, layers) =
                image::describe(&manifest.bytes, &manifest.digest, &config, &config_digest)?;
            Some(layers)
        } else {
            None
        };
        // A filtered image's config is written once its layers are.
        let filter = self.filter.clone().filter(|_| diff_ids.is_some());
        let mut new_diff_ids: Vec<Digest> = diff_ids
            .iter()
            .flatten()
            .map(|l| l.diff_id.clone())
            .collect();
        if filter.is_none() && !self.present(&config_digest).await? {
            self.put_bytes(&config_digest, config.clone()).await?;
        }
        let mut recompressed = Vec::new();
        let mut uploads = Vec::new();
        for (i, layer) in parsed.layers.iter().enumerate() {
            let digest = Digest::parse(&layer.digest)?;
            let check = diff_ids
                .as_ref()
                .and_then(|l| l.get(i))
                .filter(|_| is_tar_layer(&layer.media_type))
                .map(|l| LayerCheck {
                    media_type: layer.media_type.clone(),
                    diff_id: l.diff_id.clone(),
                    limits: self.source.layer_limits(),
                });
            let target = match &filter {
                Some(_) => Some(self.compress.unwrap_or(Compression::Gzip)),
                None => self
                    .compress
                    .filter(|c| Compression::from_media_type(&layer.media_type) != Some(*c)),
            };
            if let (Some(target), Some(check)) = (target, &check) {
                let media_type = layer_media_type(target, &manifest.media_type)?;
                let (spool, new_digest, size, diff_id) = self
                    .recompress(&digest, layer.size, check, target, filter.clone())
                    .await?;
                if let (Some(diff_id), Some(slot)) = (diff_id, new_diff_ids.get_mut(i)) {
                    *slot = diff_id;
                }
                if !self.present(&new_digest).await? {
                    self.put_file(&new_digest, size, spool).await?;
                }
                recompressed.push((i, media_type, new_digest, size));
                continue;
            }
            if self.present(&digest).await? {
                continue;
            }
            if let Dest::Registry { registry, .. } = &self.dest {
                // Uploads go on together (each checks its layer on a core
                // of its own), as many as the registry is given jobs.
                uploads.push(push_layer(
                    registry.clone(),
                    self.source.clone(),
                    digest,
                    layer.size,
                    check,
                ));
                continue;
            }
            self.blob(&digest, layer.size, check).await?;
        }
        let jobs = match &self.dest {
            Dest::Registry { registry, .. } => registry.jobs(),
            Dest::Layout(_) => 1,
        };
        futures_util::stream::iter(uploads)
            .buffer_unordered(jobs.max(1))
            .try_collect::<Vec<()>>()
            .await?;
        let manifest = if recompressed.is_empty() {
            manifest.clone()
        } else {
            with_layers(manifest, &recompressed)?
        };
        let manifest = match &filter {
            None => manifest,
            Some(filter) => {
                let config = filter.rewrite_config(&config, &config_digest, &new_diff_ids)?;
                let digest = Digest::sha256_of(&config);
                let size = config.len() as u64;
                if !self.present(&digest).await? {
                    self.put_bytes(&digest, config).await?;
                }
                with_config(&manifest, &digest, size)?
            }
        };
        match &self.dest {
            Dest::Registry { .. } if root => {}
            Dest::Registry { registry, .. } => {
                let reference = manifest.digest.to_string();
                registry
                    .push_manifest(&reference, &manifest.media_type, &manifest.bytes)
                    .await?;
            }
            Dest::Layout(_) => {
                self.layout()?
                    .put_bytes(&manifest.digest, &manifest.bytes)?;
            }
        }
        self.copied.images += 1;
        Ok(manifest)
    }

    /// A layer decompressed, checked (diff_id, our tar reader, limits),
    /// rewritten by `filter` if there is one, and compressed again as
    /// `target`, into an anonymous temporary file: its new digest and
    /// size, and its new diff_id if it was filtered.
    async fn recompress(
        &self,
        digest: &Digest,
        size: u64,
        check: &LayerCheck,
        target: Compression,
        filter: Option<Arc<Filter>>,
    ) -> Result<Recompressed> {
        let reader = self.source.open_blob("layer", digest, size).await?;
        let (digest, check) = (digest.clone(), check.clone());
        tokio::task::spawn_blocking(move || {
            recompress(reader, &digest, &check, target, filter.as_deref())
        })
        .await
        .map_err(|e| Error::Usage(format!("internal error: recompression failed: {e}")))?
    }

    /// A blob from a local file (a recompressed layer), verified already.
    async fn put_file(&mut self, digest: &Digest, size: u64, file: std::fs::File) -> Result<()> {
        match &mut self.dest {
            Dest::Layout(_) => {
                let dest = self.layout()?;
                let path = dest.path().to_path_buf();
                let mut file = file;
                dest.put_blob(digest, &mut file).map_err(|e| match e {
                    CopyError::Read(e) | CopyError::Write(e) => Error::io(&path, e),
                    CopyError::Tar(e) => Error::io(&path, io::Error::other(e)),
                })
            }
            Dest::Registry { registry, .. } => {
                let file = Arc::new(file);
                registry
                    .push_blob(digest, size, move || {
                        let mut again = file.try_clone().map_err(|e| Error::io("(spool)", e))?;
                        io::Seek::rewind(&mut again).map_err(|e| Error::io("(spool)", e))?;
                        Ok(Box::new(again))
                    })
                    .await
            }
        }
    }

    /// Whether the destination has the blob (or got it by a mount);
    /// counted either way.
    async fn present(&mut self, digest: &Digest) -> Result<bool> {
        let present = match &mut self.dest {
            Dest::Layout(_) => self.layout()?.has_blob(digest),
            Dest::Registry {
                registry,
                mount_from,
                ..
            } => {
                registry.has_blob(digest).await?
                    || match mount_from {
                        Some(from) => registry.mount_blob(digest, from).await?,
                        None => false,
                    }
            }
        };
        if present {
            self.copied.present += 1;
        } else {
            self.copied.written += 1;
        }
        Ok(present)
    }

    /// A small blob, verified already.
    async fn put_bytes(&mut self, digest: &Digest, bytes: Vec<u8>) -> Result<()> {
        match &mut self.dest {
            Dest::Layout(_) => self.layout()?.put_bytes(digest, &bytes),
            Dest::Registry { registry, .. } => {
                let bytes = Arc::new(bytes);
                let size = bytes.len() as u64;
                registry
                    .push_blob(digest, size, move || {
                        Ok(Box::new(io::Cursor::new(bytes.clone().to_vec())))
                    })
                    .await
            }
        }
    }

    async fn blob(&mut self, digest: &Digest, size: u64, check: Option<LayerCheck>) -> Result<()> {
        let mut reader = self.source.open_blob("layer", digest, size).await?;
        // The writer moves to a blocking thread and back.
        let mut dest = match &mut self.dest {
            Dest::Layout(writer) => writer.take().ok_or_else(lost)?,
            Dest::Registry { .. } => return Err(lost()),
        };
        let digest = digest.clone();
        let (dest, result) = tokio::task::spawn_blocking(move || {
            let result = write_blob(&mut dest, &mut reader, &digest, check);
            (dest, result)
        })
        .await
        .map_err(|e| Error::Usage(format!("internal error: blob copy failed: {e}")))?;
        self.dest = Dest::Layout(Some(dest));
        result
    }

    /// Make the copy appear: the layout's index, the registry's tag.
    async fn commit(&mut self, platform: Option<serde_json::Value>) -> Result<()> {
        let manifest = self.copied.manifest.clone();
        match &mut self.dest {
            Dest::Layout(writer) => {
                let writer = writer.take().ok_or_else(lost)?;
                tokio::task::spawn_blocking(move || writer.commit(&manifest, platform))
                    .await
                    .map_err(|e| Error::Usage(format!("internal error: commit failed: {e}")))?
            }
            Dest::Registry {
                registry,
                reference,
                ..
            } => {
                registry
                    .push_manifest(reference, &manifest.media_type, &manifest.bytes)
                    .await?;
                Ok(())
            }
        }
    }
}

/// Upload one layer blob to `registry`, read from `source`. Each attempt
/// of the upload reads the blob afresh, checked again; the check's own
/// error is kept to be reported.
async fn push_layer(
    registry: crate::registry::Registry,
    source: Arc<Source>,
    digest: Digest,
    size: u64,
    check: Option<LayerCheck>,
) -> Result<()> {
    let failure = Arc::new(Mutex::new(None));
    let handle = tokio::runtime::Handle::current();
    let (d, slot) = (digest.clone(), failure.clone());
    let open = move || -> Result<Box<dyn Read + Send>> {
        let reader = handle.block_on(source.open_blob("layer", &d, size))?;
        Ok(match check.clone() {
            Some(check) => Box::new(Withheld::start(reader, &d, check, slot.clone())?),
            None => Box::new(reader),
        })
    };
    let pushed = registry.push_blob(&digest, size, open).await;
    let check_failure = failure.lock().ok().and_then(|mut f| f.take());
    match (pushed, check_failure) {
        (Err(_), Some(e)) => Err(e),
        (pushed, _) => pushed,
    }
}

/// A layer blob's reader for an upload, whose last chunk is given only
/// once the layer check on a second thread has passed: the registry never
/// receives the whole of a layer that fails it. The check's error goes to
/// `failure`, for the copy to report.
struct Withheld {
    inner: registry::BlobReader,
    to: Option<std::sync::mpsc::SyncSender<Vec<u8>>>,
    checker: Option<std::thread::JoinHandle<Result<()>>>,
    failure: Arc<Mutex<Option<Error>>>,
    current: Vec<u8>,
    pos: usize,
    next: Option<Vec<u8>>,
    ended: bool,
}

impl Withheld {
    fn start(
        inner: registry::BlobReader,
        digest: &Digest,
        check: LayerCheck,
        failure: Arc<Mutex<Option<Error>>>,
    ) -> Result<Withheld> {
        let (to, rx) = sync_channel::<Vec<u8>>(DEPTH);
        let layer_digest = digest.to_string();
        let checker = std::thread::Builder::new()
            .name("layer-check".into())
            .spawn(move || check_layer(rx, &layer_digest, check))
            .map_err(|e| Error::Usage(format!("cannot start a thread: {e}")))?;
        Ok(Withheld {
            inner,
            to: Some(to),
            checker: Some(checker),
            failure,
            current: Vec::new(),
            pos: 0,
            next: None,
            ended: false,
        })
    }

    /// The next chunk of the blob (empty at its verified end), shown to
    /// the check.
    fn fill(&mut self) -> io::Result<Vec<u8>> {
        let mut chunk = vec![0u8; 256 * 1024];
        let n = loop {
            match self.inner.read(&mut chunk) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                other => break other?,
            }
        };
        chunk.truncate(n);
        if n > 0
            && let Some(to) = &self.to
            && to.send(chunk.clone()).is_err()
        {
            self.verdict()?;
        }
        Ok(chunk)
    }

    /// Wait for the check's verdict (once).
    fn verdict(&mut self) -> io::Result<()> {
        self.to = None;
        let Some(checker) = self.checker.take() else {
            return Ok(());
        };
        let result = checker
            .join()
            .unwrap_or_else(|_| Err(Error::Usage("internal error: layer check panicked".into())));
        match result {
            Ok(()) => Ok(()),
            Err(e) => {
                let message = e.to_string();
                if let Ok(mut slot) = self.failure.lock() {
                    *slot = Some(e);
                }
                Err(io::Error::other(message))
            }
        }
    }
}

impl Read for Withheld {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.pos < self.current.len() {
                let n = buf.len().min(self.current.len() - self.pos);
                buf[..n].copy_from_slice(&self.current[self.pos..self.pos + n]);
                self.pos += n;
                return Ok(n);
            }
            if self.ended {
                return Ok(0);
            }
            let chunk = match self.next.take() {
                Some(chunk) => chunk,
                None => self.fill()?,
            };
            if chunk.is_empty() {
                self.ended = true;
                self.verdict()?;
                return Ok(0);
            }
            let following = self.fill()?;
            if following.is_empty() {
                // `chunk` is the last: it goes only with the check passed.
                self.verdict()?;
            }
            self.next = Some(following);
            self.current = chunk;
            self.pos = 0;
        }
    }
}

/// The copy's side of a layer check that gave up (its own error is the
/// one to report).
#[derive(Debug, thiserror::Error)]
#[error("the layer check stopped")]
struct CheckStopped;

/// What a layer is checked against besides its digest.
#[derive(Clone)]
struct LayerCheck {
    media_type: String,
    diff_id: Digest,
    limits: LayerLimits,
}

fn write_blob(
    dest: &mut LayoutWriter,
    reader: &mut registry::BlobReader,
    digest: &Digest,
    check: Option<LayerCheck>,
) -> Result<()> {
    let output = dest.path().to_path_buf();
    checked(reader, digest, check, &output, |r| dest.put_blob(digest, r))
}

/// Stream a blob (verified as it is read) through `write`; with `check`,
/// it is also checked as a layer on a second thread. Errors are reported
/// in the order that explains them; `output` names where `write` writes.
fn checked<T>(
    reader: &mut registry::BlobReader,
    digest: &Digest,
    check: Option<LayerCheck>,
    output: &std::path::Path,
    write: impl FnOnce(&mut dyn Read) -> std::result::Result<T, CopyError>,
) -> Result<T> {
    let error = |e: CopyError, reader: &registry::BlobReader| match e {
        CopyError::Read(e) => reader.classify(e),
        CopyError::Write(e) => Error::io(output, e),
        CopyError::Tar(e) => crate::unpack::UnpackError::Tar(e).into_error(&digest.to_string()),
    };
    let Some(check) = check else {
        return write(reader).map_err(|e| error(e, reader));
    };
    let (tx, rx) = sync_channel::<Vec<u8>>(DEPTH);
    let layer_digest = digest.to_string();
    let checker = std::thread::Builder::new()
        .name("layer-check".into())
        .spawn(move || check_layer(rx, &layer_digest, check))
        .map_err(|e| Error::Usage(format!("cannot start a thread: {e}")))?;
    let copied = write(&mut Shown {
        inner: &mut *reader,
        to: tx,
    });
    let checked = checker
        .join()
        .unwrap_or_else(|_| Err(Error::Usage("internal error: layer check panicked".into())));
    match (copied, checked) {
        // The check stopped first: its error says why.
        (Err(CopyError::Read(e)), Err(check))
            if crate::error::find_cause::<CheckStopped>(&e).is_some() =>
        {
            Err(check)
        }
        // Otherwise the copy stopped first (a failed download or digest,
        // a full disk), and the check only saw the stream end.
        (Err(e), _) => Err(error(e, reader)),
        (Ok(value), checked) => checked.map(|()| value),
    }
}

/// A reader that shows every chunk it reads to the layer check.
struct Shown<'a, R> {
    inner: &'a mut R,
    to: std::sync::mpsc::SyncSender<Vec<u8>>,
}

impl<R: Read> Read for Shown<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n > 0 {
            self.to
                .send(buf[..n].to_vec())
                .map_err(|_| io::Error::other(CheckStopped))?;
        }
        Ok(n)
    }
}

/// Decompress the layer's bytes as they arrive, walk its tar with our
/// reader (limits included), and check its diff_id.
fn check_layer(rx: Receiver<Vec<u8>>, digest: &str, check: LayerCheck) -> Result<()> {
    let chunks = Chunks {
        rx,
        chunk: Vec::new(),
        pos: 0,
    };
    let decoder =
        LayerDecoder::new(chunks, &check.media_type, digest, check.limits).map_err(|e| {
            Error::Integrity(crate::digest::IntegrityError::Decompress {
                digest: digest.to_string(),
                compression: "unknown",
                reason: e.to_string(),
            })
        })?;
    let mut hashed = HashingReader::new(decoder, check.diff_id.hasher());
    let walked = crate::tar::Reader::new(&mut hashed, check.limits).skim();
    if let Err(e) = walked {
        return Err(match e {
            crate::tar::TarError::Io(io) => hashed.inner.classify(io),
            other => crate::unpack::UnpackError::Tar(other).into_error(digest),
        });
    }
    io::copy(&mut hashed, &mut io::sink()).map_err(|e| hashed.inner.classify(e))?;
    hashed.hasher.check("layer diff_id", &check.diff_id)?;
    Ok(())
}

/// The chunks sent by the copying thread, as a stream.
struct Chunks {
    rx: Receiver<Vec<u8>>,
    chunk: Vec<u8>,
    pos: usize,
}

impl Read for Chunks {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                // The copying thread is done: the end of the blob.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// An encoder whose `flush` ends its stream (and flushes what is below),
/// so that every target is finished by one call.
enum Finishing<W: Write> {
    Gzip(Option<flate2::write::GzEncoder<W>>),
    Zstd(Option<zstd::Encoder<'static, W>>),
}

impl<W: Write> Write for Finishing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let gone = || io::Error::other("the encoder was finished");
        match self {
            Finishing::Gzip(e) => e.as_mut().ok_or_else(gone)?.write(buf),
            Finishing::Zstd(e) => e.as_mut().ok_or_else(gone)?.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let mut inner = match self {
            Finishing::Gzip(e) => match e.take() {
                Some(e) => e.finish()?,
                None => return Ok(()),
            },
            Finishing::Zstd(e) => match e.take() {
                Some(e) => e.finish()?,
                None => return Ok(()),
            },
        };
        inner.flush()
    }
}

/// A writer that a failed blocking task did not give back.
fn lost() -> Error {
    Error::Usage("internal error: the destination was lost".into())
}

fn is_index(manifest: &RawManifest) -> bool {
    manifest.media_type == registry::OCI_INDEX
        || manifest.media_type == registry::DOCKER_MANIFEST_LIST
}

/// Config media types of container images (others are artifacts').
fn is_image_config(media_type: &str) -> bool {
    media_type == "application/vnd.oci.image.config.v1+json"
        || media_type == "application/vnd.docker.container.image.v1+json"
        // Older OCI manifests may leave it out.
        || media_type.is_empty()
}

/// Layer media types that hold a tar (compressed or not), Docker's and OCI's.
fn is_tar_layer(media_type: &str) -> bool {
    media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs.")
}

fn parse<T: for<'de> Deserialize<'de>>(what: &str, manifest: &RawManifest) -> Result<T> {
    serde_json::from_slice(&manifest.bytes).map_err(|e| Error::Malformed {
        what: what.into(),
        digest: manifest.digest.to_string(),
        reason: e.to_string(),
    })
}

/// One file of the archive streamed into the engine.
enum Entry {
    /// A layer blob, as stored: the engine decompresses it itself.
    Layer {
        name: String,
        reader: registry::BlobReader,
        digest: Digest,
        size: u64,
        check: LayerCheck,
    },
    /// A zstd layer, which engines before Docker 23 cannot decompress:
    /// decompressed here first, into a temporary file (its size must be
    /// known before its tar header is written).
    Inflate {
        name: String,
        reader: registry::BlobReader,
        digest: Digest,
        check: LayerCheck,
    },
}

/// Load `image` into the local engine, tagged `tags`, streaming a `docker
/// save` archive of it with nothing written locally (but zstd layers; see
/// [`crate::engine`]). Every blob and layer is checked on the way, as for a
/// layout; a failure drops the connection before the archive is complete,
/// and the engine loads nothing. Returns what the engine said it loaded.
pub(crate) async fn to_engine(
    source: &Source,
    image: &image::ResolvedImage,
    tags: Vec<String>,
) -> Result<String> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Entry>(1);
    let layout = crate::export::docker_save::Layout::of(image);
    let config = image.config_bytes.clone();
    let manifest = layout.manifest_json(&tags);
    let config_name = layout.config.clone();
    let writer = tokio::task::spawn_blocking(move || {
        crate::engine::load(|out| {
            let engine = std::path::Path::new("docker-daemon:");
            let failed = |e| match e {
                CopyError::Read(e) | CopyError::Write(e) => Error::io(engine, e),
                CopyError::Tar(e) => Error::io(engine, io::Error::other(e)),
            };
            append(out, &config_name, config.len() as u64, &mut &config[..]).map_err(failed)?;
            while let Some(entry) = rx.blocking_recv() {
                match entry {
                    Entry::Layer {
                        name,
                        mut reader,
                        digest,
                        size,
                        check,
                    } => checked(&mut reader, &digest, Some(check), engine, |r| {
                        append(out, &name, size, r)
                    })?,
                    Entry::Inflate {
                        name,
                        mut reader,
                        digest,
                        check,
                    } => {
                        let mut spool = crate::engine::anonymous_file(&std::env::temp_dir())?;
                        let size = checked(&mut reader, &digest, Some(check), engine, |r| {
                            // The check on the other thread holds this to
                            // the limits: it stops the stream when they
                            // are passed.
                            let mut decoder =
                                zstd::stream::read::Decoder::new(r).map_err(CopyError::Read)?;
                            crate::export::docker_save::copy(&mut decoder, &mut spool)
                        })?;
                        io::Seek::rewind(&mut spool).map_err(|e| Error::io(engine, e))?;
                        append(out, &name, size, &mut spool).map_err(failed)?;
                    }
                }
            }
            append(
                out,
                "manifest.json",
                manifest.len() as u64,
                &mut &manifest[..],
            )
            .and_then(|()| out.write_all(&[0u8; 1024]).map_err(CopyError::Write))
            .map_err(failed)
        })
    });
    let mut sent = std::collections::HashSet::new();
    for (layer, name) in image.layers.iter().zip(&layout.layers) {
        if !sent.insert(name.clone()) {
            // The same layer twice: one file, named twice in manifest.json.
            continue;
        }
        let reader = source.open_blob("layer", &layer.digest, layer.size).await?;
        let check = LayerCheck {
            media_type: layer.media_type.clone(),
            diff_id: layer.diff_id.clone(),
            limits: source.layer_limits(),
        };
        let zstd = matches!(
            crate::layer::Compression::from_media_type(&layer.media_type),
            Some(crate::layer::Compression::Zstd)
        );
        let entry = if zstd {
            Entry::Inflate {
                name: name.clone(),
                reader,
                digest: layer.digest.clone(),
                check,
            }
        } else {
            Entry::Layer {
                name: name.clone(),
                reader,
                digest: layer.digest.clone(),
                size: layer.size,
                check,
            }
        };
        if tx.send(entry).await.is_err() {
            // The writer stopped: its error says why.
            break;
        }
    }
    drop(tx);
    writer
        .await
        .map_err(|e| Error::Usage(format!("internal error: engine load failed: {e}")))?
}

/// One regular file of `size` bytes into a tar stream (no seeking).
fn append(
    out: &mut dyn io::Write,
    name: &str,
    size: u64,
    data: &mut dyn Read,
) -> std::result::Result<(), CopyError> {
    let mut header = tar::Header::new_gnu();
    header.set_path(name).map_err(CopyError::Write)?;
    header.set_size(size);
    header.set_mode(0o644);
    header.set_entry_type(tar::EntryType::Regular);
    header.set_cksum();
    out.write_all(header.as_bytes()).map_err(CopyError::Write)?;
    let copied = crate::export::docker_save::copy(data, &mut *out)?;
    if copied != size {
        return Err(CopyError::Read(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{copied} bytes where {size} were announced"),
        )));
    }
    let pad = (512 - size % 512) % 512;
    out.write_all(&[0u8; 512][..pad as usize])
        .map_err(CopyError::Write)
}

/// A recompressed layer in a temporary file: its digest and size, and its
/// new diff_id if it was filtered.
type Recompressed = (std::fs::File, Digest, u64, Option<Digest>);

/// Decompress, check, filter and compress again (see [`Copy::recompress`]).
fn recompress(
    reader: registry::BlobReader,
    digest: &Digest,
    check: &LayerCheck,
    target: Compression,
    filter: Option<&Filter>,
) -> Result<Recompressed> {
    let shown = digest.to_string();
    let decoder = LayerDecoder::new(reader, &check.media_type, &shown, check.limits)
        .map_err(|e| crate::layer::classify_read_error(e, &shown, Compression::None))?;
    let mut hashed = HashingReader::new(decoder, check.diff_id.hasher());
    let tmp = std::env::temp_dir();
    let mut spool = crate::engine::anonymous_file(&tmp)?;
    let written = {
        let out = io::BufWriter::with_capacity(1 << 20, &mut spool);
        let limits = check.limits;
        // The layer as it is (checked by our reader), or rewritten, in
        // chunks of one size.
        let mut pass = |out: &mut dyn Write| {
            let mut out = Chunked {
                inner: out,
                held: Vec::with_capacity(CHUNK),
            };
            let id = match filter {
                Some(filter) => filter
                    .rewrite_layer(&mut hashed, &mut out, limits)
                    .map(Some),
                None => crate::export::docker_save::copy_layer(&mut hashed, &mut out, limits)
                    .map(|_| None),
            }?;
            out.flush().map_err(CopyError::Write)?;
            Ok(id)
        };
        // Each encoder is finished its own way; the output is flushed after.
        let mut out: Box<dyn Write> = match target {
            Compression::Gzip => Box::new(Finishing::Gzip(Some(flate2::write::GzEncoder::new(
                out,
                flate2::Compression::new(6),
            )))),
            Compression::Zstd => Box::new(Finishing::Zstd(Some(
                zstd::Encoder::new(out, 3).map_err(|e| Error::io(&tmp, e))?,
            ))),
            Compression::None => Box::new(out),
        };
        pass(&mut *out).and_then(|id| out.flush().map(|()| id).map_err(CopyError::Write))
    };
    let HashingReader { inner, hasher } = hashed;
    let new_diff_id = match written {
        Ok(id) => id,
        Err(CopyError::Read(e)) => return Err(inner.classify(e)),
        Err(CopyError::Write(e)) => return Err(Error::io(&tmp, e)),
        Err(CopyError::Tar(e)) => return Err(crate::unpack::UnpackError::Tar(e).into_error(&shown)),
    };
    inner.finish()?;
    hasher.check("layer diff_id", &check.diff_id)?;
    io::Seek::rewind(&mut spool).map_err(|e| Error::io(&tmp, e))?;
    let mut sha = Hasher::sha256();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = spool.read(&mut buf).map_err(|e| Error::io(&tmp, e))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        size += n as u64;
    }
    io::Seek::rewind(&mut spool).map_err(|e| Error::io(&tmp, e))?;
    Ok((spool, sha.finish(), size, new_diff_id))
}

/// The size of the chunks an encoder is given.
const CHUNK: usize = 256 * 1024;

/// Passes what is written on in chunks of [`CHUNK`] bytes, whatever the
/// sizes of the writes: a compressor's output may depend on how its input
/// was split, and that follows the network's packets; the same layer must
/// compress to the same bytes. `flush` passes on what is held, but does not
/// flush the encoder (which its owner finishes).
struct Chunked<W> {
    inner: W,
    held: Vec<u8>,
}

impl<W: Write> Write for Chunked<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = buf.len().min(CHUNK - self.held.len());
        self.held.extend_from_slice(&buf[..n]);
        if self.held.len() == CHUNK {
            self.inner.write_all(&self.held)?;
            self.held.clear();
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.write_all(&self.held)?;
        self.held.clear();
        Ok(())
    }
}

/// The layer media type for `compression` in a manifest of `manifest_type`.
fn layer_media_type(compression: Compression, manifest_type: &str) -> Result<String> {
    let docker = manifest_type == registry::DOCKER_MANIFEST;
    Ok(match (compression, docker) {
        (Compression::Gzip, false) => "application/vnd.oci.image.layer.v1.tar+gzip",
        (Compression::Zstd, false) => "application/vnd.oci.image.layer.v1.tar+zstd",
        (Compression::None, false) => "application/vnd.oci.image.layer.v1.tar",
        (Compression::Gzip, true) => "application/vnd.docker.image.rootfs.diff.tar.gzip",
        (Compression::None, true) => "application/vnd.docker.image.rootfs.diff.tar",
        (Compression::Zstd, true) => {
            return Err(Error::Usage(
                "--dest-compress zstd: Docker's manifests have no zstd layers; only images with OCI manifests can be recompressed to zstd".into(),
            ));
        }
    }
    .to_string())
}

/// `manifest` with layers `(index, media type, digest, size)` replaced.
fn with_layers(
    manifest: &RawManifest,
    layers: &[(usize, String, Digest, u64)],
) -> Result<RawManifest> {
    let mut value: serde_json::Value = parse("manifest", manifest)?;
    for (i, media_type, digest, size) in layers {
        let layer = &mut value["layers"][*i];
        layer["mediaType"] = media_type.clone().into();
        layer["digest"] = digest.to_string().into();
        layer["size"] = (*size).into();
    }
    raw(manifest, &value)
}

/// `manifest` with its config descriptor replaced.
fn with_config(manifest: &RawManifest, digest: &Digest, size: u64) -> Result<RawManifest> {
    let mut value: serde_json::Value = parse("manifest", manifest)?;
    if let Some(config) = value.get_mut("config").and_then(|c| c.as_object_mut()) {
        config.insert("digest".into(), digest.to_string().into());
        config.insert("size".into(), size.into());
    }
    raw(manifest, &value)
}

/// An index with the entries of manifests that were rewritten updated.
fn rewrite(
    index: &RawManifest,
    key: &str,
    rewritten: &[(Digest, RawManifest)],
) -> Result<RawManifest> {
    let mut value: serde_json::Value = parse("index", index)?;
    if let Some(entries) = value[key].as_array_mut() {
        for entry in entries {
            let Some((_, new)) = rewritten
                .iter()
                .find(|(old, _)| entry["digest"].as_str() == Some(&old.to_string()))
            else {
                continue;
            };
            entry["digest"] = new.digest.to_string().into();
            entry["size"] = new.bytes.len().into();
        }
    }
    raw(index, &value)
}

/// New manifest bytes for `value`, of `was`'s media type.
fn raw(was: &RawManifest, value: &serde_json::Value) -> Result<RawManifest> {
    let bytes = serde_json::to_vec(value).map_err(|e| Error::Malformed {
        what: "manifest".into(),
        digest: was.digest.to_string(),
        reason: e.to_string(),
    })?;
    Ok(RawManifest {
        digest: Digest::sha256_of(&bytes),
        bytes: bytes.into(),
        media_type: was.media_type.clone(),
    })
}
