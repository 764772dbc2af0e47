//! occystrap: turn container images from registries, `docker save`
//! archives and OCI layouts into OCI runtime bundles, `docker load`-able
//! tarballs and inspectable directories.
//!
//! # For orchestrators
//!
//! One call per operation, each taking an [`ImageName`] (parsed from
//! `busybox:1.36`, `docker://REF`, `docker-archive:FILE`, `oci:DIR:NAME`...)
//! and [`PullOptions`] (registry transport and credentials, platform,
//! progress sink, [`Cancel`] token):
//!
//! - [`resolve`]: the manifest and config, verified, no layer fetched;
//! - [`create_bundle`]: an OCI runtime bundle that `runc run` starts;
//! - [`export_tarball`]: a `docker load`-able tarball;
//! - [`extract_image`]: an extracted image directory, optionally shared
//!   between images, and [`recreate_image`] to get a tarball back from it;
//! - [`copy_image`]: to a registry, an OCI layout or archive, a
//!   docker-archive or the local engine, digests preserved;
//! - [`check_image`], [`search_image`], [`diff_images`]: read-only
//!   validation, path search and tree comparison.
//!
//! Files and directories appear at their target only once complete.
//! Progress arrives as [`progress::Event`]s through [`PullOptions::progress`];
//! cancelling the [`Cancel`] token stops that operation alone. Every
//! failure is an [`Error`], whose [`Error::kind`] says what to do about it
//! (usage, not found, integrity, I/O, cancelled).
//!
//! The modules follow the data's path:
//! [`source`] ([`reference`](mod@reference), [`registry`], archives and
//! layouts) → [`image`] → [`layer`] (verify, decompress) →
//! ([`unpack`] into a [`fsroot::RootDir`] → [`bundle`]) | [`export`].
//!
//! ```no_run
//! use occystrap::{ImageName, PullOptions, bundle::BundleOptions, copy::CopyOptions};
//!
//! # async fn demo() -> occystrap::Result<()> {
//! let name = ImageName::parse("busybox:1.36")?; // or docker-archive:FILE, oci:DIR:NAME...
//! let opts = PullOptions::default(); // host platform, Docker config credentials
//! let image = occystrap::create_bundle(&name, "bb".as_ref(), &BundleOptions::default(), &opts).await?;
//! println!("image ID {}", image.config_digest);
//! occystrap::export_tarball(&name, "bb.tar".as_ref(), &opts).await?;
//! let mirror = ImageName::parse("oci:./mirror:busybox")?;
//! occystrap::copy_image(&name, &mirror, CopyOptions::default(), &opts).await?;
//! # Ok(()) }
//! ```

#![deny(missing_docs)]

pub mod bundle;
pub mod cache;
pub mod cancel;
pub(crate) mod cause;
pub mod check;
pub mod copy;
pub mod diff;
pub mod digest;
pub(crate) mod encoding;
pub(crate) mod engine;
pub mod error;
pub mod escape;
pub mod export;
pub mod filter;
pub mod fsroot;
// Public only for the gzip fuzz target, which checks it against flate2.
#[doc(hidden)]
pub mod gzip;
pub mod image;
pub mod inspect;
pub mod layer;
pub(crate) mod leftovers;
pub(crate) mod merged;
pub(crate) mod output;
pub mod platform;
pub mod progress;
pub(crate) mod pull;

pub mod reference;
pub mod registry;
pub mod run;
pub mod search;
pub mod source;
pub mod store;
pub mod tar;
pub mod unpack;
pub mod userns;

pub use error::{Error, Result};

use std::path::Path;

pub use cancel::Cancel;
pub use image::ResolvedImage;
pub use platform::Platform;
pub use reference::ImageRef;
pub use registry::{Registry, RegistryOptions};
pub use source::{ImageName, Source};

