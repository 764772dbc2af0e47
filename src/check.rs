//! Validate an image end to end and report everything found, not only the
//! first problem: the structure of index, manifest and config, then (unless
//! `fast`) every layer streamed through the same decompressors and strict
//! tar reader a bundle uses, judged by the rules of [`crate::unpack`].
//! Nothing is written to disk; memory holds the paths of the layers seen.
//!
//! A layer that fails its digest or cannot be decompressed is reported and
//! the walk goes on with the next one. Failures that say nothing about the
//! image (network, local I/O, a name not found) still fail the check.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use oci_spec::image::{ImageIndex, ImageManifest};

use crate::cancel::Cancel;
use crate::digest::HashingReader;
use crate::error::ErrorKind;
use crate::escape;
use crate::fsroot::clean_path;
use crate::image::{LayerRef, ResolvedImage};
use crate::layer::{Compression, IntegrityError, LayerDecoder, LayerLimits};
use crate::platform::Platform;
use crate::registry::{self, BlobReader};
use crate::search::whiteout_of;
use crate::source::Source;
use crate::tar::{self, Header, Kind, TarError};
use crate::unpack::{AUFS_META_PREFIX, OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::{Error, Result};

/// What a check found.
#[derive(Debug, Clone)]
pub struct Report {
    /// The name the image was asked for by.
    pub reference: String,
    /// The manifest's digest, if it could be resolved.
    pub manifest_digest: Option<String>,
    /// The config's digest (the image ID), if it could be resolved.
    pub image_id: Option<String>,
    /// Every problem, in the order found: structure first, then layers
    /// lowest first.
    pub problems: Vec<Problem>,
    /// Layers streamed and parsed (0 with `fast`).
    pub layers_checked: usize,
}

impl Report {
    /// Whether nothing but notes was found (see [`ProblemKind::is_note`]).
    pub fn is_sound(&self) -> bool {
        self.errors() == 0
    }

    /// How many problems are not notes.
    pub fn errors(&self) -> usize {
        self.problems.iter().filter(|p| !p.kind.is_note()).count()
    }

    /// The report of an image that could not be resolved because its
    /// index, manifest or config is at fault (`err` is an integrity error).
    fn unresolved(reference: String, err: &Error) -> Report {
        Report {
            reference,
            manifest_digest: None,
            image_id: None,
            problems: vec![integrity_problem(err)],
            layers_checked: 0,
        }
    }
}

/// The problem an integrity error reports.
fn integrity_problem(err: &Error) -> Problem {
    let kind = match err {
        Error::Integrity(IntegrityError::DigestMismatch { .. }) => ProblemKind::DigestMismatch,
        Error::Integrity(IntegrityError::SizeMismatch { .. }) => ProblemKind::SizeMismatch,
        Error::Integrity(IntegrityError::TooLarge { .. }) => ProblemKind::LimitExceeded,
        _ => ProblemKind::Malformed,
    };
    Problem::new(kind, err.to_string())
}

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What kind of problem.
    pub kind: ProblemKind,
    /// The layer's index (lowest first, from 0), when it is about a layer.
    pub layer: Option<usize>,
    /// The layer's blob digest, when it is about a layer.
    pub digest: Option<String>,
    /// The entry's path as the layer writes it, when it is about an entry.
    pub path: Option<PathBuf>,
    /// What is wrong and, for an entry, what a bundle does with it. Names
    /// from the image are escaped.
    pub message: String,
}

impl Problem {
    fn new(kind: ProblemKind, message: impl Into<String>) -> Problem {
        Problem {
            kind,
            layer: None,
            digest: None,
            path: None,
            message: message.into(),
        }
    }
}

