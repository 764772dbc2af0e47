//! An OCI image layout (image-layout.md), as a directory (`oci:`) or a tar
//! of one (`oci-archive:`): `oci-layout`, `index.json`, `blobs/ALG/HEX`.
//! Which image of `index.json` is read: the one whose
//! `org.opencontainers.image.ref.name` (or containerd's
//! `io.containerd.image.name`) is the name asked for; without a name, the
//! only one, or, when every entry is an unnamed image of some platform,
//! the one for the platform asked for, as from an index.

use std::collections::HashMap;

use serde::Deserialize;

use super::files::Files;
use crate::digest::Digest;
use crate::escape;
use crate::reference::ImageRef;
use crate::registry::{self, RawManifest};
use crate::{Error, Result};

/// The annotation the image-spec gives an image's name in a layout.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd and BuildKit's full image name.
pub const CONTAINERD_NAME: &str = "io.containerd.image.name";

/// A layout opened, its image picked.
pub struct Layout {
    pub(super) files: Files,
    /// The manifest or index picked in `index.json`.
    pub(super) top: RawManifest,
    /// The registry-style name it carries, if any.
    pub(super) reference: Option<ImageRef>,
}

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: Option<String>,
    digest: String,
    size: u64,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    platform: Option<serde_json::Value>,
}

impl Descriptor {
    fn names(&self) -> impl Iterator<Item = &str> {
        [REF_NAME, CONTAINERD_NAME]
            .into_iter()
            .filter_map(|k| self.annotations.get(k).map(String::as_str))
    }

    /// Whether `wanted` names this image: its ref name exactly, or a
    /// reference that reads the same as one of its names.
    fn is_named(&self, wanted: &str) -> bool {
        let parsed = wanted.parse::<ImageRef>().ok();
        self.names()
            .any(|n| n == wanted || (parsed.is_some() && n.parse::<ImageRef>().ok() == parsed))
    }

    /// A name for tags: containerd's, else a ref name that is a full one.
    fn reference(&self) -> Option<ImageRef> {
        let full = self.annotations.get(CONTAINERD_NAME).or_else(|| {
            self.annotations
                .get(REF_NAME)
                .filter(|n| n.contains(['/', ':']))
        })?;
        full.parse().ok()
    }
}

impl Layout {
    /// Open the layout in `files` and pick the image named `image`.
    pub fn open(files: Files, image: Option<&str>) -> Result<Layout> {
        let not_layout = |reason: &str| Error::Malformed {
            what: "OCI layout".into(),
            digest: escape::path(files.path()).to_string(),
            reason: reason.into(),
        };
        let marker = files.read("oci-layout", 64 * 1024)?.ok_or_else(|| {
            Error::Usage(format!(
                "{}: not an OCI image layout (no oci-layout file)",
                escape::path(files.path())
            ))
        })?;
        let version: serde_json::Value =
            serde_json::from_slice(&marker).map_err(|e| not_layout(&format!("oci-layout: {e}")))?;
        match version.get("imageLayoutVersion").and_then(|v| v.as_str()) {
            Some(v) if v.starts_with("1.") => {}
            other => {
                return Err(not_layout(&format!(
                    "oci-layout: unsupported imageLayoutVersion {other:?}"
                )));
            }
        }
        let index_bytes = files
            .read("index.json", registry::MANIFEST_LIMIT)?
            .ok_or_else(|| not_layout("no index.json"))?;
        let index: Index = serde_json::from_slice(&index_bytes)
            .map_err(|e| not_layout(&format!("index.json: {e}")))?;
        let picked: Vec<&Descriptor> = match image {
            Some(name) => index
                .manifests
                .iter()
                .filter(|d| d.is_named(name))
                .collect(),
            None => index.manifests.iter().collect(),
        };
        let listing = || {
            let names: Vec<String> = index
                .manifests
                .iter()
                .filter_map(|d| d.names().next())
                .map(|n| escape::bytes(n.as_bytes()).to_string())
                .collect();
            if names.is_empty() {
                "(no named images)".to_string()
            } else {
                names.join(", ")
            }
        };
        let shown = escape::path(files.path()).to_string();
        let (top, reference) = match picked.as_slice() {
            [] => {
                return Err(match image {
                    Some(name) => Error::NotFound {
                        reference: format!("{shown}:{}", escape::bytes(name.as_bytes())),
                        message: format!("no such image in the layout; it has: {}", listing()),
                    },
                    None => not_layout("index.json lists no images"),
                });
            }
            [one] => (Self::manifest_of(&files, one)?, one.reference()),
            several
                if several.iter().all(|d| {
                    d.platform.is_some() && (image.is_some() || d.names().next().is_none())
                }) =>
            {
                // Images of several platforms under one name (or none):
                // index.json (or its entries so named) is the index.
                let entries: Vec<serde_json::Value> = several
                    .iter()
                    .map(|d| {
                        serde_json::json!({
                            "mediaType": d.media_type,
                            "digest": d.digest,
                            "size": d.size,
                            "platform": d.platform,
                        })
                    })
                    .collect();
                let bytes = serde_json::to_vec(&serde_json::json!({
                    "schemaVersion": 2,
                    "mediaType": registry::OCI_INDEX,
                    "manifests": entries,
                }))
                .map_err(|e| not_layout(&e.to_string()))?;
                let digest = Digest::sha256_of(&bytes);
                let reference = several[0].reference();
                (
                    RawManifest {
                        bytes: bytes.into(),
                        digest,
                        media_type: registry::OCI_INDEX.into(),
                    },
                    reference,
                )
            }
            _ => {
                return Err(Error::Usage(format!(
                    "{shown} holds several images; name one as oci:PATH:NAME (names: {})",
                    listing()
                )));
            }
        };
        Ok(Layout {
            files,
            top,
            reference,
        })
    }

    fn manifest_of(files: &Files, descriptor: &Descriptor) -> Result<RawManifest> {
        let digest = Digest::parse(&descriptor.digest)?;
        read_manifest(files, &digest)
    }
}

/// The path of a blob in a layout.
pub fn blob_path(digest: &Digest) -> String {
    let text = digest.to_string();
    let (algorithm, hex) = text.split_once(':').unwrap_or(("sha256", &text));
    format!("blobs/{algorithm}/{hex}")
}

/// A manifest or index blob of a layout, verified.
pub fn read_manifest(files: &Files, digest: &Digest) -> Result<RawManifest> {
    let bytes = read_blob(files, "manifest", digest, registry::MANIFEST_LIMIT)?;
    let media_type = registry::manifest_media_type(&bytes, &files.describe(&blob_path(digest)))?;
    Ok(RawManifest {
        bytes: bytes.into(),
        digest: digest.clone(),
        media_type,
    })
}

/// A small blob of a layout, whole, verified.
pub fn read_blob(
    files: &Files,
    what: &'static str,
    digest: &Digest,
    limit: u64,
) -> Result<Vec<u8>> {
    let path = blob_path(digest);
    let bytes = files
        .read(&path, limit)?
        .ok_or_else(|| missing(files, what, digest))?;
    digest.verify(what, &bytes)?;
    Ok(bytes)
}

/// The error for a blob the layout or archive lacks: a broken image.
pub fn missing(files: &Files, what: &str, digest: &Digest) -> Error {
    Error::Malformed {
        what: what.into(),
        digest: digest.to_string(),
        reason: format!("not in {}", escape::path(files.path())),
    }
}
