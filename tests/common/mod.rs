//! Integration-test harness: a real registry on loopback, and images built
//! in Rust and pushed to it over the registry HTTP API.
//!
//! Modules: [`registry`] (the process, raw GETs), [`image`] (layer and
//! image specs), [`push`] (pushing them: `Registry::push_*`, `PushedImage`),
//! [`busybox`] (a tiny runnable image), [`http`] (`Reply`), [`fake`] (a
//! scripted server, alone or in front of a registry, for faults the real
//! registry will not produce), [`golang`] (Go reference programs, built
//! offline: `golang::tarlist()`).
//!
//! Every test crate includes this with `mod common;` and uses part of it,
//! hence the crate-wide `dead_code` allowance below. (Items are reached
//! through their modules, not re-exported: an unused re-export warns.)
//!
//! ```ignore
//! mod common;
//! use common::busybox::busybox_image;
//! use common::image::{Compression, Format, ImageSpec, LayerSpec, PlatformSpec};
//! use common::registry::Registry;
//!
//! let registry = Registry::start(); // own process, own port, own storage
//! let image = busybox_image().layer(
//!     LayerSpec::new()
//!         .file("etc/motd", b"hi\n", 0o644)
//!         .owner(1000, 1000)
//!         .whiteout("bin/ls")
//!         .compression(Compression::Zstd),
//! );
//! let pushed = registry.push_image("test/busybox", "latest", &image);
//! let reference = registry.image_ref("test/busybox", "latest"); // "127.0.0.1:PORT/test/busybox:latest"
//!
//! // Multi-platform: push each image by digest (empty tag), then the index.
//! let arm = registry.push_image("test/multi", "", &busybox_image().platform("linux/arm/v7"));
//! let amd = registry.push_image("test/multi", "", &busybox_image());
//! let attestation = registry.push_attestation("test/multi", &amd);
//! registry.push_index("test/multi", "latest", Format::Oci, &[
//!     (PlatformSpec::parse("linux/arm/v7"), &arm),
//!     (PlatformSpec::parse("linux/amd64"), &amd),
//!     (PlatformSpec::parse("unknown/unknown"), &attestation),
//! ]);
//!
//! // Faults: a scripted server in front of the registry.
//! use common::fake::{Canned, FakeServer};
//! let fake = FakeServer::in_front_of(&registry);
//! let blob = format!("/v2/test/busybox/blobs/{}", pushed.layer_digests[0]);
//! fake.on("GET", &blob, vec![Canned::new(500, "oops"), Canned::forward()]);
//! let through_fake = fake.image_ref("test/busybox", "latest");
//! ```
//!
//! Facts about this registry (docker-registry 2.8) that tests rely on are
//! proven in tests/harness.rs: it serves tampered blobs as they are on disk;
//! it converts a Docker schema2 manifest (or list) fetched *by tag* to a
//! signed schema1 unless `Accept` lists the schema2 (list) type; it answers
//! 404 for an OCI manifest unless `Accept` lists the OCI type; it refuses
//! pushes of schema1 and unknown manifest media types.
//!
//! The registry speaks plain HTTP. HTTP calls run on a thread of their own,
//! so the harness also works from `#[tokio::test]` functions. Layer bytes
//! are cached per process (compressing busybox takes ~1 s in debug builds).
#![allow(dead_code)]

pub mod busybox;
pub mod cli;
pub mod fake;
pub mod golang;
pub mod http;
pub mod image;
pub mod push;
pub mod registry;
pub mod tree;

/// `sha256:<hex>` of `bytes`, the digest form registries and configs use.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