/// The kinds of problem, each with a stable code ([`ProblemKind::code`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProblemKind {
    /// A blob's content does not match its digest.
    DigestMismatch,
    /// A blob's size differs from its descriptor's, or a descriptor's size
    /// is not positive.
    SizeMismatch,
    /// A layer decompresses to a tar whose digest is not the config's diff_id.
    DiffIdMismatch,
    /// Unparseable JSON, an unusable descriptor, a layer that does not
    /// decompress, a malformed tar.
    Malformed,
    /// A layer over `--max-layer-size` or `--max-entries`.
    LimitExceeded,
    /// A media type that is not an image manifest, config or layer type.
    UnknownMediaType,
    /// The config's platform is not the one its index entry declares.
    PlatformMismatch,
    /// The history's non-empty entries do not pair up with the layers.
    HistoryMismatch,
    /// An entry a bundle refuses (the layer, and the bundle, fail).
    RefusedEntry,
    /// A hostile entry a bundle applies confined to its root.
    ConfinedEntry,
    /// A whiteout (or opaque marker) with nothing below it to remove.
    WhiteoutRemovesNothing,
    /// A path declared twice in one layer, not both times as a directory.
    DuplicatePath,
}

impl ProblemKind {
    /// Whether this is a note: something a bundle applies safely and
    /// exactly (confined, removing nothing, replaced in order), that
    /// points to an odd or hostile producer but leaves the image sound.
    pub fn is_note(self) -> bool {
        matches!(
            self,
            ProblemKind::ConfinedEntry
                | ProblemKind::WhiteoutRemovesNothing
                | ProblemKind::DuplicatePath
        )
    }

    /// `error`, or `note` for a note.
    pub fn severity(self) -> &'static str {
        if self.is_note() { "note" } else { "error" }
    }

    /// The kebab-case code used in reports (`digest-mismatch`...).
    pub fn code(self) -> &'static str {
        match self {
            ProblemKind::DigestMismatch => "digest-mismatch",
            ProblemKind::SizeMismatch => "size-mismatch",
            ProblemKind::DiffIdMismatch => "diff-id-mismatch",
            ProblemKind::Malformed => "malformed",
            ProblemKind::LimitExceeded => "limit-exceeded",
            ProblemKind::UnknownMediaType => "unknown-media-type",
            ProblemKind::PlatformMismatch => "platform-mismatch",
            ProblemKind::HistoryMismatch => "history-mismatch",
            ProblemKind::RefusedEntry => "refused-entry",
            ProblemKind::ConfinedEntry => "confined-entry",
            ProblemKind::WhiteoutRemovesNothing => "whiteout-removes-nothing",
            ProblemKind::DuplicatePath => "duplicate-path",
        }
    }
}

/// Check `image` from `source`; or the report of `resolved`'s failure,
/// when resolving failed because of the image itself.
pub async fn check(
    name: String,
    source: &Source,
    resolved: Result<ResolvedImage>,
    fast: bool,
) -> Result<Report> {
    let image = match resolved {
        Ok(image) => image,
        Err(e) if e.kind() == ErrorKind::Integrity => return Ok(Report::unresolved(name, &e)),
        Err(e) => return Err(e),
    };
    let mut problems = structure(&image);
    let mut layers_checked = 0;
    if !fast {
        let mut lower = Tree::default();
        // Later layers download into the cache while earlier ones are
        // checked, as for a pull.
        let mut prefetch = crate::pull::Prefetch::start(source, &image);
        for (n, layer) in image.layers.iter().enumerate() {
            if source.cancel().is_cancelled() {
                return Err(Error::Cancelled);
            }
            tracing::info!(
                "checking layer {}/{} {}",
                n + 1,
                image.layers.len(),
                layer.digest
            );
            let found = match prefetch.open(n, source, layer).await {
                Ok(blob) => {
                    let (layer, limits) = (layer.clone(), source.layer_limits());
                    let cancel = source.cancel().clone();
                    let tree = std::mem::take(&mut lower);
                    let (found, tree) = tokio::task::spawn_blocking(move || {
                        let mut tree = tree;
                        let found = check_layer(blob, &layer, n, limits, &mut tree, cancel);
                        (found, tree)
                    })
                    .await
                    .map_err(|e| {
                        Error::Usage(format!("internal error: layer check failed: {e}"))
                    })?;
                    lower = tree;
                    found?
                }
                // A blob the source's index says has another size or digest.
                Err(e) if e.kind() == ErrorKind::Integrity => vec![integrity_problem(&e)],
                Err(e) => return Err(e),
            };
            problems.extend(found.into_iter().map(|mut p| {
                p.layer = Some(n);
                p.digest = Some(layer.digest.to_string());
                p
            }));
            layers_checked += 1;
        }
    }
    Ok(Report {
        reference: image.name.clone(),
        manifest_digest: Some(image.manifest.digest.to_string()),
        image_id: Some(image.config_digest.to_string()),
        problems,
        layers_checked,
    })
}

