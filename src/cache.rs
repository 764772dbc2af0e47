//! A content-addressed blob cache shared by every command. A blob is
//! published in the cache only once its download verified (digest and
//! size), and a cached copy is hashed again before it is trusted: a
//! damaged copy is removed and fetched afresh. Entries appear by atomic
//! rename, so concurrent processes can share one cache. The cache never
//! fails a pull: when it cannot be written, occystrap goes on without it.
//!
//! Beside each blob the cache may remember the diff_id its content
//! decompressed to, recorded only after that was checked. Decompression is
//! a function of the blob's bytes (and its media type, which can choose
//! the decompressor), so as long as the bytes are verified against the
//! blob's digest on use, the diff_id needs no second hashing of the
//! uncompressed layer.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::digest::Digest;
use crate::leftovers::{self, Held};
use crate::{Error, Result};

/// A blob cache rooted at a directory (`blobs/<algorithm>/<hex>`,
/// `diff_ids/<algorithm>/<hex>`, `tmp/`).
#[derive(Debug, Clone)]
pub struct BlobCache {
    root: PathBuf,
}

/// What [`BlobCache::prune`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    /// Blobs removed.
    pub removed: u64,
    /// Bytes freed.
    pub freed: u64,
    /// Bytes still cached.
    pub kept: u64,
}

