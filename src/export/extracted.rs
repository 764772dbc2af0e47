//! Extracted image directories: the docker-save layout as files on disk,
//! alone or shared between images, optionally expanded.
//!
//! - Plain: DIR holds what the docker-save tarball holds, so
//!   `tar -cf x.tar -C DIR .` is `docker load`-able. DIR is built under a
//!   temporary name and appears complete, or not at all.
//! - Shared (`unique_names`): config and layers are named by digest and
//!   shared; each image gets `manifest-<image with / as _>-<tag>.json` and an
//!   entry in `catalog.json` (image and tag → manifest file, config and
//!   layers; [`crate::recreate_image`] reads it back). DIR accumulates: every
//!   file is written under a temporary name and renamed into place, and the
//!   catalog is updated under a lock, so several processes may write into
//!   one DIR at once. A layer already there is reused only after its sha256
//!   is checked against its diff_id; otherwise it is fetched again.
//! - Expanded (`expand`): each layer is also extracted to `<diff_id hex>/layer/`
//!   with whiteout files left visible, and the merged filesystem (all layers
//!   applied, whiteouts processed, by the bundle engine) is written to
//!   `manifest/` (shared: `manifest-<image with / as _>-<tag>/`). Layers are
//!   applied from the `layer.tar` just written, re-verified as they are read,
//!   so nothing is downloaded twice.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::digest::{Digest, VerifyingReader, integrity_cause};
use crate::fsroot::RootDir;
use crate::image::{LayerRef, ResolvedImage};
use crate::layer::LayerLimits;
use crate::output::Staged;
use crate::pull;
use crate::source::Source;
use crate::unpack::{self, UnpackError, UnpackOptions};
use crate::{Error, Result};

use super::catalog::{self, Catalog, CatalogEntry, DirLock};
use super::docker_save::{self, CopyError, Layout};

/// Name of a layer's expanded directory, beside its `layer.tar`.
pub const LAYER_DIR: &str = "layer";
/// Name of the merged filesystem in a plain directory.
pub const MERGED_DIR: &str = "manifest";

/// What kind of directory to write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Share config and layers between images in one DIR, with a catalog.
    pub unique_names: bool,
    /// Also extract each layer and the merged filesystem.
    pub expand: bool,
    /// Replace an existing plain DIR (only once the new one is complete).
    /// A shared DIR is always updated in place.
    pub replace: bool,
}

/// Write `image` (read from `source`) as an extracted directory at
/// `dir`, tagged with `repo_tags` (Docker's familiar names).
pub async fn extract(
    source: &Source,
    image: &ResolvedImage,
    dir: &Path,
    repo_tags: &[String],
    opts: &ExtractOptions,
    progress: &crate::progress::Progress,
) -> Result<()> {
    if opts.unique_names {
        extract_shared(source, image, dir, repo_tags, opts.expand, progress).await
    } else {
        extract_plain(source, image, dir, repo_tags, opts, progress).await
    }
}

async fn extract_plain(
    source: &Source,
    image: &ResolvedImage,
    dir: &Path,
    repo_tags: &[String],
    opts: &ExtractOptions,
    progress: &crate::progress::Progress,
) -> Result<()> {
    // Expanded trees hold the image's setuid binaries and devices: private.
    let staged = if opts.expand {
        Staged::private_dir(dir, opts.replace)?
    } else {
        Staged::dir(dir, opts.replace)?
    };
    let root = staged.path().to_path_buf();
    let layout = Layout::of(image);
    write_new(&root.join(&layout.config), &image.config_bytes)?;
    let layers = unique_layers(&image.layers);
    fetch_layers(source, image, &root, layers.clone(), progress).await?;
    write_new(
        &root.join("manifest.json"),
        &layout.manifest_json(repo_tags),
    )?;
    if let Some(repos) = image
        .reference
        .as_ref()
        .and_then(|r| layout.repositories_for(r))
    {
        write_new(&root.join("repositories"), &repos)?;
    }
    if opts.expand {
        let merged = root.join(MERGED_DIR);
        fs::create_dir(&merged).map_err(|e| Error::io(&merged, e))?;
        let all = image.layers.clone();
        let limits = source.layer_limits();
        let layer_dirs = blocking(move || expand(&root, &layers, &all, &merged, limits)).await?;
        for layer_dir in layer_dirs {
            layer_dir.commit()?;
        }
    }
    staged.commit()
}

