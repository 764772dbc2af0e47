//! Rebuild one image's docker-save tarball from a shared directory: the
//! config byte for byte (so the image ID is the registry's) and each layer
//! checked against its diff_id as it is copied.

use std::fs::{self, File};
use std::io::{BufReader, BufWriter};
use std::path::Path;

use oci_spec::image::ImageConfiguration;
use serde::Deserialize;

use crate::digest::{Digest, VerifyingReader, integrity_cause};
use crate::output::Staged;
use crate::reference::ImageRef;
use crate::registry::CONFIG_LIMIT;
use crate::{Error, Result};

use super::catalog::{self, Catalog, CatalogEntry};
use super::docker_save::{self, CopyError, Layout, TarWriter};

/// A manifest file larger than this is not one occystrap wrote.
const MANIFEST_LIMIT: u64 = 16 * 1024 * 1024;

/// One entry of a docker-save `manifest.json`.
#[derive(Debug, Deserialize)]
struct SaveManifest {
    #[serde(rename = "Config")]
    config: String,
    #[serde(rename = "RepoTags", default)]
    repo_tags: Option<Vec<String>>,
    #[serde(rename = "Layers")]
    layers: Vec<String>,
}

/// Write the image the catalog of `dir` records for `reference` (its
/// familiar name and tag, see [`catalog::key_of`]) as a `docker load`-able
/// tarball at `target`. Returns the image ID. The tarball appears only when
/// complete and verified.
pub fn recreate(dir: &Path, reference: &ImageRef, target: &Path) -> Result<Digest> {
    let catalog = load_catalog(dir)?;
    let (image, tag) = catalog::key_of(reference);
    let entry = match catalog.get(&image, &tag) {
        Some(entry) => entry,
        None => by_path(dir, &catalog, reference, &image, &tag)?,
    };
    let manifest = read_manifest(dir, entry)?;
    let config_digest = catalog::config_digest(&manifest.config)
        .ok_or_else(|| malformed(dir, entry, "Config is not <sha256 hex>.json"))?;
    let config_bytes = read_config(dir, &manifest.config, &config_digest)?;
    let diff_ids = layer_diff_ids(dir, entry, &manifest, &config_bytes, &config_digest)?;

    let (staged, file) = Staged::file(target)?;
    let tmp = staged.path().to_path_buf();
    let io_err = |e| Error::io(&tmp, e);
    let mut writer = TarWriter::new(BufWriter::with_capacity(1 << 20, file));
    writer
        .add_file(&manifest.config, &config_bytes)
        .map_err(io_err)?;
    for (name, diff_id) in manifest.layers.iter().zip(&diff_ids) {
        if !writer.contains(name) {
            copy_layer(&mut writer, dir, name, diff_id, &tmp)?;
        }
    }
    let layout = Layout {
        config: manifest.config.clone(),
        layers: manifest.layers.clone(),
    };
    let repo_tags = manifest.repo_tags.unwrap_or_default();
    writer
        .add_file("manifest.json", &layout.manifest_json(&repo_tags))
        .map_err(io_err)?;
    if let Some((repository, tag)) = repo_tags.first().and_then(|t| t.rsplit_once(':'))
        && let Some(repos) = layout.repositories_json(repository, tag)
    {
        writer.add_file("repositories", &repos).map_err(io_err)?;
    }
    let out = writer.finish().map_err(io_err)?;
    out.into_inner().map_err(|e| io_err(e.into_error()))?;
    staged.commit()?;
    Ok(config_digest)
}

fn load_catalog(dir: &Path) -> Result<Catalog> {
    let path = catalog::catalog_path(dir);
    if fs::symlink_metadata(&path).is_err() {
        return Err(Error::io(
            &path,
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "no catalog: not a directory written with --use-unique-names",
            ),
        ));
    }
    Catalog::load(dir)
}

