//! Integration-test harness: a real registry on loopback, and images built
//! in Rust and pushed to it over the registry HTTP API.
//!
//! Modules: [`registry`] (the process, raw GETs), [`image`] (layer and
//! image specs), [`push`] (pushing them: `Registry::push_*`, `PushedImage`),
//! [`busybox`] (a tiny runnable image), [`http`] (`Reply`).
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
//! ```
//!
//! The registry speaks plain HTTP. HTTP calls run on a thread of their own,
//! so the harness also works from `#[tokio::test]` functions.
#![allow(dead_code)]

pub mod busybox;
pub mod http;
pub mod image;
pub mod push;
pub mod registry;

/// `sha256:<hex>` of `bytes`, the digest form registries and configs use.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}