/// How to pull: where and as whom, and for which platform.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// Transport and credentials.
    pub registry: RegistryOptions,
    /// The platform to pick from a multi-platform image.
    pub platform: Platform,
    /// Whether `platform` was asked for, rather than this machine's by
    /// default: a single-platform image of another platform is then an
    /// error ([`Error::NoMatchingPlatform`]), not a warning.
    pub platform_required: bool,
    /// Where to report progress (see [`progress`]); nowhere by default.
    pub progress: progress::Progress,
    /// Stops this operation when cancelled (see [`cancel`]).
    pub cancel: Cancel,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            registry: RegistryOptions::default(),
            platform: Platform::host(),
            platform_required: false,
            progress: progress::Progress::default(),
            cancel: Cancel::new(),
        }
    }
}

/// Resolve `name` to one image (manifest and config fetched and
/// verified; layers not yet fetched).
pub async fn resolve(name: &ImageName, opts: &PullOptions) -> Result<(Source, ResolvedImage)> {
    let source = Source::open(name, &opts.registry, &opts.cancel)?;
    let image = image::resolve(&source, &opts.platform).await?;
    check_platform(&image, opts)?;
    opts.progress.emit(|| progress::Event::Resolved {
        reference: image.name.clone(),
        manifest_digest: image.manifest.digest.clone(),
        image_id: image.config_digest.clone(),
        platform: image.platform().to_string(),
        layers: image
            .layers
            .iter()
            .map(|l| progress::LayerSummary {
                digest: l.digest.clone(),
                diff_id: l.diff_id.clone(),
                size: l.size,
            })
            .collect(),
    });
    Ok((source, image))
}

/// An index was resolved by platform already; a single image is whatever
/// it is, which may not be what was asked for (or what this machine runs).
fn check_platform(image: &ResolvedImage, opts: &PullOptions) -> Result<()> {
    let actual = image.platform();
    if image.index.is_some()
        || actual.os.is_empty()
        || actual.architecture.is_empty()
        || opts.platform.matches(&actual)
    {
        return Ok(());
    }
    if opts.platform_required {
        return Err(Error::NoMatchingPlatform {
            reference: image.name.clone(),
            wanted: opts.platform.to_string(),
            available: actual.to_string(),
        });
    }
    tracing::warn!(
        "{} is a {actual} image, not {}: it may not run on this machine",
        image.name,
        opts.platform
    );
    Ok(())
}

/// Write `name`'s image as a `docker load`-able tarball at `target`,
/// tagged with the name it goes by ([`ResolvedImage::reference`]). Nothing
/// appears at `target` unless every blob and layer verified. A `filter`
/// that changes something makes it a new image (see [`filter`]).
pub async fn export_tarball(
    name: &ImageName,
    target: &Path,
    filter: &filter::Filter,
    opts: &PullOptions,
) -> Result<ResolvedImage> {
    let (source, image) = resolve(name, opts).await?;
    let tags = image.tags();
    export::docker_tarball(&source, &image, target, &tags, filter, &opts.progress).await?;
    done(&image, target, opts);
    Ok(image)
}

/// Every entry of `name`'s layers whose path matches `pattern`,
/// with the later layer that removes it, if one does. Layers are streamed
/// and verified as for a bundle; nothing is written.
pub async fn search_image(
    name: &ImageName,
    pattern: search::Pattern,
    opts: &PullOptions,
) -> Result<(ResolvedImage, Vec<search::Hit>)> {
    let (source, image) = resolve(name, opts).await?;
    let hits = search::search(&source, &image, pattern, &opts.progress).await?;
    Ok((image, hits))
}