/// The one entry with the same repository path and tag under another
/// registry, as `fetch-to-extracted REGISTRY IMAGE TAG DIR` records it
/// and `recreate-image DIR IMAGE TAG` names it. Several are an error that
/// lists them.
fn by_path<'c>(
    dir: &Path,
    catalog: &'c Catalog,
    reference: &ImageRef,
    image: &str,
    tag: &str,
) -> Result<&'c CatalogEntry> {
    let wanted = [
        reference.repository.as_str(),
        reference
            .repository
            .strip_prefix("library/")
            .unwrap_or(&reference.repository),
    ];
    let found: Vec<(String, &CatalogEntry)> = catalog
        .all()
        .filter(|(key, _)| {
            key.rsplit_once(':')
                .is_some_and(|(name, t)| t == tag && wanted.contains(&repository_path(name)))
        })
        .collect();
    match found.as_slice() {
        [(_, entry)] => Ok(entry),
        [] => Err(not_in_catalog(dir, catalog, image, tag)),
        several => Err(Error::Usage(format!(
            "{image}:{tag} matches several images in {}: {}; name one with its registry",
            catalog::catalog_path(dir).display(),
            several
                .iter()
                .map(|(key, _)| key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

/// A catalog name without its registry host, if it has one (a first
/// component with `.` or `:`, or `localhost`, as Docker decides).
fn repository_path(name: &str) -> &str {
    match name.split_once('/') {
        Some((host, rest)) if host.contains(['.', ':']) || host == "localhost" => rest,
        _ => name,
    }
}

fn not_in_catalog(dir: &Path, catalog: &Catalog, image: &str, tag: &str) -> Error {
    let names: Vec<String> = catalog.all().map(|(name, _)| name).collect();
    Error::NotInCatalog {
        catalog: catalog::catalog_path(dir),
        image: format!("{image}:{tag}"),
        available: if names.is_empty() {
            "(no images)".into()
        } else {
            names.join(", ")
        },
    }
}

fn read_manifest(dir: &Path, entry: &CatalogEntry) -> Result<SaveManifest> {
    if !catalog::is_plain_name(&entry.manifest) {
        return Err(malformed(dir, entry, "the manifest is not a file name"));
    }
    let bytes = read_limited(&dir.join(&entry.manifest), MANIFEST_LIMIT)?;
    let mut list: Vec<SaveManifest> = serde_json::from_slice(&bytes)
        .map_err(|e| malformed(dir, entry, &format!("{}: {e}", entry.manifest)))?;
    if list.len() != 1 {
        return Err(malformed(
            dir,
            entry,
            "the manifest must describe one image",
        ));
    }
    let manifest = list.remove(0);
    if manifest.config != entry.config || manifest.layers != entry.layers {
        return Err(malformed(
            dir,
            entry,
            "the manifest file and the catalog disagree",
        ));
    }
    Ok(manifest)
}

fn read_config(dir: &Path, name: &str, digest: &Digest) -> Result<Vec<u8>> {
    let bytes = read_limited(&dir.join(name), CONFIG_LIMIT)?;
    digest.verify("config", &bytes)?;
    Ok(bytes)
}

/// The diff_ids named by the manifest's layer paths; they must be the
/// config's own, in order (as `docker load` demands).
fn layer_diff_ids(
    dir: &Path,
    entry: &CatalogEntry,
    manifest: &SaveManifest,
    config_bytes: &[u8],
    config_digest: &Digest,
) -> Result<Vec<Digest>> {
    let config: ImageConfiguration =
        serde_json::from_slice(config_bytes).map_err(|e| Error::Malformed {
            what: "config".into(),
            digest: config_digest.to_string(),
            reason: e.to_string(),
        })?;
    let named: Option<Vec<Digest>> = manifest
        .layers
        .iter()
        .map(|l| catalog::layer_diff_id(l))
        .collect();
    let named =
        named.ok_or_else(|| malformed(dir, entry, "a layer is not <sha256 hex>/layer.tar"))?;
    let listed: Vec<String> = named.iter().map(|d| d.to_string()).collect();
    if &listed != config.rootfs().diff_ids() {
        return Err(malformed(
            dir,
            entry,
            "the layers are not the config's diff_ids",
        ));
    }
    Ok(named)
}

fn copy_layer(
    writer: &mut TarWriter<BufWriter<File>>,
    dir: &Path,
    name: &str,
    diff_id: &Digest,
    tmp: &Path,
) -> Result<()> {
    let path = dir.join(name);
    let file = File::open(&path).map_err(|e| Error::io(&path, e))?;
    let mut reader = VerifyingReader::new(
        BufReader::with_capacity(256 * 1024, file),
        "layer diff_id",
        diff_id.clone(),
        None,
    );
    match writer.add_stream(name, |out| docker_save::copy(&mut reader, out)) {
        Ok(_) => Ok(()),
        Err(CopyError::Read(e)) => Err(match integrity_cause(&e) {
            Some(cause) => {
                tracing::error!(
                    "{} is damaged: fetch the image again to repair it",
                    path.display()
                );
                Error::Integrity(cause.clone())
            }
            None => Error::io(&path, e),
        }),
        Err(CopyError::Write(e)) => Err(Error::io(tmp, e)),
        Err(CopyError::Tar(e)) => Err(Error::io(&path, e.into())),
    }
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let meta = fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.len() > limit {
        return Err(Error::io(
            path,
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("larger than {limit} bytes"),
            ),
        ));
    }
    fs::read(path).map_err(|e| Error::io(path, e))
}

fn malformed(dir: &Path, entry: &CatalogEntry, reason: &str) -> Error {
    Error::Malformed {
        what: format!("image directory {}", dir.display()),
        digest: entry.manifest.clone(),
        reason: reason.into(),
    }
}
