//! Writing an OCI image layout (image-layout.md): a directory (`oci:`),
//! new or existing, or a tar of one (`oci-archive:`).
//!
//! A new directory or archive is built under a temporary name and appears
//! whole on commit. An existing layout is added to under its lock
//! (a lock on the directory itself): blobs it has already are not
//! written again, new blobs are each written whole then renamed into
//! place, and `index.json` is replaced atomically at the end, so the new
//! image appears in one step. If the copy fails, the blobs it added are
//! removed again. An `oci-archive` is always written new (replacing a file
//! at that path on commit).

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{BufWriter, Read};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::catalog::{DirLock, write_atomic};
use super::docker_save::{self, CopyError, TarWriter};
use crate::digest::Digest;
use crate::escape;
use crate::output::Staged;
use crate::registry::{self, RawManifest};
use crate::{Error, Result};

/// The `oci-layout` file's content.
const LAYOUT_VERSION: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

/// A layout being written.
pub struct LayoutWriter {
    target: Target,
    /// The `org.opencontainers.image.ref.name` to give the image.
    name: Option<String>,
    /// The path asked for, for messages.
    path: PathBuf,
}

enum Target {
    /// A directory: new (staged) or existing (locked).
    Dir {
        root: PathBuf,
        staged: Option<Staged>,
        _lock: Option<DirLock>,
        /// Blobs this copy added to an existing layout: removed unless it
        /// commits.
        added: Vec<PathBuf>,
    },
    /// A tar, streamed.
    Tar {
        staged: Staged,
        tar: TarWriter<BufWriter<File>>,
        blobs: HashSet<Digest>,
    },
}

/// `blobs/ALG/HEX`.
fn blob_path(digest: &Digest) -> String {
    crate::source::blob_path(digest)
}

impl LayoutWriter {
    /// Start writing a layout at `path`, a tar of one if `archive`; the
    /// image will be named `name` in `index.json`.
    pub fn create(path: &Path, archive: bool, name: Option<String>) -> Result<LayoutWriter> {
        let target = if archive {
            let (staged, file) = Staged::file(path)?;
            let mut tar = TarWriter::new(BufWriter::with_capacity(1 << 20, file));
            tar.add_file("oci-layout", LAYOUT_VERSION)
                .map_err(|e| Error::io(staged.path(), e))?;
            Target::Tar {
                staged,
                tar,
                blobs: HashSet::new(),
            }
        } else if path.exists() {
            let is_empty_dir = fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .next()
                .is_none();
            if !is_empty_dir && !path.join("oci-layout").is_file() {
                return Err(Error::Usage(format!(
                    "{}: exists and is not an OCI image layout (no oci-layout file); give a new path, an empty directory or a layout",
                    escape::path(path)
                )));
            }
            let lock = DirLock::on_dir(path)?;
            Target::Dir {
                root: path.to_path_buf(),
                staged: None,
                _lock: Some(lock),
                added: Vec::new(),
            }
        } else {
            let staged = Staged::dir(path, false)?;
            Target::Dir {
                root: staged.path().to_path_buf(),
                staged: Some(staged),
                _lock: None,
                added: Vec::new(),
            }
        };
        Ok(LayoutWriter {
            target,
            name,
            path: path.to_path_buf(),
        })
    }

    /// The layout's path, as asked for.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the layout has this blob already (not written again).
    pub fn has_blob(&self, digest: &Digest) -> bool {
        match &self.target {
            Target::Dir { root, .. } => root.join(blob_path(digest)).is_file(),
            Target::Tar { blobs, .. } => blobs.contains(digest),
        }
    }

    /// Write a blob, streamed from `reader` (which verifies it: a failed
    /// check fails the read, and nothing of the blob is kept).
    pub fn put_blob(
        &mut self,
        digest: &Digest,
        reader: &mut dyn Read,
    ) -> std::result::Result<(), CopyError> {
        if self.has_blob(digest) {
            return Ok(());
        }
        let name = blob_path(digest);
        match &mut self.target {
            Target::Dir { root, added, .. } => {
                let path = root.join(&name);
                if let Some(parent) = path.parent() {
                    fs::create_dir_all(parent).map_err(CopyError::Write)?;
                }
                let (staged, file) = Staged::file(&path)
                    .map_err(|e| CopyError::Write(std::io::Error::other(e.to_string())))?;
                let mut out = BufWriter::with_capacity(1 << 20, file);
                docker_save::copy(reader, &mut out)?;
                out.into_inner()
                    .map_err(|e| CopyError::Write(e.into_error()))?
                    .sync_all()
                    .map_err(CopyError::Write)?;
                staged
                    .commit()
                    .map_err(|e| CopyError::Write(std::io::Error::other(e.to_string())))?;
                added.push(path);
            }
            Target::Tar { tar, blobs, .. } => {
                tar.add_stream(&name, |out| docker_save::copy(reader, out))?;
                blobs.insert(digest.clone());
            }
        }
        Ok(())
    }

