//! The layer store: each layer unpacked once, in overlayfs's own form,
//! into a directory keyed by its chain ID (as containerd's snapshots are),
//! so that a bundle's `rootfs/` can be an overlay mount of the image's
//! stored layers, made in milliseconds, with the container's writes kept
//! in the bundle.
//!
//! A layer is applied onto an overlay mount whose lower directories are
//! the layers below it and whose upper directory is the new layer's: the
//! same unpacking engine as for copy bundles (confinement, exact metadata)
//! does the work, and the kernel records what it does in overlayfs's form.
//! A removed path becomes a 0/0 character device, a directory made anew
//! over a lower one is marked `trusted.overlay.opaque`, an implicit parent
//! directory is copied up with the lower one's metadata, and a hardlink to
//! a lower file copies it up first, so both names are one file, as in a
//! copy bundle. A layer is staged and renamed into place only when
//! complete, so a half-unpacked layer is never used; a crashed run's
//! staging is swept by the next.
//!
//! Overlay mounts name their lower directories by `/proc/self/fd/N` of
//! descriptors held open for the call: whatever the store's path, an image
//! of a hundred layers stays well within the one page the kernel allows
//! for the mount options.
//!
//! Several processes share a store: making a bundle holds a shared lock
//! while it ensures the layers and records a lease (which bundle uses which
//! layers); `prune` holds it exclusively, and frees only layers no live
//! bundle leases.
//!
//! Root stores overlayfs's metadata in `trusted.overlay.*` xattrs. An
//! unprivileged user, as root of a user namespace of their own (see
//! [`crate::userns`]), mounts with `userxattr` and gets `user.overlay.*`,
//! every file their own. The two cannot read each other's layers, so a
//! store records which kind it is and refuses the other.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg, OFlag};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::digest::{Digest, Hasher};
use crate::fsroot::{self, RootDir};
use crate::image::ResolvedImage;
use crate::output::Staged;
use crate::source::Source;
use crate::unpack::{self, UnpackOptions};
use crate::{Error, Result, pull};

/// The store's directory layout.
const LAYERS: &str = "layers";
const LEASES: &str = "leases";
const SCRATCH: &str = "scratch";
const LOCK: &str = "lock";
/// Which xattrs the store's layers keep overlayfs's metadata in.
const XATTRS: &str = "xattrs";

/// Overlay options for every mount: no index (each bundle's upper is its
/// own), no redirects or metacopy (an upper directory stays a complete,
/// self-contained record of its changes). `userxattr` implies the last two
/// (and refuses `redirect_dir=off`, which may mean "follow").
const OVERLAY_OPTIONS: &str = "index=off,redirect_dir=off,metacopy=off";
const OVERLAY_OPTIONS_USER: &str = "index=off,userxattr";

/// A layer store on this machine.
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

/// The store's shared lock, held while a bundle is being made.
pub struct Held {
    _lock: Flock<File>,
}

/// A stored layer, for `store info`.
#[derive(Debug, Clone)]
pub struct StoredLayer {
    /// Its chain ID.
    pub chain_id: String,
    /// Bytes of its files.
    pub bytes: u64,
    /// Bundles leasing it.
    pub bundles: Vec<PathBuf>,
}

/// What [`Store::prune`] did.
#[derive(Debug, Clone, Default)]
pub struct Pruned {
    /// Layers removed.
    pub removed: usize,
    /// Bytes freed.
    pub freed: u64,
    /// Layers kept because a bundle uses them.
    pub leased: usize,
}

/// The chain IDs of an image's layers, lowest first (image-spec config.md:
/// the first is its diff_id, each next `sha256(parent + " " + diff_id)`).
pub fn chain_ids(image: &ResolvedImage) -> Vec<Digest> {
    let mut chains: Vec<Digest> = Vec::with_capacity(image.layers.len());
    for layer in &image.layers {
        let chain = match chains.last() {
            None => layer.diff_id.clone(),
            Some(parent) => {
                let mut h = Hasher::sha256();
                h.update(format!("{parent} {}", layer.diff_id).as_bytes());
                h.finish()
            }
        };
        chains.push(chain);
    }
    chains
}

