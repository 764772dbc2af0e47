//! Resolve a reference to one image: follow an index to the platform's
//! manifest, fetch the config, and list the layers with their diff_ids.
//! Manifest and config bytes are kept exactly as the registry sent them,
//! since their digests are the image's identity.

use oci_spec::image::{ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::platform::{self, Platform};
use crate::reference::ImageRef;
use crate::registry::{self, RawManifest};
use crate::source::Source;
use crate::{Error, Result};

/// One layer to fetch: the blob and what it must decompress to.
#[derive(Debug, Clone)]
pub struct LayerRef {
    /// Digest of the (compressed) blob.
    pub digest: Digest,
    /// Size of the blob in bytes, from the manifest.
    pub size: u64,
    /// The blob's media type (tells its compression).
    pub media_type: String,
    /// Digest of the uncompressed tar, from the config's rootfs.diff_ids.
    pub diff_id: Digest,
}

/// An image resolved to one platform, with everything verified but the layers.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// The name it was asked for by (a reference, or a transport name
    /// such as `oci:PATH:NAME`), for messages and reports.
    pub name: String,
    /// The registry-style name it goes by, for tags: the reference pulled,
    /// or the name an archive or layout records for it.
    pub reference: Option<ImageRef>,
    /// The index or manifest list the reference pointed at, if any.
    pub index: Option<RawManifest>,
    /// The image manifest.
    pub manifest: RawManifest,
    /// The config blob, byte for byte (its sha256 is the image ID).
    pub config_bytes: Vec<u8>,
    /// The config's digest: the image ID.
    pub config_digest: Digest,
    /// The parsed config.
    pub config: ImageConfiguration,
    /// Layers, lowest first.
    pub layers: Vec<LayerRef>,
}

impl ResolvedImage {
    /// Docker's familiar `name:tag` to tag it with in `docker load`-able
    /// outputs (none for an untagged or unnamed image).
    pub fn tags(&self) -> Vec<String> {
        self.reference
            .as_ref()
            .and_then(ImageRef::familiar_tagged)
            .into_iter()
            .collect()
    }

    /// The config's history, each entry that made a layer (not
    /// `empty_layer`) matched to the layers in order. `inspect --history`
    /// shows it; `check` reports a [`HistoryMatch::mismatch`].
    pub fn history_by_layer(&self) -> HistoryMatch {
        let history = self.config.history().clone().unwrap_or_default();
        let mut made = 0usize;
        let entries = history
            .into_iter()
            .map(|h| {
                let layer = (!h.empty_layer().unwrap_or(false)).then(|| {
                    made += 1;
                    made - 1
                });
                (h, layer.filter(|i| *i < self.layers.len()))
            })
            .collect();
        HistoryMatch {
            entries,
            made_layers: made,
            layers: self.layers.len(),
        }
    }

    /// The image's platform as its config states it.
    pub fn platform(&self) -> Platform {
        Platform::new(
            &self.config.os().to_string(),
            &self.config.architecture().to_string(),
            self.config.variant().as_deref(),
        )
    }
}

/// The config's history matched to the layers ([`ResolvedImage::history_by_layer`]).
#[derive(Debug, Clone)]
pub struct HistoryMatch {
    /// Every history entry, with the index of the layer it made (`None`
    /// for an empty-layer entry, or one past the last layer).
    pub entries: Vec<(oci_spec::image::History, Option<usize>)>,
    /// How many entries say they made a layer.
    pub made_layers: usize,
    /// How many layers the image has.
    pub layers: usize,
}

impl HistoryMatch {
    /// Why the history and the layers do not pair up, if they do not. An
    /// image without history has nothing to match (history is optional).
    pub fn mismatch(&self) -> Option<String> {
        (!self.entries.is_empty() && self.made_layers != self.layers).then(|| {
            format!(
                "the history has {} entries that made a layer, for {} layers",
                self.made_layers, self.layers
            )
        })
    }
}