/// What can be checked without a layer: descriptors, media types, the
/// platform against the index entry, the history against the layers.
/// (Parsing, the config's digest and one diff_id per layer were checked by
/// resolving: a failure there is [`Report::unresolved`].)
fn structure(image: &ResolvedImage) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut layer_problem = |n: usize, kind, message: String| {
        let mut p = Problem::new(kind, message);
        p.layer = Some(n);
        p.digest = image.layers.get(n).map(|l| l.digest.to_string());
        problems.push(p);
    };
    for (n, layer) in image.layers.iter().enumerate() {
        if layer.size == 0 {
            layer_problem(
                n,
                ProblemKind::SizeMismatch,
                "the manifest gives the layer a size of 0".into(),
            );
        }
        if !known_layer_type(&layer.media_type) {
            layer_problem(
                n,
                ProblemKind::UnknownMediaType,
                format!(
                    "unknown layer media type \"{}\"",
                    escape::bytes(layer.media_type.as_bytes())
                ),
            );
        }
    }
    match serde_json::from_slice::<ImageManifest>(&image.manifest.bytes) {
        Ok(manifest) => {
            let config = manifest.config();
            let media_type = config.media_type().to_string();
            if !matches!(
                media_type.as_str(),
                "application/vnd.oci.image.config.v1+json"
                    | "application/vnd.docker.container.image.v1+json"
            ) {
                problems.push(Problem::new(
                    ProblemKind::UnknownMediaType,
                    format!(
                        "config {}: unknown media type \"{}\"",
                        image.config_digest,
                        escape::bytes(media_type.as_bytes())
                    ),
                ));
            }
            if config.size() != image.config_bytes.len() as u64 {
                problems.push(Problem::new(
                    ProblemKind::SizeMismatch,
                    format!(
                        "config {}: the manifest says {} bytes, the blob has {}",
                        image.config_digest,
                        config.size(),
                        image.config_bytes.len()
                    ),
                ));
            }
        }
        Err(e) => problems.push(Problem::new(
            ProblemKind::Malformed,
            format!("manifest {}: {e}", image.manifest.digest),
        )),
    }
    if let Some(index) = &image.index {
        problems.extend(index_entry(image, index));
    }
    if let Some(mismatch) = image.history_by_layer().mismatch() {
        problems.push(Problem::new(ProblemKind::HistoryMismatch, mismatch));
    }
    problems
}

/// Layer media types a bundle knows how to read.
fn known_layer_type(media_type: &str) -> bool {
    (media_type.starts_with("application/vnd.oci.image.layer.")
        || media_type.starts_with("application/vnd.docker.image.rootfs."))
        && Compression::from_media_type(media_type).is_some()
}