impl Store {
    /// Open (creating if need be) the store at `root`, and clear what
    /// killed runs left: their mounts and scratch, their staged layers.
    pub fn open(root: &Path) -> Result<Store> {
        for dir in [LAYERS, LEASES, SCRATCH] {
            let dir = root.join(dir);
            fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        let store = Store {
            root: root.to_path_buf(),
        };
        store.check_kind()?;
        store.sweep_scratch();
        crate::leftovers::sweep(&root.join(LAYERS), crate::leftovers::is_staged_name);
        Ok(store)
    }

    /// Record which xattrs this store's layers use, or check that they are
    /// the ones this process's overlay mounts use.
    fn check_kind(&self) -> Result<()> {
        let want = xattr_kind();
        let path = self.root.join(XATTRS);
        let have = match fs::read_to_string(&path) {
            Ok(have) => have,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Layers stored before the kind was recorded are root's.
                let stored = fs::read_dir(self.root.join(LAYERS))
                    .map_err(|e| Error::io(self.root.join(LAYERS), e))?
                    .next()
                    .is_some();
                let kind = if stored { "trusted" } else { want };
                // Written whole, then linked into place: another process
                // never reads it half-written, and the first to link wins.
                let tmp = self.root.join(format!(".{XATTRS}.{}", std::process::id()));
                fs::write(&tmp, kind).map_err(|e| Error::io(&tmp, e))?;
                let linked = fs::hard_link(&tmp, &path);
                let _ = fs::remove_file(&tmp);
                match linked {
                    // Another process recorded it meanwhile: read theirs.
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(Error::io(&path, e)),
                }
                fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?
            }
            Err(e) => return Err(Error::io(&path, e)),
        };
        match have.trim() {
            have if have == want => Ok(()),
            "trusted" => Err(Error::Usage(format!(
                "{}: this layer store was made by root (trusted.overlay xattrs), which a user namespace cannot read; give this unprivileged process a store of its own (--store DIR)",
                crate::escape::path(&self.root)
            ))),
            _ => Err(Error::Usage(format!(
                "{}: this layer store was made by an unprivileged user (user.overlay xattrs, every file that user's), not an image's owners; give root another store (--store DIR)",
                crate::escape::path(&self.root)
            ))),
        }
    }

    /// Scratch of processes that are gone: unmount (their overlay may still
    /// be mounted), then remove. Named `PID-…`: a live PID's is left alone.
    fn sweep_scratch(&self) {
        let dir = self.root.join(SCRATCH);
        let Ok(entries) = fs::read_dir(&dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let pid = name
                .to_str()
                .and_then(|n| n.split('-').next())
                .and_then(|p| p.parse::<i32>().ok());
            let alive = pid.is_some_and(|pid| {
                !matches!(
                    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                    Err(nix::errno::Errno::ESRCH)
                )
            });
            if alive {
                continue;
            }
            let mountpoint = entry.path().join("m");
            if is_mountpoint(&mountpoint) && unmount(&mountpoint).is_err() {
                continue;
            }
            let _ = fsroot::remove_all(&entry.path());
        }
    }