/// Validate `name`'s image end to end (see [`check`]): with `fast`, the
/// index, manifest and config only, no layer downloaded; otherwise every
/// layer too, streamed and parsed as for a bundle, nothing written. An
/// image at fault is a report with problems; an error is a failure that
/// says nothing about the image (usage, not found, network).
pub async fn check_image(
    name: &ImageName,
    fast: bool,
    opts: &PullOptions,
) -> Result<check::Report> {
    let source = Source::open(name, &opts.registry, &opts.cancel)?;
    let resolved = match image::resolve(&source, &opts.platform).await {
        Ok(image) => check_platform(&image, opts).map(|()| image),
        Err(e) => Err(e),
    };
    check::check(source.name(), &source, resolved, fast).await
}

/// What differs between the final trees of images `a` and `b`: paths
/// added, removed and changed (type, content, mode, owner, link, xattrs).
/// Layers are streamed and verified as for a bundle; nothing is written.
pub async fn diff_images(
    a: &ImageName,
    b: &ImageName,
    opts: &PullOptions,
) -> Result<(
    ResolvedImage,
    ResolvedImage,
    Vec<(std::path::PathBuf, diff::Change)>,
)> {
    let (source_a, image_a) = resolve(a, opts).await?;
    let tree_a = diff::tree(&source_a, &image_a, &opts.progress).await?;
    let (source_b, image_b) = resolve(b, opts).await?;
    let tree_b = diff::tree(&source_b, &image_b, &opts.progress).await?;
    let changes = diff::compare(&tree_a, &tree_b);
    Ok((image_a, image_b, changes))
}