/// The index entry the manifest was resolved through: its size, media type
/// and platform against the manifest and config.
fn index_entry(image: &ResolvedImage, index: &registry::RawManifest) -> Vec<Problem> {
    let parsed: ImageIndex = match serde_json::from_slice(&index.bytes) {
        Ok(parsed) => parsed,
        Err(e) => {
            return vec![Problem::new(
                ProblemKind::Malformed,
                format!("index {}: {e}", index.digest),
            )];
        }
    };
    let wanted = image.manifest.digest.to_string();
    let Some(entry) = parsed
        .manifests()
        .iter()
        .find(|m| m.digest().to_string() == wanted)
    else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    let what = format!("index {} entry {wanted}", index.digest);
    if entry.size() != image.manifest.bytes.len() as u64 {
        problems.push(Problem::new(
            ProblemKind::SizeMismatch,
            format!(
                "{what}: says {} bytes, the manifest has {}",
                entry.size(),
                image.manifest.bytes.len()
            ),
        ));
    }
    if entry.media_type().to_string() != image.manifest.media_type {
        problems.push(Problem::new(
            ProblemKind::Malformed,
            format!(
                "{what}: says media type \"{}\", the manifest is \"{}\"",
                escape::bytes(entry.media_type().to_string().as_bytes()),
                escape::bytes(image.manifest.media_type.as_bytes())
            ),
        ));
    }
    if let Some(p) = entry.platform() {
        let declared = Platform::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref(),
        );
        let actual = image.platform();
        if declared != actual {
            problems.push(Problem::new(
                ProblemKind::PlatformMismatch,
                format!(
                    "{what}: declares platform {}, the config says {}",
                    escape::bytes(declared.to_string().as_bytes()),
                    escape::bytes(actual.to_string().as_bytes())
                ),
            ));
        }
    }
    problems
}

/// The paths the lower layers hold, with the directories above them.
#[derive(Default)]
struct Tree {
    /// Every entry's path and its ancestors.
    paths: HashSet<PathBuf>,
    /// Every directory that has something below it (the root included).
    parents: HashSet<PathBuf>,
}

impl Tree {
    fn add(&mut self, path: &Path) {
        for ancestor in path.ancestors().skip(1) {
            if !self.parents.insert(ancestor.to_path_buf()) {
                break;
            }
            if !ancestor.as_os_str().is_empty() {
                self.paths.insert(ancestor.to_path_buf());
            }
        }
        self.paths.insert(path.to_path_buf());
    }
}

/// The blob reader shared between the decompressor and the check, which
/// drains it after the decompressor stopped (maybe early, at an error) so
/// its digest and size are always checked; its first failure is kept.
#[derive(Clone)]
struct SharedBlob(Arc<Mutex<(BlobReader, Option<Error>)>>, Cancel);

impl SharedBlob {
    fn failure(&self) -> Option<Error> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .1
            .take()
    }
}

impl Read for SharedBlob {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.1.is_cancelled() {
            return Err(io::Error::other("cancelled"));
        }
        let mut guard = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let (blob, failure) = &mut *guard;
        blob.read(buf).map_err(|e| {
            // The decompressor gets the message; the check keeps the cause.
            let told = io::Error::new(e.kind(), e.to_string());
            if failure.is_none() {
                *failure = Some(blob.classify(e));
            }
            told
        })
    }
}