    /// Next to the blob cache: `$XDG_CACHE_HOME/occystrap/store`, else
    /// `~/.cache/occystrap/store`.
    pub fn default_dir() -> Option<PathBuf> {
        crate::cache::BlobCache::default_dir().map(|d| d.join("store"))
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn layer_dir(&self, chain: &Digest) -> PathBuf {
        self.root.join(LAYERS).join(chain.hex())
    }

    fn lock(&self, exclusive: bool) -> Result<Flock<File>> {
        let path = self.root.join(LOCK);
        let mut file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        let how = if exclusive {
            FlockArg::LockExclusive
        } else {
            FlockArg::LockShared
        };
        loop {
            match Flock::lock(file, how) {
                Ok(lock) => return Ok(lock),
                Err((f, nix::errno::Errno::EINTR)) => file = f,
                Err((_, errno)) => return Err(Error::io(&path, errno.into())),
            }
        }
    }

    /// Make sure every layer of `image` is stored (unpacking those that
    /// are not, lowest first, verified as for a bundle), lease them to the
    /// bundle at `bundle`, and return their directories, lowest first,
    /// with the store's shared lock: hold it until the bundle exists (its
    /// `config.json` is what makes the lease live for `prune`).
    pub async fn ensure(
        &self,
        source: &Source,
        image: &ResolvedImage,
        bundle: &Path,
        opts: &UnpackOptions,
        progress: &crate::progress::Progress,
    ) -> Result<(Vec<PathBuf>, Held)> {
        let lock = Held {
            _lock: self.lock(false)?,
        };
        let chains = chain_ids(image);
        let dirs: Vec<PathBuf> = chains.iter().map(|c| self.layer_dir(c)).collect();
        let missing: Vec<usize> = (0..dirs.len()).filter(|&i| !dirs[i].is_dir()).collect();
        if !missing.is_empty() {
            let mut subset = image.clone();
            subset.layers = missing.iter().map(|&i| image.layers[i].clone()).collect();
            let unpack_opts = UnpackOptions {
                limits: source.layer_limits(),
                ..opts.clone()
            };
            let (store, all) = (self.clone(), dirs.clone());
            let order = std::sync::Mutex::new(missing.clone().into_iter());
            pull::each_layer(source, &subset, progress, (), move |(), layer, reader| {
                let i = order
                    .lock()
                    .ok()
                    .and_then(|mut o| o.next())
                    .ok_or_else(|| Error::Usage("internal error: layer order".into()))?;
                store.apply(&all[..i], &all[i], reader, &unpack_opts, &layer.digest)
            })
            .await?;
        }
        self.lease(bundle, &chains)?;
        Ok((dirs, lock))
    }

    /// Unpack one layer into `target`, over `lowers` (lowest first).
    fn apply(
        &self,
        lowers: &[PathBuf],
        target: &Path,
        reader: &mut pull::LayerReader,
        opts: &UnpackOptions,
        digest: &Digest,
    ) -> Result<()> {
        if target.is_dir() {
            // Another process stored it meanwhile: read through, verified.
            std::io::copy(reader, &mut std::io::sink()).map_err(|e| reader.classify(e))?;
            return Ok(());
        }
        let staged = Staged::private_dir(target, false)?;
        let applied = if lowers.is_empty() {
            // The lowest layer has nothing below it to copy up or hide.
            let root = RootDir::open(staged.path()).map_err(|e| Error::io(staged.path(), e))?;
            unpack::apply_layer(&root, reader, opts)
        } else {
            let scratch = Scratch::new(&self.root.join(SCRATCH))?;
            // `volatile`: no sync of the upper at unmount. A stored layer
            // is as durable as a copy bundle's files (neither is synced),
            // and the sync cost more than the unpacking.
            let mount = Overlay::mount_with(
                &scratch.mountpoint,
                lowers,
                staged.path(),
                &scratch.work,
                ",volatile",
            )?;
            let root = RootDir::open(&mount.target).map_err(|e| Error::io(&mount.target, e))?;
            let applied = unpack::apply_layer(&root, reader, opts);
            drop(root);
            mount.unmount()?;
            applied
        };
        let stats = applied.map_err(|e| e.into_error(&digest.to_string()))?;
        stats.warn_skipped();
        // Never over one another process stored meanwhile (the same
        // content, and maybe mounted already): ours is dropped then.
        staged.commit_if_absent().map(drop)
    }

    fn lease_path(&self, bundle: &Path) -> PathBuf {
        let key = Digest::sha256_of(bundle.as_os_str().as_encoded_bytes());
        self.root.join(LEASES).join(format!("{}.json", key.hex()))
    }

    /// Record that the bundle at `bundle` uses `chains`.
    fn lease(&self, bundle: &Path, chains: &[Digest]) -> Result<()> {
        let value = serde_json::json!({
            "bundle": bundle.to_string_lossy(),
            "layers": chains.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        });
        let bytes = serde_json::to_vec(&value).map_err(|e| Error::Usage(e.to_string()))?;
        crate::export::catalog::write_atomic(&self.lease_path(bundle), &bytes)
    }

    /// Forget the bundle at `bundle`'s lease.
    pub fn release(&self, bundle: &Path) -> Result<()> {
        let path = self.lease_path(bundle);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&path, e)),
        }
    }

    /// Live leases: chain ID → bundles. A lease whose bundle is gone is
    /// stale: removed when `sweep`.
    fn leases(&self, sweep: bool) -> Result<BTreeMap<String, Vec<PathBuf>>> {
        let dir = self.root.join(LEASES);
        let mut leased: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let path = entry.map_err(|e| Error::io(&dir, e))?.path();
            let Ok(bytes) = fs::read(&path) else { continue };
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
                continue;
            };
            let bundle = PathBuf::from(value["bundle"].as_str().unwrap_or_default());
            if !bundle.join("config.json").is_file() {
                if sweep {
                    let _ = fs::remove_file(&path);
                }
                continue;
            }
            for chain in value["layers"].as_array().into_iter().flatten() {
                if let Some(chain) = chain.as_str() {
                    let hex = chain.trim_start_matches("sha256:").to_string();
                    leased.entry(hex).or_default().push(bundle.clone());
                }
            }
        }
        Ok(leased)
    }

    /// Every stored layer, with its size and the bundles leasing it.
    pub fn info(&self) -> Result<Vec<StoredLayer>> {
        let leases = self.leases(false)?;
        let mut layers = Vec::new();
        for (hex, path, _) in self.stored()? {
            layers.push(StoredLayer {
                chain_id: format!("sha256:{hex}"),
                bytes: tree_bytes(&path),
                bundles: leases.get(&hex).cloned().unwrap_or_default(),
            });
        }
        Ok(layers)
    }

    /// Stored layers: (chain hex, directory, last modified).
    fn stored(&self) -> Result<Vec<(String, PathBuf, i64)>> {
        let dir = self.root.join(LAYERS);
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))? {
            let entry = entry.map_err(|e| Error::io(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            // Staged layers (`.NAME.occystrap-…`) are not stored yet.
            if name.starts_with('.') {
                continue;
            }
            let mtime = entry.metadata().map(|m| m.mtime()).unwrap_or(0);
            out.push((name, entry.path(), mtime));
        }
        out.sort();
        Ok(out)
    }

    /// Remove layers no live bundle leases, least recently stored first,
    /// until what is left is at most `max_bytes` (`0`: all of them).
    pub fn prune(&self, max_bytes: u64) -> Result<Pruned> {
        let _lock = self.lock(true)?;
        let leased: HashSet<String> = self.leases(true)?.into_keys().collect();
        let mut report = Pruned::default();
        let mut candidates = Vec::new();
        let mut total = 0;
        for (hex, path, mtime) in self.stored()? {
            let bytes = tree_bytes(&path);
            total += bytes;
            if leased.contains(&hex) {
                report.leased += 1;
            } else {
                candidates.push((mtime, path, bytes));
            }
        }
        candidates.sort();
        for (_, path, bytes) in candidates {
            if max_bytes > 0 && total <= max_bytes {
                break;
            }
            fsroot::remove_all(&path).map_err(|e| Error::io(&path, e))?;
            total -= bytes;
            report.removed += 1;
            report.freed += bytes;
        }
        Ok(report)
    }
}

