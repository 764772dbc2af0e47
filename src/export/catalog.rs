//! The catalog of a shared image directory (`--use-unique-names`):
//! `catalog.json` maps each image and tag to its manifest file, config and
//! layers. Writers serialise on an exclusive `flock` of
//! `catalog.json.lock` and replace the catalog by rename, so readers never
//! see a half-written catalog and concurrent writers never lose an entry.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::output::Staged;
use crate::reference::ImageRef;
use crate::{Error, Result};

/// File name of the catalog inside a shared directory.
pub const CATALOG: &str = "catalog.json";
/// File locked by writers around the catalog's read-modify-write.
pub const LOCK: &str = "catalog.json.lock";
/// A catalog larger than this is not one occystrap wrote.
const CATALOG_LIMIT: u64 = 64 * 1024 * 1024;

/// Image name → tag → entry. Sorted, so the file is stable.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Catalog {
    /// The images, by the name [`key_of`] gives.
    pub images: BTreeMap<String, BTreeMap<String, CatalogEntry>>,
}

/// One image and tag in a shared directory. Paths are relative to it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The docker-save manifest of this image:
    /// `manifest-<image with / as _>-<tag>.json`.
    pub manifest: String,
    /// The config blob, `<config hex>.json` (its sha256 is the image ID).
    pub config: String,
    /// `<diff_id hex>/layer.tar` per layer, lowest first.
    pub layers: Vec<String>,
    /// The full reference it was pulled by.
    pub reference: String,
    /// The registry's manifest digest for it.
    pub manifest_digest: String,
}

/// The catalog's image name and tag for `reference`: Docker's familiar
/// repository name (`busybox`, `user/app`, `quay.io/org/app`,
/// `localhost:5000/app`) and the tag — or the digest when it has no tag.
pub fn key_of(reference: &ImageRef) -> (String, String) {
    let tag = match &reference.tag {
        Some(tag) => tag.clone(),
        None => reference.reference_string().to_string(),
    };
    (reference.familiar_repository(), tag)
}

/// `manifest-<image with / as _>-<tag>`: the stem of the manifest file
/// (`.json`) and of the merged filesystem directory (`--expand`).
pub fn manifest_stem(image: &str, tag: &str) -> String {
    format!("manifest-{}-{tag}", image.replace('/', "_"))
}

impl Catalog {
    /// Read `DIR/catalog.json`; an absent catalog is an empty one.
    pub fn load(dir: &Path) -> Result<Catalog> {
        let path = dir.join(CATALOG);
        match fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Catalog::default()),
            Err(e) => return Err(Error::io(&path, e)),
            Ok(meta) if meta.len() > CATALOG_LIMIT => {
                return Err(malformed(&path, "larger than 64 MiB"));
            }
            Ok(_) => {}
        }
        let bytes = fs::read(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_slice(&bytes).map_err(|e| malformed(&path, &e.to_string()))
    }

    /// Replace `DIR/catalog.json` atomically. Call with [`DirLock`] held.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).map_err(|e| Error::Usage(e.to_string()))?;
        bytes.push(b'\n');
        write_atomic(&dir.join(CATALOG), &bytes)
    }

    /// The entry for `image` and `tag`.
    pub fn get(&self, image: &str, tag: &str) -> Option<&CatalogEntry> {
        self.images.get(image)?.get(tag)
    }

    /// Add or replace an entry. Refused when another image and tag already
    /// use the same manifest file (names that differ only in `/` vs `_`).
    pub fn insert(&mut self, image: &str, tag: &str, entry: CatalogEntry) -> Result<()> {
        if let Some((other, _)) = self
            .all()
            .find(|(key, e)| e.manifest == entry.manifest && *key != format!("{image}:{tag}"))
        {
            return Err(Error::Usage(format!(
                "{image}:{tag}: its manifest file {} is already used by {other}",
                entry.manifest
            )));
        }
        self.images
            .entry(image.to_string())
            .or_default()
            .insert(tag.to_string(), entry);
        Ok(())
    }

    /// Every `image:tag` with its entry, sorted.
    pub fn all(&self) -> impl Iterator<Item = (String, &CatalogEntry)> {
        self.images.iter().flat_map(|(image, tags)| {
            tags.iter()
                .map(move |(tag, entry)| (format!("{image}:{tag}"), entry))
        })
    }
}

/// An exclusive lock on a shared directory's catalog, released on drop.
pub struct DirLock {
    _lock: Flock<File>,
}