/// Stream layer `n` from `blob`, parse every entry and verify both digests.
/// Its paths are added to `lower` for the layers above. Errors are what
/// says nothing about the image (network, cancellation).
fn check_layer(
    blob: BlobReader,
    layer: &LayerRef,
    n: usize,
    limits: LayerLimits,
    lower: &mut Tree,
    cancel: Cancel,
) -> Result<Vec<Problem>> {
    let digest = layer.digest.to_string();
    let shared = SharedBlob(Arc::new(Mutex::new((blob, None))), cancel.clone());
    let mut entries = Entries::new(n, lower);
    let mut stream_failure = None;
    let mut diff_id = None;
    match LayerDecoder::new(shared.clone(), &layer.media_type, &digest, limits) {
        Err(e) => stream_failure = Some(Error::Integrity(decompress_error(&digest, e))),
        Ok(decoder) => {
            let decoded = decoder.on_thread().map_err(|e| Error::io("(thread)", e))?;
            let hashing = HashingReader::new(decoded, layer.diff_id.hasher());
            let mut reader = tar::Reader::new(hashing, limits);
            let mut tar_failure = None;
            loop {
                match reader.next_entry() {
                    Ok(Some(h)) => entries.entry(&h),
                    Ok(None) => break,
                    Err(e) => {
                        tar_failure = Some(e);
                        break;
                    }
                }
            }
            let mut hashing = reader.into_inner();
            let drained = match tar_failure {
                Some(TarError::Io(e)) => Err(e),
                Some(e) => {
                    entries.problems.push(tar_problem(e));
                    io::copy(&mut hashing, &mut io::sink())
                }
                None => io::copy(&mut hashing, &mut io::sink()),
            };
            match drained {
                Ok(_) => diff_id = Some(hashing.hasher.finish()),
                Err(e) => stream_failure = Some(hashing.inner.classify(e)),
            }
        }
    }
    // The blob's own checks run at its end, whatever the decompressor did.
    let _ = io::copy(&mut shared.clone(), &mut io::sink());
    if let Some(failure) = shared.failure() {
        if cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        if failure.kind() != ErrorKind::Integrity {
            return Err(failure);
        }
        // The content is not the layer's: what it holds proves nothing.
        lower.merge(entries.seen);
        return Ok(vec![integrity_problem(&failure)]);
    }
    let mut problems = entries.problems;
    match stream_failure {
        Some(e) if e.kind() != ErrorKind::Integrity => return Err(e),
        Some(Error::Integrity(IntegrityError::TooLarge { .. })) => problems.push(Problem::new(
            ProblemKind::LimitExceeded,
            "the layer decompresses to more than the size limit: a bundle refuses it",
        )),
        Some(e) => problems.push(Problem::new(
            ProblemKind::Malformed,
            format!("{e}: a bundle refuses it"),
        )),
        None => {}
    }
    if let Some(actual) = diff_id
        && actual != layer.diff_id
    {
        problems.push(Problem::new(
            ProblemKind::DiffIdMismatch,
            format!(
                "the layer decompresses to {actual}, the config's diff_id is {}",
                layer.diff_id
            ),
        ));
    }
    lower.merge(entries.seen);
    Ok(problems)
}

impl Tree {
    fn merge(&mut self, seen: HashMap<PathBuf, bool>) {
        for path in seen.keys() {
            self.add(path);
        }
    }
}

fn decompress_error(digest: &str, e: io::Error) -> IntegrityError {
    IntegrityError::Decompress {
        digest: digest.to_string(),
        compression: "unknown",
        reason: e.to_string(),
    }
}

fn tar_problem(e: TarError) -> Problem {
    match e {
        TarError::TooLarge { .. } | TarError::TooManyEntries { .. } => Problem::new(
            ProblemKind::LimitExceeded,
            format!("{e}: a bundle refuses the layer"),
        ),
        e => Problem::new(
            ProblemKind::Malformed,
            format!("malformed tar: {e}: a bundle refuses the layer"),
        ),
    }
}

/// The judgement of one layer's entries, as [`crate::unpack`] would apply them.
struct Entries<'a> {
    layer: usize,
    lower: &'a Tree,
    /// This layer's paths, and whether each was last declared a directory.
    seen: HashMap<PathBuf, bool>,
    duplicates: HashSet<PathBuf>,
    problems: Vec<Problem>,
}

impl<'a> Entries<'a> {
    fn new(layer: usize, lower: &'a Tree) -> Self {
        Entries {
            layer,
            lower,
            seen: HashMap::new(),
            duplicates: HashSet::new(),
            problems: Vec::new(),
        }
    }

    fn report(&mut self, kind: ProblemKind, path: &Path, message: String) {
        let mut p = Problem::new(kind, message);
        p.path = Some(path.to_path_buf());
        self.problems.push(p);
    }

    fn refused(&mut self, path: &Path, why: impl std::fmt::Display) {
        let message = format!("a bundle refuses the layer: {why}");
        self.report(ProblemKind::RefusedEntry, path, message);
    }

    fn confined(&mut self, path: &Path, how: String) {
        self.report(ProblemKind::ConfinedEntry, path, how);
    }