impl Store {
    /// Copy the merged tree of `lowers` (stored layers, lowest first) into
    /// `dest`, an empty directory, as `merged::copy` does: read from the
    /// layer directories themselves, merged as overlayfs would, with every
    /// file's data cloned where the filesystem can. The copy uses nothing
    /// of the store after. `name` is what a failure message calls `dest`.
    pub fn copy_merged(&self, lowers: &[PathBuf], dest: &Path, name: &Path) -> Result<()> {
        crate::merged::copy(dest, lowers, xattr_kind()).map_err(|e| Error::io(name, e))
    }
}

/// Bytes of the regular files under `dir` (not following symlinks).
fn tree_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                todo.push(entry.path());
            } else if meta.is_file() {
                total += meta.len();
            }
        }
    }
    total
}

/// A mountpoint and an overlay work directory for one apply, removed after.
struct Scratch {
    dir: PathBuf,
    mountpoint: PathBuf,
    work: PathBuf,
}

impl Scratch {
    fn new(parent: &Path) -> Result<Scratch> {
        let dir = parent.join(format!(
            "{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
        ));
        let (mountpoint, work) = (dir.join("m"), dir.join("w"));
        for d in [&dir, &mountpoint, &work] {
            fs::create_dir(d).map_err(|e| Error::io(d, e))?;
        }
        Ok(Scratch {
            dir,
            mountpoint,
            work,
        })
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fsroot::remove_all(&self.dir);
    }
}

/// An overlay mount, unmounted when dropped (unless [`Overlay::keep`]).
pub struct Overlay {
    /// Where it is mounted.
    pub target: PathBuf,
    mounted: bool,
}

impl Overlay {
    /// Mount at `target` an overlay of `lowers` (lowest first) with
    /// `upper` and `work` (an empty directory on the upper's filesystem).
    pub fn mount(target: &Path, lowers: &[PathBuf], upper: &Path, work: &Path) -> Result<Overlay> {
        Overlay::mount_with(target, lowers, upper, work, "")
    }