impl BlobCache {
    /// Open (creating if need be) the cache at `root`, and remove the
    /// temporaries killed processes left in its `tmp/`.
    pub fn open(root: &Path) -> Result<BlobCache> {
        for dir in [root.join("blobs"), root.join("tmp")] {
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let cache = BlobCache {
            root: root.to_path_buf(),
        };
        cache.remove_stale_temporaries();
        Ok(cache)
    }

    /// `$XDG_CACHE_HOME/occystrap`, else `~/.cache/occystrap`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = match std::env::var_os("XDG_CACHE_HOME") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ => PathBuf::from(std::env::var_os("HOME")?).join(".cache"),
        };
        Some(base.join("occystrap"))
    }

    /// The cache's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<area>/<algorithm>/<hex>` under the root.
    fn path_in(&self, area: &str, digest: &Digest) -> PathBuf {
        let text = digest.to_string();
        let algorithm = text.split(':').next().unwrap_or("sha256");
        self.root.join(area).join(algorithm).join(digest.hex())
    }

    fn entry(&self, digest: &Digest) -> PathBuf {
        self.path_in("blobs", digest)
    }

    fn diff_id_entry(&self, blob: &Digest) -> PathBuf {
        self.path_in("diff_ids", blob)
    }

    /// The diff_id recorded for `blob` read as `media_type`, if any. It
    /// holds for content decompressed from bytes that match `blob`: trust
    /// it only once those bytes were (or will be, before the layer counts
    /// as complete) checked against the digest.
    pub fn diff_id(&self, blob: &Digest, media_type: &str) -> Option<Digest> {
        let record = fs::read_to_string(self.diff_id_entry(blob)).ok()?;
        let (recorded_type, diff_id) = record.trim_end().rsplit_once(' ')?;
        if recorded_type != media_type {
            return None;
        }
        Digest::parse(diff_id).ok()
    }

    /// Record that `blob`, read as `media_type`, decompressed to content
    /// whose digest checked out as `diff_id`. Only for a cached blob; a
    /// failure to record is ignored (the next use hashes again).
    pub fn remember_diff_id(&self, blob: &Digest, size: u64, media_type: &str, diff_id: &Digest) {
        if !self.contains(blob, size) || media_type.contains(['\n', ' ']) {
            return;
        }
        let target = self.diff_id_entry(blob);
        let written = target
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| self.temporary(blob))
            .and_then(|(mut file, tmp, held)| {
                let done = file
                    .write_all(format!("{media_type} {diff_id}\n").as_bytes())
                    .and_then(|()| fs::rename(&tmp, &target));
                if done.is_err() {
                    let _ = fs::remove_file(&tmp);
                }
                drop(held);
                done
            });
        if let Err(e) = written {
            tracing::debug!("not recording the diff_id of {blob}: {e}");
        }
    }

    /// A new file under a fresh name in `tmp/`, to be renamed into place
    /// when done, and its lock (held while this process writes it: the
    /// sweep of `tmp/` removes only files nobody holds).
    fn temporary(&self, digest: &Digest) -> io::Result<(File, PathBuf, Held)> {
        for _ in 0..8 {
            let tmp = self.root.join("tmp").join(format!(
                "{}.{}.{}",
                digest.hex(),
                std::process::id(),
                crate::output::unique_suffix()
            ));
            let file = File::options()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&tmp)?;
            // None: swept in the instant before the lock; try a new name.
            if let Some(held) = leftovers::hold(&tmp, file.try_clone()?)? {
                return Ok((file, tmp, held));
            }
        }
        Err(io::Error::other("its temporary kept being removed"))
    }

    /// Whether a copy of the right size is cached (not verified: see [`BlobCache::get`]).
    pub fn contains(&self, digest: &Digest, size: u64) -> bool {
        fs::metadata(self.entry(digest)).is_ok_and(|m| m.len() == size)
    }

    /// A cached copy of the blob, verified (size and digest) before it is
    /// returned, open at its start; a damaged copy is removed. `None` when
    /// there is none. The handle is the one that was verified, and
    /// published entries are never written again, so its bytes need no
    /// second check.
    pub fn get(&self, digest: &Digest, size: u64) -> Option<File> {
        let path = self.entry(digest);
        let mut file = File::open(&path).ok()?;
        if !matches!(file.metadata(), Ok(m) if m.len() == size)
            || !hash_matches(&mut file, digest)
            || file.rewind().is_err()
        {
            tracing::warn!("cached {digest} is damaged: removing it and fetching it again");
            let _ = fs::remove_file(&path);
            return None;
        }
        // Its mtime records the last use, for pruning.
        let _ = file.set_modified(SystemTime::now());
        Some(file)
    }

    /// A writer that publishes the blob when committed; `None` (with a
    /// warning) when the cache cannot be written.
    pub(crate) fn writer(&self, digest: &Digest) -> Option<CacheWriter> {
        let target = self.entry(digest);
        let created = target
            .parent()
            .map_or(Ok(()), fs::create_dir_all)
            .and_then(|()| self.temporary(digest));
        match created {
            Ok((file, tmp, held)) => Some(CacheWriter {
                file: Some(BufWriter::with_capacity(256 * 1024, file)),
                tmp,
                target,
                _held: held,
            }),
            Err(e) => {
                tracing::warn!(
                    "not caching {digest}: {}: {e}",
                    self.root.join("tmp").display()
                );
                None
            }
        }
    }

    /// How many blobs are cached, and their bytes. Changes nothing.
    pub fn usage(&self) -> Result<(usize, u64)> {
        let entries = self.entries()?;
        Ok((entries.len(), entries.iter().map(|(_, len, _)| len).sum()))
    }

    /// Remove the least recently used blobs until at most `max_bytes` stay
    /// cached (0 empties the cache), and leftover temporaries.
    pub fn prune(&self, max_bytes: u64) -> Result<PruneReport> {
        let mut entries = self.entries()?;
        entries.sort();
        let mut report = PruneReport {
            kept: entries.iter().map(|(_, len, _)| len).sum(),
            ..PruneReport::default()
        };
        for (_, len, path) in entries {
            if report.kept <= max_bytes {
                break;
            }
            fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
            // Its diff_id record sits at the same place under diff_ids/.
            if let Ok(name) = path.strip_prefix(self.root.join("blobs")) {
                let _ = fs::remove_file(self.root.join("diff_ids").join(name));
            }
            report.removed += 1;
            report.freed += len;
            report.kept -= len;
        }
        self.remove_stale_temporaries();
        Ok(report)
    }

    /// Every cached blob: (last use, size, path).
    fn entries(&self) -> Result<Vec<(SystemTime, u64, PathBuf)>> {
        let mut entries = Vec::new();
        let blobs = self.root.join("blobs");
        for algorithm in fs::read_dir(&blobs).map_err(|e| Error::io(&blobs, e))? {
            let dir = algorithm.map_err(|e| Error::io(&blobs, e))?.path();
            for blob in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
                let path = blob.map_err(|e| Error::io(&dir, e))?.path();
                let meta = fs::metadata(&path).map_err(|e| Error::io(&path, e))?;
                let used = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
                entries.push((used, meta.len(), path));
            }
        }
        Ok(entries)
    }

    /// Temporaries killed processes left behind: those no live process
    /// holds (a download in progress holds its own).
    fn remove_stale_temporaries(&self) {
        leftovers::sweep(&self.root.join("tmp"), |_| true);
    }
}

fn hash_matches(file: &mut File, digest: &Digest) -> bool {
    let mut hasher = digest.hasher();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(_) => return false,
        }
    }
    hasher.check("cached blob", digest).is_ok()
}

/// A blob being written into the cache; published by [`CacheWriter::commit`],
/// removed if dropped before.
pub(crate) struct CacheWriter {
    file: Option<BufWriter<File>>,
    tmp: PathBuf,
    target: PathBuf,
    /// Released after the temporary is renamed or removed (fields drop
    /// after `Drop::drop`).
    _held: Held,
}

impl CacheWriter {
    /// Append bytes. A failure (disk full) abandons caching, not the pull.
    pub fn write(&mut self, bytes: &[u8]) {
        if let Some(file) = self.file.as_mut()
            && let Err(e) = file.write_all(bytes)
        {
            tracing::warn!("not caching {}: {e}", self.target.display());
            self.file = None;
        }
    }

