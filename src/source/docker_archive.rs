//! A `docker save` tarball, or a directory laid out as one (what `extract`
//! writes): `manifest.json` lists each image's config and layer files.
//! Both of Docker's layouts are read: the classic one (`HEX.json`,
//! `ID/layer.tar`, repeated layers as symlinks) and Docker 25's, whose
//! files are an OCI layout's blobs (`blobs/sha256/HEX`).
//!
//! The archive has no manifest of its own, so one is made from
//! `manifest.json` (as containers/image does): an OCI manifest whose
//! config is the config file and whose layers are the layer files. What
//! verifies them: the config against the image ID its name gives, and
//! each layer against its diff_id. An uncompressed layer's blob digest is
//! its diff_id, so it is checked once, as it streams; a compressed one
//! with no digest in its name is hashed first, the one read this costs.

use std::collections::HashMap;
use std::io::Read;

use serde::Deserialize;

use super::files::Files;
use super::name::ArchiveImage;
use crate::digest::{Digest, Hasher};
use crate::escape;
use crate::layer::Compression;
use crate::reference::ImageRef;
use crate::registry::{self, RawManifest};
use crate::{Error, Result};

/// The archive opened, its image picked.
pub struct DockerArchive {
    pub(super) files: Files,
    /// The manifest made for it.
    pub(super) top: RawManifest,
    /// Where each blob is in the archive.
    pub(super) blobs: HashMap<Digest, String>,
    /// The name it is tagged with, if any (the one asked for, else its
    /// first).
    pub(super) reference: Option<ImageRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

impl DockerArchive {
    /// Open the archive in `files` and pick `image`.
    pub fn open(files: Files, image: Option<&ArchiveImage>) -> Result<DockerArchive> {
        let shown = escape::path(files.path()).to_string();
        let malformed = |reason: String| Error::Malformed {
            what: "docker archive".into(),
            digest: shown.clone(),
            reason,
        };
        let bytes = files
            .read("manifest.json", registry::MANIFEST_LIMIT)?
            .ok_or_else(|| {
                Error::Usage(format!("{shown}: not a docker-archive (no manifest.json)"))
            })?;
        let entries: Vec<Entry> =
            serde_json::from_slice(&bytes).map_err(|e| malformed(format!("manifest.json: {e}")))?;
        let tags_of = |entry: &Entry| -> Vec<ImageRef> {
            entry
                .repo_tags
                .iter()
                .flatten()
                .filter_map(|t| t.parse().ok())
                .collect()
        };
        let listing = || {
            entries
                .iter()
                .enumerate()
                .map(|(i, e)| {
                    let tags = e.repo_tags.clone().unwrap_or_default();
                    format!("@{i} ({})", escape::bytes(tags.join(" ").as_bytes()))
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let (entry, reference) = match image {
            Some(ArchiveImage::Index(i)) => {
                let entry = entries.get(*i).ok_or_else(|| Error::NotFound {
                    reference: format!("{shown}:@{i}"),
                    message: format!("the archive has {} images: {}", entries.len(), listing()),
                })?;
                (entry, tags_of(entry).into_iter().next())
            }
            Some(ArchiveImage::Name(wanted)) => {
                let found = entries
                    .iter()
                    .filter(|e| tags_of(e).contains(wanted))
                    .collect::<Vec<_>>();
                match found.as_slice() {
                    [one] => (*one, Some(wanted.clone())),
                    [] => {
                        return Err(Error::NotFound {
                            reference: format!("{shown}:{wanted}"),
                            message: format!("no image of that name; it has: {}", listing()),
                        });
                    }
                    _ => {
                        return Err(Error::Usage(format!(
                            "{shown}: several images are tagged {wanted}; pick one as docker-archive:PATH:@N ({})",
                            listing()
                        )));
                    }
                }
            }
            None => match entries.as_slice() {
                [one] => (one, tags_of(one).into_iter().next()),
                [] => return Err(malformed("manifest.json lists no images".into())),
                _ => {
                    return Err(Error::Usage(format!(
                        "{shown} holds {} images; pick one as docker-archive:PATH:NAME or :@N ({})",
                        entries.len(),
                        listing()
                    )));
                }
            },
        };

        let mut blobs = HashMap::new();
        let config_bytes = files
            .read(&entry.config, registry::CONFIG_LIMIT)?
            .ok_or_else(|| {
                malformed(format!(
                    "the config {} is missing",
                    escape::bytes(entry.config.as_bytes())
                ))
            })?;
        let config_digest = match digest_in_name(&entry.config) {
            Some(id) => {
                id.verify("config", &config_bytes)?;
                id
            }
            None => Digest::sha256_of(&config_bytes),
        };
        blobs.insert(config_digest.clone(), entry.config.clone());
        let diff_ids = diff_ids(&config_bytes, &config_digest)?;
        if diff_ids.len() != entry.layers.len() {
            return Err(malformed(format!(
                "{} layers but the config lists {} diff_ids",
                entry.layers.len(),
                diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (path, diff_id) in entry.layers.iter().zip(diff_ids) {
            let (mut reader, size) = files.open(path, u64::MAX)?.ok_or_else(|| {
                malformed(format!(
                    "layer {} is missing",
                    escape::bytes(path.as_bytes())
                ))
            })?;
            let mut head = [0u8; 4];
            let n = read_head(&mut reader, &mut head)
                .map_err(|e| Error::io(files.path().join(path), e))?;
            let compression = Compression::sniff(&head[..n]);
            let digest = match (digest_in_name(path), compression) {
                (Some(d), _) => d,
                // Its blob digest is its diff_id: verified as it streams.
                (None, Compression::None) => diff_id,
                (None, _) => hash(&files, path)?,
            };
            let media_type = match compression {
                Compression::None => "application/vnd.oci.image.layer.v1.tar",
                Compression::Gzip => "application/vnd.oci.image.layer.v1.tar+gzip",
                Compression::Zstd => "application/vnd.oci.image.layer.v1.tar+zstd",
            };
            layers.push(serde_json::json!({
                "mediaType": media_type,
                "digest": digest.to_string(),
                "size": size,
            }));
            blobs.insert(digest, path.clone());
        }
        let manifest = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": registry::OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest.to_string(),
                "size": config_bytes.len(),
            },
            "layers": layers,
        });
        let bytes = serde_json::to_vec(&manifest).map_err(|e| malformed(e.to_string()))?;
        Ok(DockerArchive {
            top: RawManifest {
                digest: Digest::sha256_of(&bytes),
                bytes: bytes.into(),
                media_type: registry::OCI_MANIFEST.into(),
            },
            files,
            blobs,
            reference,
        })
    }
}

/// The digest a file's name gives: `blobs/sha256/HEX` or `HEX.json`.
fn digest_in_name(path: &str) -> Option<Digest> {
    let hex = path
        .strip_prefix("blobs/sha256/")
        .or_else(|| path.strip_suffix(".json"))?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

fn diff_ids(config: &[u8], digest: &Digest) -> Result<Vec<Digest>> {
    #[derive(Deserialize)]
    struct Config {
        rootfs: RootFs,
    }
    #[derive(Deserialize)]
    struct RootFs {
        #[serde(default)]
        diff_ids: Vec<String>,
    }
    let parsed: Config = serde_json::from_slice(config).map_err(|e| Error::Malformed {
        what: "config".into(),
        digest: digest.to_string(),
        reason: e.to_string(),
    })?;
    parsed
        .rootfs
        .diff_ids
        .iter()
        .map(|d| Ok(Digest::parse(d)?))
        .collect()
}

fn read_head(reader: &mut impl Read, head: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// The sha256 of a member, read once.
fn hash(files: &Files, path: &str) -> Result<Digest> {
    let (mut reader, _) = files
        .open(path, u64::MAX)?
        .ok_or_else(|| super::layout::missing(files, "layer", &Digest::sha256_of(b"")))?;
    let mut hasher = Hasher::sha256();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Error::io(files.path().join(path), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finish())
}