    /// [`Overlay::mount`] with more options (`,`-separated).
    fn mount_with(
        target: &Path,
        lowers: &[PathBuf],
        upper: &Path,
        work: &Path,
        extra: &str,
    ) -> Result<Overlay> {
        let open = |p: &Path| -> Result<OwnedFd> {
            nix::fcntl::open(
                p,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::io(p, e.into()))
        };
        // Held open until the mount is made: the kernel resolves these
        // names during the call.
        let lower_fds: Vec<OwnedFd> = lowers
            .iter()
            .rev()
            .map(|p| open(p))
            .collect::<Result<_>>()?;
        let (upper_fd, work_fd) = (open(upper)?, open(work)?);
        let name = |fd: &OwnedFd| format!("/proc/self/fd/{}", fd.as_raw_fd());
        let lowerdir: Vec<String> = lower_fds.iter().map(name).collect();
        let upperdir = format!(",upperdir={},workdir={}", name(&upper_fd), name(&work_fd));
        let options = if xattr_kind() == "user" {
            OVERLAY_OPTIONS_USER
        } else {
            OVERLAY_OPTIONS
        };
        let data = format!("lowerdir={}{upperdir},{options}{extra}", lowerdir.join(":"));
        nix::mount::mount(
            Some("overlay"),
            target,
            Some("overlay"),
            MsFlags::empty(),
            Some(data.as_str()),
        )
        .map_err(|errno| Error::Overlay {
            path: target.to_path_buf(),
            layers: lowers.len(),
            errno,
        })?;
        Ok(Overlay {
            target: target.to_path_buf(),
            mounted: true,
        })
    }

    /// Leave it mounted (a bundle's rootfs outlives this process).
    pub fn keep(mut self) {
        self.mounted = false;
    }

    /// Unmount now, reporting failure.
    pub fn unmount(mut self) -> Result<()> {
        self.mounted = false;
        unmount(&self.target)
    }
}

impl Drop for Overlay {
    fn drop(&mut self) {
        if self.mounted {
            let _ = unmount(&self.target);
        }
    }
}

/// `trusted` for root in the initial user namespace, else `user`
/// (`userxattr`): an unprivileged user's store, used from the user
/// namespace [`crate::userns::enter`] makes, or inspected from outside it.
fn xattr_kind() -> &'static str {
    if crate::userns::initial() && nix::unistd::geteuid().is_root() {
        "trusted"
    } else {
        "user"
    }
}

/// Unmount `target`; lazily if it is busy (a process still inside: the
/// mount goes when it leaves, and nothing new can enter).
pub fn unmount(target: &Path) -> Result<()> {
    match nix::mount::umount2(target, MntFlags::empty()) {
        Ok(()) => Ok(()),
        Err(nix::errno::Errno::EBUSY) => nix::mount::umount2(target, MntFlags::MNT_DETACH)
            .map_err(|e| Error::io(target, e.into())),
        Err(e) => Err(Error::io(target, e.into())),
    }
}

/// Unmount (lazily) every mount at or below `dir`, deepest first: what a
/// killed process left mounted in a directory about to be removed.
pub fn unmount_under(dir: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(table) = fs::read("/proc/self/mountinfo") else {
        return;
    };
    // mountinfo names mountpoints absolute, symlinks resolved.
    let Ok(dir) = fs::canonicalize(dir) else {
        return;
    };
    let mut points: Vec<PathBuf> = table
        .split(|&b| b == b'\n')
        .filter_map(|line| line.split(|&b| b == b' ').nth(4))
        .map(|field| PathBuf::from(std::ffi::OsStr::from_bytes(&unescape_octal(field))))
        .filter(|point| point.starts_with(&dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for point in points {
        let _ = nix::mount::umount2(&point, MntFlags::MNT_DETACH);
    }
}

/// mountinfo's escaping of a path: `\ooo` (octal) for space, tab,
/// newline and backslash.
fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                out.push(d.iter().fold(0u8, |n, c| n.wrapping_mul(8) + (c - b'0')));
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// Whether `path` is a mountpoint (a different device from its parent).
pub fn is_mountpoint(path: &Path) -> bool {
    let (Ok(meta), Some(parent)) = (fs::symlink_metadata(path), path.parent()) else {
        return false;
    };
    fs::metadata(parent).is_ok_and(|p| p.dev() != meta.dev())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape_octal(br"/a\040b\011c\134d"), b"/a b\tc\\d");
        assert_eq!(unescape_octal(br"/x\04"), br"/x\04");
        assert_eq!(unescape_octal(br"/x\9999"), br"/x\9999");
    }
}