async fn extract_shared(
    source: &Source,
    image: &ResolvedImage,
    dir: &Path,
    repo_tags: &[String],
    expand_too: bool,
    progress: &crate::progress::Progress,
) -> Result<()> {
    let Some(reference) = &image.reference else {
        return Err(Error::Usage(format!(
            "{}: the image has no name to file it under in a shared directory; name it (docker-archive:PATH:NAME, oci:PATH:NAME)",
            image.name
        )));
    };
    make_shared_dir(dir, expand_too)?;
    let (name, tag) = catalog::key_of(reference);
    let stem = catalog::manifest_stem(&name, &tag);
    let layout = Layout::of(image);
    ensure_config(&dir.join(&layout.config), &image.config_bytes)?;

    let unique = unique_layers(&image.layers);
    let (d, u) = (dir.to_path_buf(), unique.clone());
    let missing = blocking(move || missing_layers(&d, &u)).await?;
    fetch_layers(source, image, dir, missing.clone(), progress).await?;

    let mut layer_dirs = Vec::new();
    let mut merged = None;
    if expand_too {
        // Re-extract layers fetched now (the old tree may be from a
        // tampered tar); keep existing trees of verified layers.
        let fetched: HashSet<Digest> = missing.iter().map(|l| l.diff_id.clone()).collect();
        let todo: Vec<LayerRef> = unique
            .into_iter()
            .filter(|l| fetched.contains(&l.diff_id) || !exists(&layer_dir(dir, &l.diff_id)))
            .collect();
        let staged = Staged::dir(&dir.join(&stem), true)?;
        let (d, all, m) = (
            dir.to_path_buf(),
            image.layers.clone(),
            staged.path().to_path_buf(),
        );
        let limits = source.layer_limits();
        let built = blocking(move || expand(&d, &todo, &all, &m, limits)).await?;
        layer_dirs = built
            .into_iter()
            .map(|s| {
                let replace = layer_of(s.target()).is_some_and(|id| fetched.contains(&id));
                (s, replace)
            })
            .collect();
        merged = Some(staged);
    }

    let entry = CatalogEntry {
        manifest: format!("{stem}.json"),
        config: layout.config.clone(),
        layers: layout.layers.clone(),
        reference: reference.to_string(),
        manifest_digest: image.manifest.digest.to_string(),
    };
    let manifest = layout.manifest_json(repo_tags);
    let dir = dir.to_path_buf();
    blocking(move || {
        let _lock = DirLock::acquire(&dir)?;
        let mut catalog = Catalog::load(&dir)?;
        catalog.insert(&name, &tag, entry.clone())?;
        for (layer_dir, replace) in layer_dirs {
            // Another writer may have published the same tree meanwhile.
            if replace || !exists(layer_dir.target()) {
                layer_dir.commit()?;
            }
        }
        if let Some(merged) = merged {
            merged.commit()?;
        }
        catalog::write_atomic(&dir.join(&entry.manifest), &manifest)?;
        catalog.save(&dir)
    })
    .await
}

/// Create the shared `dir` if missing, 0700 since it may come to hold
/// expanded trees (the image's setuid binaries and devices, the merged
/// trees directly in it). To expand into an existing `dir`, it must be
/// private already: changing the mode of a directory we did not make
/// (`/tmp`, a home) is not ours to do, so say how instead.
fn make_shared_dir(dir: &Path, expand: bool) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(Error::io(dir, e)),
    }
    let meta = fs::metadata(dir).map_err(|e| Error::io(dir, e))?;
    if !meta.is_dir() {
        return Err(Error::Usage(format!("{}: not a directory", dir.display())));
    }
    let mode = meta.permissions().mode() & 0o7777;
    if expand && mode & 0o077 != 0 {
        return Err(Error::Usage(format!(
            "{}: other users can enter it (mode {mode:04o}), and --expand would put the \
             image's files there (setuid binaries, device nodes) within their reach; \
             run `chmod 700 {}` first, or give a new directory",
            dir.display(),
            dir.display()
        )));
    }
    Ok(())
}

/// Each distinct layer once, lowest first.
fn unique_layers(layers: &[LayerRef]) -> Vec<LayerRef> {
    let mut seen = HashSet::new();
    layers
        .iter()
        .filter(|l| seen.insert(l.diff_id.clone()))
        .cloned()
        .collect()
}

/// Fetch `layers` of `image` into `<diff_id hex>/layer.tar` under `dir`,
/// each written under a temporary name and renamed into place once every
/// byte has been verified.
async fn fetch_layers(
    source: &Source,
    image: &ResolvedImage,
    dir: &Path,
    layers: Vec<LayerRef>,
    progress: &crate::progress::Progress,
) -> Result<()> {
    if layers.is_empty() {
        return Ok(());
    }
    let mut subset = image.clone();
    subset.layers = layers;
    let dir = dir.to_path_buf();
    let limits = source.layer_limits();
    pull::each_layer(source, &subset, progress, (), move |_, layer, reader| {
        let target = dir.join(docker_save::layer_path(layer.diff_id.hex()));
        let parent = target.parent().unwrap_or(&dir);
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let (staged, file) = Staged::file(&target)?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let written = docker_save::copy_layer(reader, &mut out, limits).and_then(|_| {
            out.into_inner()
                .map(drop)
                .map_err(|e| CopyError::Write(e.into_error()))
        });
        // The stream ends only after the layer verified in full.
        super::copied(written, reader, layer, staged.path())?;
        staged.commit()
    })
    .await
}

