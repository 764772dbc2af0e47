//! Pushing images, indexes and raw blobs/manifests over the registry API.

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::http::{Reply, Request};
use super::image::{Format, ImageSpec, PlatformSpec};
use super::registry::Registry;
use super::sha256_digest;

/// What [`Registry::push_image`] stored, for tests to compare against.
#[derive(Debug, Clone)]
pub struct PushedImage {
    /// `sha256:` of `manifest_bytes`.
    pub manifest_digest: String,
    /// The manifest exactly as pushed.
    pub manifest_bytes: Vec<u8>,
    /// The manifest's media type (also its `Content-Type` on push).
    pub manifest_media_type: String,
    /// `sha256:` of `config_bytes`.
    pub config_digest: String,
    /// The config blob exactly as pushed.
    pub config_bytes: Vec<u8>,
    /// Digests of the (compressed) layer blobs, lowest layer first.
    pub layer_digests: Vec<String>,
    /// Digests of the uncompressed tars (the true ones, even if the config
    /// was edited to say otherwise).
    pub diff_ids: Vec<String>,
    /// The uncompressed tars, lowest layer first.
    pub layer_tars: Vec<Vec<u8>>,
    /// Annotations for this image's entry when it goes into an index
    /// (set for attestation manifests).
    pub index_annotations: BTreeMap<String, String>,
}

impl Registry {
    /// Pushes `image`'s layers, config and manifest as `repo:tag` (an empty
    /// `tag` pushes the manifest by digest only).
    pub fn push_image(&self, repo: &str, tag: &str, image: &ImageSpec) -> PushedImage {
        let format = image.format;
        let mut layer_descriptors = Vec::new();
        let mut pushed = PushedImage {
            manifest_digest: String::new(),
            manifest_bytes: Vec::new(),
            manifest_media_type: format.manifest_media_type().to_string(),
            config_digest: String::new(),
            config_bytes: Vec::new(),
            layer_digests: Vec::new(),
            diff_ids: Vec::new(),
            layer_tars: Vec::new(),
            index_annotations: BTreeMap::new(),
        };
        for layer in &image.layers {
            let built = layer.build();
            self.upload(repo, &built.blob, &built.digest);
            let media_type = layer.media_type_in(format);
            layer_descriptors.push(descriptor(&media_type, &built.digest, built.blob.len()));
            pushed.layer_digests.push(built.digest.clone());
            pushed.diff_ids.push(built.diff_id.clone());
            pushed.layer_tars.push(built.tar.clone());
        }
        pushed.config_bytes = to_bytes(&image.config_json(&pushed.diff_ids));
        pushed.config_digest = self.push_blob(repo, &pushed.config_bytes);
        let config = descriptor(
            format.config_media_type(),
            &pushed.config_digest,
            pushed.config_bytes.len(),
        );
        let mut manifest = json!({
            "schemaVersion": 2,
            "mediaType": format.manifest_media_type(),
            "config": config,
            "layers": layer_descriptors,
        });
        image.edit_manifest_json(&mut manifest);
        pushed.manifest_bytes = to_bytes(&manifest);
        let reference = tag_or_digest(tag, &pushed.manifest_bytes);
        pushed.manifest_digest = self.push_manifest_raw(
            repo,
            &reference,
            &pushed.manifest_media_type,
            &pushed.manifest_bytes,
        );
        pushed
    }