    fn entry(&mut self, h: &Header) {
        if h.kind == Kind::GlobalExtension {
            return;
        }
        let written = PathBuf::from(OsString::from_vec(h.name.clone()));
        let path = match clean_path(&h.name) {
            Ok(path) => path,
            Err(reason) => return self.refused(&written, reason),
        };
        let shown = escape::path(&path);
        if h.name.starts_with(b"/") {
            let how = format!("absolute name: the leading / is dropped, written at <root>/{shown}");
            self.confined(&written, how);
        } else if h.name.split(|b| *b == b'/').any(|c| c == b"..") {
            let how = format!("`..` in the name stays inside the root: cleaned to {shown}");
            self.confined(&written, how);
        }
        if let Some(name) = path.file_name().map(|n| n.as_bytes())
            && name.starts_with(WHITEOUT_PREFIX)
        {
            return self.whiteout(&written, &path, name);
        }
        if path.as_os_str().is_empty() && h.kind != Kind::Directory {
            return self.refused(&written, "the entry would replace the root directory");
        }
        self.fields(&written, h);
        match h.kind {
            Kind::Other(flag) => self.refused(
                &written,
                format!(
                    "unsupported entry type {} ({flag:#04x})",
                    escape::bytes(&[flag])
                ),
            ),
            Kind::Symlink => self.symlink(&written, &path, &h.link_name),
            Kind::Link => self.hardlink(&written, &h.link_name),
            _ => {}
        }
        self.duplicate(&written, path, h.kind == Kind::Directory);
    }

    /// Header fields a bundle cannot apply.
    fn fields(&mut self, written: &Path, h: &Header) {
        for (name, value) in [("uid", h.uid), ("gid", h.gid)] {
            if u32::try_from(value).is_err() {
                self.refused(written, format!("{name} {value} out of range"));
            }
        }
        if matches!(h.kind, Kind::Char | Kind::Block) {
            for value in [h.dev_major, h.dev_minor] {
                if u32::try_from(value).is_err() {
                    self.refused(written, format!("device number {value} out of range"));
                }
            }
        }
    }

    fn symlink(&mut self, written: &Path, path: &Path, target: &[u8]) {
        if target.is_empty() {
            return self.refused(written, "symlink with an empty target");
        }
        // An absolute target is ordinary (`/etc/alternatives/...`): it is
        // resolved inside the root at unpacking and in the container.
        if target.starts_with(b"/") {
            return;
        }
        let shown = escape::bytes(target);
        let from = path
            .parent()
            .unwrap_or(Path::new(""))
            .as_os_str()
            .as_bytes();
        let joined = [from, b"/", target].concat();
        if clean_path(&joined).is_err() {
            let how = format!(
                "symlink to \"{shown}\" climbs above the root: resolved inside the root (`..` \
                 at the root stays there), at unpacking and in the container"
            );
            self.confined(written, how);
        }
    }

    fn hardlink(&mut self, written: &Path, target: &[u8]) {
        if target.is_empty() {
            return self.refused(written, "link without a target");
        }
        let shown = escape::bytes(target);
        match clean_path(target) {
            Err(reason) => self.refused(written, format!("hardlink target \"{shown}\": {reason}")),
            Ok(t) if t.as_os_str().is_empty() => {
                self.refused(written, "hardlink to the root directory")
            }
            Ok(t) => {
                if target.starts_with(b"/") || target.split(|b| *b == b'/').any(|c| c == b"..") {
                    let how = format!(
                        "hardlink to \"{shown}\": looked up inside the root, as {}",
                        escape::path(&t)
                    );
                    self.confined(written, how);
                }
            }
        }
    }