    /// Publish the blob; call only once it verified. Returns the published
    /// copy open at its start (`None` if caching failed).
    pub fn commit(mut self) -> Option<File> {
        let file = self.file.take()?;
        let published = file
            .into_inner()
            .map_err(io::IntoInnerError::into_error)
            .and_then(|mut file| {
                fs::rename(&self.tmp, &self.target)?;
                file.rewind()?;
                Ok(file)
            });
        published
            .inspect_err(|e| tracing::warn!("not caching {}: {e}", self.target.display()))
            .ok()
    }
}

impl Drop for CacheWriter {
    fn drop(&mut self) {
        // After a commit the temporary is gone already.
        let _ = fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(cache: &BlobCache, bytes: &[u8]) -> Digest {
        let digest = Digest::sha256_of(bytes);
        let mut w = cache.writer(&digest).unwrap();
        w.write(bytes);
        let mut published = String::new();
        w.commit().unwrap().read_to_string(&mut published).unwrap();
        assert_eq!(
            published.as_bytes(),
            bytes,
            "commit hands back the copy, from its start"
        );
        digest
    }

    #[test]
    fn stores_verifies_and_prunes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(dir.path()).unwrap();
        let a = put(&cache, b"first blob");
        let b = put(&cache, b"second blob!");
        let mut got = String::new();
        cache.get(&a, 10).unwrap().read_to_string(&mut got).unwrap();
        assert_eq!(got, "first blob");
        assert!(cache.get(&a, 11).is_none(), "wrong size is a miss");
        // The size mismatch removed it: a damaged entry is never trusted.
        assert!(cache.get(&a, 10).is_none());

        fs::write(cache.entry(&b), b"second blob?").unwrap();
        assert!(cache.get(&b, 12).is_none(), "damaged content is a miss");
        assert!(!cache.entry(&b).exists());

        let c = put(&cache, b"third");
        let d = put(&cache, b"fourth");
        let old = SystemTime::now() - std::time::Duration::from_secs(100);
        File::options()
            .write(true)
            .open(cache.entry(&c))
            .unwrap()
            .set_modified(old)
            .unwrap();
        let report = cache.prune(6).unwrap();
        assert_eq!(
            report,
            PruneReport {
                removed: 1,
                freed: 5,
                kept: 6
            }
        );
        assert!(cache.get(&d, 6).is_some() && cache.get(&c, 5).is_none());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn diff_ids_are_recorded_per_blob_and_media_type() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(dir.path()).unwrap();
        let blob = put(&cache, b"layer blob");
        let diff_id = Digest::sha256_of(b"layer");
        let gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
        assert_eq!(cache.diff_id(&blob, gzip), None);
        cache.remember_diff_id(&blob, 10, gzip, &diff_id);
        assert_eq!(cache.diff_id(&blob, gzip), Some(diff_id.clone()));
        // Another media type may decompress the same bytes differently.
        assert_eq!(
            cache.diff_id(&blob, "application/vnd.oci.image.layer.v1.tar"),
            None
        );

        // Nothing is recorded for a blob the cache does not hold.
        let absent = Digest::sha256_of(b"absent");
        cache.remember_diff_id(&absent, 6, gzip, &diff_id);
        assert_eq!(cache.diff_id(&absent, gzip), None);
        // A damaged record is no record.
        fs::write(cache.diff_id_entry(&blob), format!("{gzip} sha256:12\n")).unwrap();
        assert_eq!(cache.diff_id(&blob, gzip), None);

        cache.remember_diff_id(&blob, 10, gzip, &diff_id);
        cache.prune(0).unwrap();
        assert!(!cache.diff_id_entry(&blob).exists(), "pruned with its blob");
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn uncommitted_writes_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(dir.path()).unwrap();
        let digest = Digest::sha256_of(b"x");
        let mut w = cache.writer(&digest).unwrap();
        w.write(b"x");
        drop(w);
        assert!(cache.get(&digest, 1).is_none());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }

    #[test]
    fn opening_sweeps_what_no_live_writer_holds() {
        let dir = tempfile::tempdir().unwrap();
        let cache = BlobCache::open(dir.path()).unwrap();
        let digest = Digest::sha256_of(b"x");
        // A live download (this test), and what a killed one left.
        let mut live = cache.writer(&digest).unwrap();
        live.write(b"x");
        let dead = dir.path().join("tmp").join(format!("{}.1.0", digest.hex()));
        fs::write(&dead, b"half").unwrap();
        let again = BlobCache::open(dir.path()).unwrap();
        assert!(!dead.exists());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 1);
        // The live download is intact and publishes as ever.
        live.commit().unwrap();
        assert!(again.get(&digest, 1).is_some());
        assert_eq!(fs::read_dir(dir.path().join("tmp")).unwrap().count(), 0);
    }
}