    /// Pushes a Docker manifest list or OCI index over images already in
    /// `repo` as `repo:tag` (empty `tag`: by digest only); returns the index digest. Each entry's
    /// descriptor gets that platform and the image's `index_annotations`.
    pub fn push_index(
        &self,
        repo: &str,
        tag: &str,
        format: Format,
        entries: &[(PlatformSpec, &PushedImage)],
    ) -> String {
        let manifests: Vec<Value> = entries
            .iter()
            .map(|(platform, image)| {
                let mut entry = descriptor(
                    &image.manifest_media_type,
                    &image.manifest_digest,
                    image.manifest_bytes.len(),
                );
                entry["platform"] = platform.to_json();
                if !image.index_annotations.is_empty() {
                    entry["annotations"] = json!(image.index_annotations);
                }
                entry
            })
            .collect();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": format.index_media_type(),
            "manifests": manifests,
        });
        let bytes = to_bytes(&index);
        let reference = tag_or_digest(tag, &bytes);
        self.push_manifest_raw(repo, &reference, format.index_media_type(), &bytes)
    }

    /// Pushes a BuildKit-style attestation manifest for `subject` (an OCI
    /// manifest with an in-toto layer). Put it in an index under
    /// `PlatformSpec::parse("unknown/unknown")`; its `index_annotations`
    /// carry `vnd.docker.reference.type: attestation-manifest` and the
    /// subject's digest. `layer_tars` holds the in-toto JSON (not a tar).
    pub fn push_attestation(&self, repo: &str, subject: &PushedImage) -> PushedImage {
        let statement = to_bytes(&json!({
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": "https://spdx.dev/Document",
            "subject": [{ "name": "test", "digest": { "sha256": &subject.manifest_digest[7..] } }],
            "predicate": {},
        }));
        let layer_digest = self.push_blob(repo, &statement);
        let config_bytes = to_bytes(&json!({
            "architecture": "unknown",
            "os": "unknown",
            "config": {},
            "rootfs": { "type": "layers", "diff_ids": [&layer_digest] },
        }));
        let config_digest = self.push_blob(repo, &config_bytes);
        let mut layer = descriptor(
            "application/vnd.in-toto+json",
            &layer_digest,
            statement.len(),
        );
        layer["annotations"] = json!({ "in-toto.io/predicate-type": "https://spdx.dev/Document" });
        let format = Format::Oci;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": format.manifest_media_type(),
            "config": descriptor(format.config_media_type(), &config_digest, config_bytes.len()),
            "layers": [layer],
        });
        let manifest_bytes = to_bytes(&manifest);
        let digest = sha256_digest(&manifest_bytes);
        let media_type = format.manifest_media_type();
        let manifest_digest = self.push_manifest_raw(repo, &digest, media_type, &manifest_bytes);
        let index_annotations = BTreeMap::from([
            (
                "vnd.docker.reference.type".to_string(),
                "attestation-manifest".to_string(),
            ),
            (
                "vnd.docker.reference.digest".to_string(),
                subject.manifest_digest.clone(),
            ),
        ]);
        PushedImage {
            manifest_digest,
            manifest_bytes,
            manifest_media_type: media_type.to_string(),
            config_digest,
            config_bytes,
            layer_digests: vec![layer_digest.clone()],
            diff_ids: vec![layer_digest],
            layer_tars: vec![statement],
            index_annotations,
        }
    }

    /// Uploads `bytes` as a blob of `repo` (monolithic upload); returns its digest.
    pub fn push_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        self.upload(repo, bytes, &digest);
        digest
    }

    /// Like [`Registry::push_manifest_raw`] but returns the registry's
    /// answer instead of insisting on success. This registry refuses
    /// schema1 (400 `MANIFEST_INVALID`, "missing signature key"), unknown
    /// manifest media types, and blobs it does not hold; it accepts unknown
    /// *layer* media types and wrong descriptor sizes.
    pub fn try_push_manifest_raw(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Reply {
        let mut put = Request::new(
            "PUT",
            format!("{}/v2/{repo}/manifests/{reference}", self.url()),
        );
        put.headers.push(("Content-Type", media_type.to_string()));
        put.body = Some(bytes.to_vec());
        self.send(put)
    }

    /// Writes manifest `bytes` straight into storage as `repo:tag`,
    /// bypassing the registry's validation: the way to serve a schema1
    /// manifest (the registry then serves it, signed on the fly, as
    /// `application/vnd.docker.distribution.manifest.v1+prettyjws` when
    /// asked with `Accept: application/vnd.docker.distribution.manifest.v1+json`).
    /// Manifests whose `mediaType` it does not know are answered with 500.
    /// Returns the digest of `bytes`.
    pub fn put_manifest_in_storage(&self, repo: &str, tag: &str, bytes: &[u8]) -> String {
        let digest = sha256_digest(bytes);
        let hex = &digest["sha256:".len()..];
        let write = |path: PathBuf, contents: &[u8]| {
            fs::create_dir_all(path.parent().expect("parent dir")).expect("create storage dir");
            fs::write(&path, contents).expect("write into registry storage");
        };
        write(self.blob_path(&digest), bytes);
        let manifests = self
            .storage_dir()
            .join("docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests");
        let link = digest.as_bytes();
        write(
            manifests.join("revisions/sha256").join(hex).join("link"),
            link,
        );
        let tag_dir = manifests.join("tags").join(tag);
        write(tag_dir.join("current/link"), link);
        write(tag_dir.join("index/sha256").join(hex).join("link"), link);
        digest
    }

    /// Uploads `bytes` under the (already computed) `digest`.
    fn upload(&self, repo: &str, bytes: &[u8], digest: &str) {
        let start = self.send(Request::new(
            "POST",
            format!("{}/v2/{repo}/blobs/uploads/", self.url()),
        ));
        assert_eq!(start.status, 202, "start upload to {repo}: {start:?}");
        let location = start
            .header("location")
            .unwrap_or_else(|| panic!("upload to {repo}: no Location header"));
        let mut url = if location.starts_with('/') {
            format!("{}{location}", self.url())
        } else {
            location.to_string()
        };
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&format!("digest={digest}"));
        let mut put = Request::new("PUT", url);
        put.headers
            .push(("Content-Type", "application/octet-stream".to_string()));
        put.body = Some(bytes.to_vec());
        let done = self.send(put);
        assert_eq!(
            done.status, 201,
            "finish upload of {digest} to {repo}: {done:?}"
        );
    }

    /// PUTs `bytes` as manifest `repo:reference` with `Content-Type:
    /// media_type`, exactly as given; returns its digest. Panics (with the
    /// registry's answer) if the registry refuses it.
    pub fn push_manifest_raw(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> String {
        let reply = self.try_push_manifest_raw(repo, reference, media_type, bytes);
        assert_eq!(
            reply.status,
            201,
            "push manifest {repo}:{reference}: {}",
            String::from_utf8_lossy(&reply.body)
        );
        let digest = sha256_digest(bytes);
        if let Some(stated) = reply.header("docker-content-digest") {
            assert_eq!(stated, digest, "registry digested the manifest differently");
        }
        digest
    }
}

/// The manifest reference to push under: the tag, or the digest if none.
fn tag_or_digest(tag: &str, manifest: &[u8]) -> String {
    if tag.is_empty() {
        sha256_digest(manifest)
    } else {
        tag.to_string()
    }
}

fn descriptor(media_type: &str, digest: &str, size: usize) -> Value {
    json!({ "mediaType": media_type, "digest": digest, "size": size })
}

/// Compact JSON, keys sorted (serde_json's default map), so bytes are stable.
fn to_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(value).expect("serialise JSON")
}