    fn whiteout(&mut self, written: &Path, path: &Path, name: &[u8]) {
        if name != OPAQUE_MARKER && name.starts_with(AUFS_META_PREFIX) {
            return; // aufs bookkeeping: skipped, as a bundle skips it
        }
        if matches!(&name[WHITEOUT_PREFIX.len()..], b"" | b"." | b"..") {
            return self.refused(written, "whiteout names no entry");
        }
        let Some(whiteout) = whiteout_of(path, self.layer) else {
            return;
        };
        let removes = if whiteout.opaque {
            self.lower.parents.contains(&whiteout.path)
        } else {
            self.lower.paths.contains(&whiteout.path)
        };
        if !removes {
            let what = if whiteout.opaque {
                "opaque marker: no lower layer has anything in"
            } else {
                "whiteout: no lower layer has"
            };
            let message = format!("{what} /{}", escape::path(&whiteout.path));
            self.report(ProblemKind::WhiteoutRemovesNothing, written, message);
        }
    }

    /// A directory declared again only updates its metadata; any other
    /// second declaration silently replaces the first (a directory replaced
    /// takes what the layer put in it along), which no image builder does.
    fn duplicate(&mut self, written: &Path, path: PathBuf, is_dir: bool) {
        let Some(was_dir) = self.seen.insert(path.clone(), is_dir) else {
            return;
        };
        if (was_dir && is_dir) || !self.duplicates.insert(path.clone()) {
            return;
        }
        let what = |dir| {
            if dir {
                "a directory"
            } else {
                "a non-directory"
            }
        };
        let message = format!(
            "declared twice in the layer ({} then {}): the later entry replaces the earlier",
            what(was_dir),
            what(is_dir)
        );
        self.report(ProblemKind::DuplicatePath, written, message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(name: &str, kind: Kind, link: &str) -> Header {
        Header {
            name: name.as_bytes().to_vec(),
            link_name: link.as_bytes().to_vec(),
            kind,
            mode: 0o644,
            uid: 0,
            gid: 0,
            uname: Vec::new(),
            gname: Vec::new(),
            size: 0,
            mtime: tar::Time { secs: 0, nanos: 0 },
            atime: None,
            ctime: None,
            dev_major: 0,
            dev_minor: 0,
            pax: Default::default(),
            sparse: None,
            offset: 0,
        }
    }

    fn codes(lower: &Tree, entries: &[Header]) -> Vec<&'static str> {
        let mut e = Entries::new(1, lower);
        for h in entries {
            e.entry(h);
        }
        e.problems.iter().map(|p| p.kind.code()).collect()
    }

    #[test]
    fn entries_are_judged_as_a_bundle_applies_them() {
        let mut lower = Tree::default();
        lower.add(Path::new("etc/passwd"));
        let ok = [
            header("etc/", Kind::Directory, ""),
            header("etc/", Kind::Directory, ""),
            header("etc/.wh.passwd", Kind::Regular, ""),
            header("etc/.wh..wh..opq", Kind::Regular, ""),
            header(".wh.etc", Kind::Regular, ""),
            header("a/.wh..wh.plnk", Kind::Regular, ""),
            header("bin/sh", Kind::Symlink, "busybox"),
            header("bin/x", Kind::Link, "bin/sh"),
        ];
        assert!(codes(&lower, &ok).is_empty(), "{:?}", codes(&lower, &ok));
        let bad = [
            header("../x", Kind::Regular, ""),
            header("/abs", Kind::Regular, ""),
            header("a/../b", Kind::Regular, ""),
            header("l", Kind::Symlink, "../../x"),
            header("m", Kind::Link, "../x"),
            header("dev/x", Kind::Other(b'Z'), ""),
            header(".wh.gone", Kind::Regular, ""),
            header("var/.wh..wh..opq", Kind::Regular, ""),
            header("f", Kind::Regular, ""),
            header("f", Kind::Regular, ""),
            header("./", Kind::Regular, ""),
        ];
        assert_eq!(
            codes(&lower, &bad),
            [
                "refused-entry",
                "confined-entry",
                "confined-entry",
                "confined-entry",
                "refused-entry",
                "refused-entry",
                "whiteout-removes-nothing",
                "whiteout-removes-nothing",
                "duplicate-path",
                "refused-entry",
            ]
        );
    }
}