    /// Write a small blob (a config, a manifest), verified already.
    pub fn put_bytes(&mut self, digest: &Digest, bytes: &[u8]) -> Result<()> {
        let path = self.path.clone();
        self.put_blob(digest, &mut &bytes[..]).map_err(|e| match e {
            CopyError::Read(e) | CopyError::Write(e) => Error::io(&path, e),
            CopyError::Tar(e) => Error::io(&path, std::io::Error::other(e)),
        })
    }

    /// Add `manifest` (written with [`LayoutWriter::put_bytes`]) to
    /// `index.json`, replacing an image of the same name, and make it all
    /// appear.
    pub fn commit(mut self, manifest: &RawManifest, platform: Option<Value>) -> Result<()> {
        let mut entry = json!({
            "mediaType": manifest.media_type,
            "digest": manifest.digest.to_string(),
            "size": manifest.bytes.len(),
        });
        if let Some(platform) = platform {
            entry["platform"] = platform;
        }
        if let Some(name) = &self.name {
            entry["annotations"] = json!({ crate::source::REF_NAME: name });
        }
        let target = std::mem::replace(
            &mut self.target,
            Target::Dir {
                root: PathBuf::new(),
                staged: None,
                _lock: None,
                added: Vec::new(),
            },
        );
        match target {
            Target::Dir {
                root,
                staged,
                _lock,
                mut added,
            } => {
                let index_path = root.join("index.json");
                let mut index = match fs::read(&index_path) {
                    Ok(bytes) => {
                        serde_json::from_slice::<Value>(&bytes).map_err(|e| Error::Malformed {
                            what: "OCI layout".into(),
                            digest: escape::path(&index_path).to_string(),
                            reason: e.to_string(),
                        })?
                    }
                    Err(_) => json!({
                        "schemaVersion": 2,
                        "mediaType": registry::OCI_INDEX,
                        "manifests": [],
                    }),
                };
                add_entry(&mut index, entry, self.name.as_deref());
                if !root.join("oci-layout").is_file() {
                    write_atomic(&root.join("oci-layout"), LAYOUT_VERSION)?;
                }
                write_atomic(&index_path, &to_json(&index))?;
                added.clear();
                if let Some(staged) = staged {
                    staged.commit()?;
                }
                Ok(())
            }
            Target::Tar {
                staged, mut tar, ..
            } => {
                let mut index = json!({
                    "schemaVersion": 2,
                    "mediaType": registry::OCI_INDEX,
                    "manifests": [],
                });
                add_entry(&mut index, entry, None);
                let tmp = staged.path().to_path_buf();
                tar.add_file("index.json", &to_json(&index))
                    .map_err(|e| Error::io(&tmp, e))?;
                let out = tar.finish().map_err(|e| Error::io(&tmp, e))?;
                out.into_inner()
                    .map_err(|e| Error::io(&tmp, e.into_error()))?
                    .sync_all()
                    .map_err(|e| Error::io(&tmp, e))?;
                staged.commit()
            }
        }
    }
}

impl Drop for LayoutWriter {
    fn drop(&mut self) {
        // Not committed: take back what was added to an existing layout
        // (a staged one removes itself).
        if let Target::Dir { added, .. } = &self.target {
            for path in added {
                let _ = fs::remove_file(path);
            }
        }
    }
}

/// Append `entry` to the index, dropping entries with the same name.
fn add_entry(index: &mut Value, entry: Value, name: Option<&str>) {
    if !index["manifests"].is_array() {
        index["manifests"] = json!([]);
    }
    if let Some(list) = index["manifests"].as_array_mut() {
        if let Some(name) = name {
            list.retain(|m| m["annotations"][crate::source::REF_NAME].as_str() != Some(name));
        }
        list.push(entry);
    }
}

fn to_json(value: &Value) -> Vec<u8> {
    // Serialising a Value built in memory cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}