impl DirLock {
    /// Block until this process holds the lock of `dir`.
    pub fn acquire(dir: &Path) -> Result<DirLock> {
        let path = dir.join(LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        DirLock::lock(file, &path)
    }

    /// Block until this process holds a lock on the directory itself: for
    /// directories whose format has no room for a lock file of ours (an
    /// OCI layout).
    pub fn on_dir(dir: &Path) -> Result<DirLock> {
        let file = File::open(dir).map_err(|e| Error::io(dir, e))?;
        DirLock::lock(file, dir)
    }

    fn lock(mut file: File, path: &Path) -> Result<DirLock> {
        loop {
            match Flock::lock(file, FlockArg::LockExclusive) {
                Ok(lock) => return Ok(DirLock { _lock: lock }),
                Err((f, Errno::EINTR)) => file = f,
                Err((_, errno)) => return Err(Error::io(path, errno.into())),
            }
        }
    }
}

/// Write `bytes` to `target` under a temporary name and rename it into
/// place, so readers see the old file or the new one, never a part.
pub fn write_atomic(target: &Path, bytes: &[u8]) -> Result<()> {
    let (staged, mut file) = Staged::file(target)?;
    file.write_all(bytes)
        .map_err(|e| Error::io(staged.path(), e))?;
    staged.commit()
}

/// The image ID named by a config file name `<hex>.json`.
pub fn config_digest(name: &str) -> Option<Digest> {
    let hex = name.strip_suffix(".json")?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// The diff_id named by a layer path `<hex>/layer.tar`.
pub fn layer_diff_id(name: &str) -> Option<Digest> {
    let hex = name.strip_suffix("/layer.tar")?;
    Digest::parse(&format!("sha256:{hex}")).ok()
}

/// Whether `name` is a plain file name inside the directory (no `/`, not
/// hidden, not `..`): catalogs are data, never paths to follow.
pub fn is_plain_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.starts_with('.') && !name.contains('\0')
}

fn malformed(path: &Path, reason: &str) -> Error {
    Error::Malformed {
        what: "catalog".into(),
        digest: path.display().to_string(),
        reason: reason.into(),
    }
}

/// `DIR/catalog.json`, for messages.
pub fn catalog_path(dir: &Path) -> PathBuf {
    dir.join(CATALOG)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(manifest: &str) -> CatalogEntry {
        CatalogEntry {
            manifest: manifest.into(),
            config: "c.json".into(),
            layers: vec![],
            reference: "r".into(),
            manifest_digest: "d".into(),
        }
    }

    #[test]
    fn keys_and_names() {
        let r: ImageRef = "busybox:1.36".parse().unwrap();
        assert_eq!(key_of(&r), ("busybox".into(), "1.36".into()));
        let r = ImageRef::from_parts(Some("quay.io"), "org/app", "latest").unwrap();
        assert_eq!(key_of(&r).0, "quay.io/org/app");
        for spelling in ["busybox", "library/busybox", "docker.io/library/busybox"] {
            let r = ImageRef::from_parts(None, spelling, "1.36").unwrap();
            assert_eq!(key_of(&r), ("busybox".into(), "1.36".into()), "{spelling}");
        }
        assert_eq!(
            manifest_stem("homeassistant/home-assistant", "latest"),
            "manifest-homeassistant_home-assistant-latest"
        );
        let digest = format!("sha256:{}", "a".repeat(64));
        let r: ImageRef = format!("localhost:5000/x@{digest}").parse().unwrap();
        assert_eq!(key_of(&r), ("localhost:5000/x".into(), digest));
    }

    #[test]
    fn round_trips_and_refuses_colliding_manifest_names() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Catalog::load(dir.path()).unwrap(), Catalog::default());
        let mut c = Catalog::default();
        c.insert("a/b", "1", entry("manifest-a_b-1.json")).unwrap();
        c.insert("a/b", "1", entry("manifest-a_b-1.json")).unwrap();
        assert!(c.insert("a_b", "1", entry("manifest-a_b-1.json")).is_err());
        c.save(dir.path()).unwrap();
        assert_eq!(Catalog::load(dir.path()).unwrap(), c);
        fs::write(dir.path().join(CATALOG), b"{not json").unwrap();
        assert!(matches!(
            Catalog::load(dir.path()),
            Err(Error::Malformed { .. })
        ));
    }

    #[test]
    fn names_are_validated() {
        let hex = "b".repeat(64);
        assert!(config_digest(&format!("{hex}.json")).is_some());
        assert!(layer_diff_id(&format!("{hex}/layer.tar")).is_some());
        assert!(layer_diff_id(&format!("../{hex}/layer.tar")).is_none());
        assert!(config_digest("../x.json").is_none());
        assert!(is_plain_name("manifest-a-1.json"));
        assert!(!is_plain_name("../etc/passwd") && !is_plain_name(".."));
    }
}