/// Make `name`'s image an OCI runtime bundle at `dir` (`config.json` and
/// `rootfs/`) that `runc run` starts as it is. Nothing appears at `dir`
/// unless every layer verified and applied.
pub async fn create_bundle(
    name: &ImageName,
    dir: &Path,
    bundle: &bundle::BundleOptions,
    opts: &PullOptions,
) -> Result<ResolvedImage> {
    let (source, image) = resolve(name, opts).await?;
    bundle::create(&source, &image, dir, bundle, &opts.progress).await?;
    let volumes = bundle::convert::volumes(&image.config);
    if !volumes.is_empty() {
        tracing::warn!(
            "the image declares volumes {}: they are not mounted; add mounts to config.json if the container needs them",
            volumes
                .iter()
                .map(|v| escape::bytes(v.as_bytes()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    done(&image, dir, opts);
    Ok(image)
}

/// Write `name`'s image as an extracted image directory at `dir` (see
/// [`export::extracted`]): plain (the docker-save layout, appearing only when
/// complete), shared between images with a catalog, and/or expanded.
pub async fn extract_image(
    name: &ImageName,
    dir: &Path,
    extract: &export::extracted::ExtractOptions,
    opts: &PullOptions,
) -> Result<ResolvedImage> {
    let (source, image) = resolve(name, opts).await?;
    let tags = image.tags();
    export::extracted::extract(&source, &image, dir, &tags, extract, &opts.progress).await?;
    done(&image, dir, opts);
    Ok(image)
}

/// Copy the image `from` names to `to`: a registry (`docker://REF`, a
/// push), an OCI layout (`oci:DIR[:NAME]`, new or added to) or archive
/// (`oci-archive:`), blob for blob, every digest preserved and every blob
/// and layer verified on the way (see [`copy`]); a docker-archive
/// (`docker-archive:FILE[:REF]`), which is [`export_tarball`] tagged `REF`;
/// or the local engine (`docker-daemon:NAME:TAG`, streamed as a `docker
/// save` archive to its `POST /images/load`). With `options.all`, an index
/// is copied whole (registries and layouts); otherwise the platform's
/// image; with `options.compress`, layers are recompressed (registries and
/// layouts); with `options.filter`, a new image is written (not to the
/// engine).
pub async fn copy_image(
    from: &ImageName,
    to: &ImageName,
    options: copy::CopyOptions,
    opts: &PullOptions,
) -> Result<copy::Copied> {
    let all = options.all;
    if options.compress.is_some()
        && matches!(
            to,
            ImageName::DockerArchive { .. } | ImageName::DockerDaemon(_)
        )
    {
        return Err(Error::Usage(format!(
            "{to}: --dest-compress is for registries and OCI layouts (a docker-archive holds uncompressed layers, and an engine stores its own)"
        )));
    }
    let copied = match to {
        ImageName::Oci {
            path,
            image,
            archive,
        } => {
            let source = Source::open(from, &opts.registry, &opts.cancel)?;
            let dest = export::oci_layout::LayoutWriter::create(path, *archive, image.clone())?;
            let dest = copy::Destination::Layout(dest);
            copy::copy(std::sync::Arc::new(source), dest, &opts.platform, options).await?
        }
        ImageName::Registry(reference) => {
            let source = Source::open(from, &opts.registry, &opts.cancel)?;
            let dest = copy::Destination::Registry {
                registry: Registry::connect(reference, &opts.registry)?
                    .with_cancel(opts.cancel.clone()),
                reference: reference.reference_string().to_string(),
            };
            copy::copy(std::sync::Arc::new(source), dest, &opts.platform, options).await?
        }
        ImageName::DockerArchive { path, image } => {
            if all {
                return Err(Error::Usage(
                    "--all: a docker-archive holds one image per platform; copy to oci: or oci-archive: instead".into(),
                ));
            }
            let tags = match image {
                None => None,
                Some(source::ArchiveImage::Name(r)) => r.familiar_tagged().map(|t| vec![t]),
                Some(source::ArchiveImage::Index(_)) => {
                    return Err(Error::Usage(format!(
                        "{to}: @N picks an image to read; to write, name it docker-archive:FILE:NAME:TAG"
                    )));
                }
            };
            let (source, image) = resolve(from, opts).await?;
            let tags = tags.unwrap_or_else(|| image.tags());
            export::docker_tarball(
                &source,
                &image,
                path,
                &tags,
                &options.filter,
                &opts.progress,
            )
            .await?;
            copy::Copied {
                manifest: image.manifest.clone(),
                images: 1,
                written: image.layers.len() + 1,
                present: 0,
            }
        }
        ImageName::DockerDaemon(name) => {
            if !options.filter.is_empty() {
                return Err(Error::Usage(format!(
                    "{to}: filters are not supported for the engine; export to docker-archive:FILE and docker load it"
                )));
            }
            if all || digest::Digest::parse(name).is_ok() || name.contains('@') {
                return Err(Error::Usage(format!(
                    "{to}: an engine takes one image, tagged: docker-daemon:NAME:TAG, without --all"
                )));
            }
            let (source, image) = resolve(from, opts).await?;
            let loaded = copy::to_engine(&source, &image, vec![name.clone()]).await?;
            tracing::info!("the engine says: {}", escape::bytes(loaded.as_bytes()));
            copy::Copied {
                manifest: image.manifest.clone(),
                images: 1,
                written: image.layers.len() + 1,
                present: 0,
            }
        }
        ImageName::Path(_) => {
            return Err(Error::Usage(format!(
                "{to}: name the destination's transport: docker://REF, oci:DIR[:NAME], oci-archive:FILE[:NAME], docker-archive:FILE[:NAME:TAG] or docker-daemon:NAME:TAG"
            )));
        }
    };
    opts.progress.emit(|| progress::Event::Done {
        reference: from.to_string(),
        output: to.to_string().into(),
    });
    Ok(copied)
}

fn done(image: &ResolvedImage, output: &Path, opts: &PullOptions) {
    opts.progress.emit(|| progress::Event::Done {
        reference: image.name.clone(),
        output: output.to_path_buf(),
    });
}

/// Rebuild the `docker load`-able tarball of `reference` (looked up by its
/// familiar name and tag) from the shared image directory `dir` into
/// `target`. Returns the image ID.
pub fn recreate_image(dir: &Path, reference: &ImageRef, target: &Path) -> Result<digest::Digest> {
    export::recreate::recreate(dir, reference, target)
}