/// Resolve the source's image for `wanted`.
pub async fn resolve(source: &Source, wanted: &Platform) -> Result<ResolvedImage> {
    let name = source.name();
    let top = source.top().await?;
    let (index, manifest) = if is_index(&top.media_type) {
        let child = select_child(&name, &top, wanted)?;
        let manifest = source.manifest(&child).await?;
        if is_index(&manifest.media_type) {
            return Err(Error::UnsupportedManifest {
                reference: format!("{name}@{child}"),
                media_type: manifest.media_type,
                reason: "an index nested in an index is not supported".into(),
            });
        }
        (Some(top), manifest)
    } else {
        (None, top)
    };
    let (config_digest, config_size) = config_of(&manifest.bytes, &manifest.digest)?;
    let config_bytes = source
        .blob_bytes(
            "config",
            &config_digest,
            config_size,
            registry::CONFIG_LIMIT,
        )
        .await?;
    let (config, layers) = describe(
        &manifest.bytes,
        &manifest.digest,
        &config_bytes,
        &config_digest,
    )?;
    Ok(ResolvedImage {
        name,
        reference: source.reference(),
        index,
        manifest,
        config_bytes,
        config_digest,
        config,
        layers,
    })
}

/// The config descriptor (digest, size) of an image manifest.
// Public only for the manifest fuzz target (fuzz/checks.rs).
#[doc(hidden)]
pub fn config_of(manifest: &[u8], manifest_digest: &Digest) -> Result<(Digest, u64)> {
    let parsed: ImageManifest = parse_json("manifest", manifest_digest, manifest)?;
    let config = parsed.config();
    Ok((Digest::parse(config.digest().as_ref())?, config.size()))
}

/// Parse an image manifest and its config into the config and the layer
/// list, checking they agree (one diff_id per layer, valid digests).
// Public only for the manifest fuzz target (fuzz/checks.rs).
#[doc(hidden)]
pub fn describe(
    manifest: &[u8],
    manifest_digest: &Digest,
    config: &[u8],
    config_digest: &Digest,
) -> Result<(ImageConfiguration, Vec<LayerRef>)> {
    let parsed: ImageManifest = parse_json("manifest", manifest_digest, manifest)?;
    let config: ImageConfiguration = parse_json("config", config_digest, config)?;
    let layers = layer_refs(&parsed, &config, manifest_digest)?;
    Ok((config, layers))
}

fn is_index(media_type: &str) -> bool {
    media_type == registry::OCI_INDEX || media_type == registry::DOCKER_MANIFEST_LIST
}

/// Pick the index entry for `wanted`; the error lists what the image has.
fn select_child(name: &str, index: &RawManifest, wanted: &Platform) -> Result<Digest> {
    let parsed: ImageIndex = parse_json("index", &index.digest, &index.bytes)?;
    let platforms: Vec<Option<Platform>> = parsed
        .manifests()
        .iter()
        .map(|m| {
            m.platform().as_ref().map(|p| {
                Platform::new(
                    &p.os().to_string(),
                    &p.architecture().to_string(),
                    p.variant().as_deref(),
                )
            })
        })
        .collect();
    match platform::select(wanted, &platforms) {
        Some(i) => Ok(Digest::parse(parsed.manifests()[i].digest().as_ref())?),
        None => {
            let mut available: Vec<String> = platforms
                .iter()
                .flatten()
                .filter(|p| p.os != "unknown")
                .map(|p| p.to_string())
                .collect();
            available.dedup();
            Err(Error::NoMatchingPlatform {
                reference: name.to_string(),
                wanted: wanted.to_string(),
                available: if available.is_empty() {
                    "(no platforms)".into()
                } else {
                    available.join(", ")
                },
            })
        }
    }
}

fn layer_refs(
    manifest: &ImageManifest,
    config: &ImageConfiguration,
    manifest_digest: &Digest,
) -> Result<Vec<LayerRef>> {
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::Malformed {
            what: "manifest".into(),
            digest: manifest_digest.to_string(),
            reason: format!(
                "{} layers but the config lists {} diff_ids",
                manifest.layers().len(),
                diff_ids.len()
            ),
        });
    }
    manifest
        .layers()
        .iter()
        .zip(diff_ids)
        .map(|(layer, diff_id)| {
            Ok(LayerRef {
                digest: Digest::parse(layer.digest().as_ref())?,
                size: layer.size(),
                media_type: layer.media_type().to_string(),
                diff_id: Digest::parse(diff_id)?,
            })
        })
        .collect()
}

fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    digest: &Digest,
    bytes: &[u8],
) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| Error::Malformed {
        what: what.into(),
        digest: digest.to_string(),
        reason: e.to_string(),
    })
}