/// The layers whose `layer.tar` is absent or does not hash to its diff_id.
fn missing_layers(dir: &Path, layers: &[LayerRef]) -> Result<Vec<LayerRef>> {
    let mut missing = Vec::new();
    for layer in layers {
        let path = dir.join(docker_save::layer_path(layer.diff_id.hex()));
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                missing.push(layer.clone());
                continue;
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        let mut reader = verifying(file, &layer.diff_id);
        match reader.drain() {
            Ok(()) => tracing::info!("reusing {} (verified)", path.display()),
            Err(e) if integrity_cause(&e).is_some() => {
                tracing::warn!(
                    "{}: does not match its diff_id {}; fetching it again",
                    path.display(),
                    layer.diff_id
                );
                missing.push(layer.clone());
            }
            Err(e) => return Err(Error::io(&path, e)),
        }
    }
    Ok(missing)
}

/// Write the config unless the same bytes are there already.
fn ensure_config(path: &Path, bytes: &[u8]) -> Result<()> {
    let same = fs::symlink_metadata(path)
        .is_ok_and(|m| m.is_file() && m.len() == bytes.len() as u64)
        && fs::read(path).is_ok_and(|old| old == bytes);
    if same {
        return Ok(());
    }
    catalog::write_atomic(path, bytes)
}

/// Extract each of `per_layer` into its own staged `<hex>/layer/` (whiteout
/// files kept), and apply all `layers` in order into `merged` (whiteouts
/// applied). Returns the staged layer trees, not yet committed.
fn expand(
    dir: &Path,
    per_layer: &[LayerRef],
    layers: &[LayerRef],
    merged: &Path,
    limits: LayerLimits,
) -> Result<Vec<Staged>> {
    let mut staged = Vec::new();
    for layer in per_layer {
        let tree = Staged::dir(&layer_dir(dir, &layer.diff_id), true)?;
        let root = RootDir::open(tree.path()).map_err(|e| Error::io(tree.path(), e))?;
        match apply_local(&root, dir, layer, false, limits) {
            Ok(()) => staged.push(tree),
            // A layer may hardlink a lower layer's file: alone it cannot be
            // built. The merged tree still has it; the layer.tar is intact.
            Err(Error::Unpack {
                source: source @ UnpackError::Malformed { .. },
                ..
            }) => tracing::warn!(
                "layer {} cannot be expanded on its own ({source}); {} left out",
                layer.diff_id,
                tree.target().display()
            ),
            Err(e) => return Err(e),
        }
    }
    let root = RootDir::open(merged).map_err(|e| Error::io(merged, e))?;
    for layer in layers {
        apply_local(&root, dir, layer, true, limits)?;
    }
    Ok(staged)
}

/// Apply the local `layer.tar` of `layer` to `root`, checking its diff_id
/// as it is read (a file changed since it was verified fails the layer).
fn apply_local(
    root: &RootDir,
    dir: &Path,
    layer: &LayerRef,
    whiteouts: bool,
    limits: LayerLimits,
) -> Result<()> {
    let path = dir.join(docker_save::layer_path(layer.diff_id.hex()));
    let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut reader = verifying(file, &layer.diff_id);
    let opts = UnpackOptions {
        apply_whiteouts: whiteouts,
        limits,
        ..UnpackOptions::default()
    };
    let applied = unpack::apply_layer(root, &mut reader, &opts);
    // Read to the end even if the tar stopped early: the check runs there.
    let drained = reader.drain();
    if let Err(e) = &drained
        && let Some(cause) = integrity_cause(e)
    {
        return Err(Error::Integrity(cause.clone()));
    }
    applied
        .map_err(|source| source.into_error(&layer.digest.to_string()))?
        .warn_skipped();
    drained.map_err(|e| Error::io(&path, e))
}

fn verifying(file: File, diff_id: &Digest) -> VerifyingReader<impl Read> {
    VerifyingReader::new(
        BufReader::with_capacity(256 * 1024, file),
        "layer diff_id",
        diff_id.clone(),
        None,
    )
}

/// `<hex>/layer`: where a layer is expanded.
fn layer_dir(dir: &Path, diff_id: &Digest) -> PathBuf {
    dir.join(diff_id.hex()).join(LAYER_DIR)
}

/// The diff_id of an expanded layer directory `<hex>/layer`.
fn layer_of(path: &Path) -> Option<Digest> {
    let hex = path.parent()?.file_name()?.to_str()?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

/// Create a file that must not exist yet (inside a staged directory).
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::options()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| Error::io(path, e))?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))
}

/// Run blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Error::Usage(format!("internal error: extraction task failed: {e}")))?
}
