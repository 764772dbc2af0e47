//! Apply one layer's tar entries to a root directory, as the OCI image
//! spec's `layer.md` says.
//!
//! Entries are read by our own tar reader ([`crate::tar`], Go's
//! archive/tar as the reference); every filesystem change goes through
//! [`RootDir`], which resolves parents inside the root and never follows
//! the final component.
//!
//! # Rules
//! - An entry replaces whatever is at its path, except a directory over a
//!   directory, which only updates owner, mode, times and xattrs. A file is
//!   replaced by unlink and create, so its former hardlink peers keep the
//!   old content.
//! - Missing parent directories are created (0755, owned by the caller, no
//!   ACL), at the target of a symlink on the way too.
//! - Owners are the header's numeric ids (`lchown` semantics); the mode is
//!   set after the owner (chown clears setuid), xattrs (PAX
//!   `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*`, `security.capability`
//!   included) after both, times last.
//! - Every entry gets exactly the xattrs and ACLs its header carries: the
//!   ACL the kernel gives a new child of a directory with a default ACL is
//!   removed (before the chmod, so the mode is the header's), and a
//!   directory declared again loses the xattrs its new header lacks (the
//!   spec: they are replaced). The host's security labels
//!   (`security.selinux` and the like) are left alone.
//! - Sparse files (GNU tar's old and PAX formats) are written with their
//!   holes as holes. Regular (`0`), contiguous (`7`) and old GNU sparse
//!   (`S`) entries are files; a type flag the spec does not know is
//!   refused, as Docker and containerd refuse it.
//! - Directories are created owner-writable; their real mode and times are
//!   applied at the end of the layer, after their contents, so read-only
//!   directories still receive the layer's files.
//! - Whiteouts (`.wh.NAME`, opaque `.wh..wh..opq`) remove content of lower
//!   layers only, wherever they sit in the tar: the paths this layer has
//!   written are remembered and spared. Names match exactly. A whiteout of
//!   an absent path does nothing. Other `.wh..wh.*` names are aufs
//!   bookkeeping and are skipped.
//!
//! # Hostile layers: refused or confined
//! | what the layer tries | outcome |
//! | --- | --- |
//! | `..` climbing above the root (entry, hardlink target, whiteout) | refused: [`UnpackError::Hostile`] |
//! | a name holding a NUL byte | refused: [`UnpackError::Hostile`] |
//! | a non-directory entry at the root itself (`./`) | refused: [`UnpackError::Hostile`] |
//! | absolute entry path `/x` | confined: written at `<root>/x` |
//! | `a/../b` | confined: cleaned to `b` |
//! | a path through a symlink (absolute, relative, chained; from any layer) | confined: resolved as if the root were `/` (so `var/run -> /run` then `var/run/x` writes `<root>/run/x`) |
//! | a path through a symlink whose in-root target is missing (`var/run -> /run`, no `/run`) | confined: the missing directories are made inside the root (0755), as Docker and containerd make them; a `..` that climbs back out of a missing name is taken by the names, so nothing is made that the path only passes through |
//! | a path through a file, a symlink to a file or a symlink loop | refused: [`UnpackError::Malformed`], naming the file or the loop and the symlink that led there |
//! | a name longer than NAME_MAX or a path longer than PATH_MAX | refused: [`UnpackError::Malformed`] |
//! | an entry at a path holding a symlink | confined: the symlink is replaced, its target untouched |
//! | hardlink to `/abs` or through symlinks | confined: the target is looked up inside the root; a missing target (a dangling symlink on the way included) or a directory fails with [`UnpackError::Malformed`] |
//! | hardlink to a symlink | confined: links the symlink itself |
//! | whiteout through a symlink | confined: resolved inside the root; the final name is removed, never followed |
//! | names with control characters or bytes that are not UTF-8 | applied as written; every message shows them escaped ([`crate::escape`]) |
//! | a tree thousands of directories deep | applied; removing it (a whiteout, a replacement) needs a few descriptors, not one per level |
//!
//! # Not root
//! Owners are kept only when asked (default: when running as root).
//! Device nodes that cannot be created for lack of privilege are skipped,
//! and so are xattrs the filesystem or the caller cannot set; both are
//! counted in [`LayerStats`], for one warning rather than one per file.
//! Read-only directories of lower layers are made writable for the layer
//! and get their mode back at its end.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, futimens};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, fchown};

use crate::escape;
use crate::fsroot::{self, DirFd, RootDir, clean_path, fset_xattr};
use crate::tar::{self, Chunk, Header, Kind, TarError};

pub(crate) const WHITEOUT_PREFIX: &[u8] = b".wh.";
pub(crate) const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";
pub(crate) const AUFS_META_PREFIX: &[u8] = b".wh..wh.";
const COPY_BUFFER: usize = 128 * 1024;

/// How to apply a layer.
#[derive(Debug, Clone)]
pub struct UnpackOptions {
    /// Apply whiteouts (true, default) or keep `.wh.*` files as ordinary
    /// files (for forensic per-layer extraction).
    pub apply_whiteouts: bool,
    /// chown entries to the tar header's numeric uid/gid (default: true
    /// when running as root over more ids than its own, see
    /// [`crate::userns::privileged`]).
    pub preserve_owners: bool,
    /// Caps on entries and on the bytes they add up to.
    pub limits: tar::Limits,
    /// Entries this filter drops are skipped (bundles use its exclusions;
    /// see [`crate::filter`]).
    pub filter: std::sync::Arc<crate::filter::Filter>,
}

impl Default for UnpackOptions {
    fn default() -> Self {
        UnpackOptions {
            apply_whiteouts: true,
            preserve_owners: crate::userns::privileged(),
            limits: tar::Limits::default(),
            filter: Default::default(),
        }
    }
}

/// What applying a layer did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Tar entries seen (whiteouts included).
    pub entries: u64,
    /// Bytes of regular file content written.
    pub bytes: u64,
    /// Whiteout entries seen (opaque markers included).
    pub whiteouts: u64,
    /// Device nodes that could not be made (not root).
    pub skipped_nodes: Skipped,
    /// xattrs that could not be set or removed (not root, or not
    /// supported by the filesystem).
    pub skipped_xattrs: Skipped,
}

impl LayerStats {
    /// Add another layer's figures.
    pub fn add(&mut self, other: &LayerStats) {
        self.entries += other.entries;
        self.bytes += other.bytes;
        self.whiteouts += other.whiteouts;
        self.skipped_nodes.add_all(&other.skipped_nodes);
        self.skipped_xattrs.add_all(&other.skipped_xattrs);
    }

    /// One warning for each kind of thing skipped, not one per entry.
    pub fn warn_skipped(&self) {
        if let Some(s) = self.skipped_nodes.describe("device node", "not root") {
            tracing::warn!("{s}");
        }
        let why = "not root, or not supported here";
        if let Some(s) = self.skipped_xattrs.describe("xattr", why) {
            tracing::warn!("{s}");
        }
    }
}

/// What could not be applied, counted, with the first few paths.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Skipped {
    /// How many entries (or xattrs) were skipped.
    pub count: u64,
    /// The first three paths, escaped for a terminal.
    pub examples: Vec<String>,
}

impl Skipped {
    const EXAMPLES: usize = 3;

    fn note(&mut self, example: String) {
        self.count += 1;
        if self.examples.len() < Self::EXAMPLES {
            self.examples.push(example);
        }
    }

    fn add_all(&mut self, other: &Skipped) {
        self.count += other.count;
        let room = Self::EXAMPLES.saturating_sub(self.examples.len());
        self.examples
            .extend(other.examples.iter().take(room).cloned());
    }

    /// `skipped 3 device nodes (not root): dev/null, dev/zero, dev/full`.
    pub fn describe(&self, what: &str, why: &str) -> Option<String> {
        if self.count == 0 {
            return None;
        }
        let plural = if self.count == 1 { "" } else { "s" };
        let more = if self.count > self.examples.len() as u64 {
            ", …"
        } else {
            ""
        };
        Some(format!(
            "skipped {} {what}{plural} ({why}): {}{more}",
            self.count,
            self.examples.join(", ")
        ))
    }
}

/// Why a layer could not be applied. Every variant but `Tar` names the
/// entry's path relative to the root, cleaned of `.`, `..` and leading
/// `/` (as written when it does not clean); print it with
/// [`escape::path`].
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream itself is malformed or truncated, or over a limit.
    #[error("{0}")]
    Tar(#[source] TarError),
    /// An entry cannot be applied as written (bad header field, hardlink to
    /// a missing file, a parent that is not a directory...).
    #[error("{}: malformed entry: {reason}", escape::path(path))]
    Malformed {
        /// The entry's path.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The entry tries to reach outside the root.
    #[error("{}: refused hostile entry: {reason}", escape::path(path))]
    Hostile {
        /// The entry's path.
        path: PathBuf,
        /// How it tries to.
        reason: String,
    },
    /// The entry's content could not be read from the layer stream.
    #[error("{}: reading content from the layer: {source}", escape::path(path))]
    Read {
        /// The entry's path.
        path: PathBuf,
        /// The read error: the tar reader's, a failed download or a
        /// digest mismatch found by the readers below.
        #[source]
        source: io::Error,
    },
    /// A local filesystem operation failed.
    #[error("{}: {op}: {source}", escape::path(path))]
    Io {
        /// The entry's path.
        path: PathBuf,
        /// What was being done ("opening directory", "removing whited-out
        /// entry"...).
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

impl UnpackError {
    /// True when the layer itself is at fault (malformed or hostile); false
    /// for local I/O trouble.
    pub fn is_integrity(&self) -> bool {
        !matches!(self, UnpackError::Io { .. })
    }

    /// The library error for this failure of layer `digest`. A limit is
    /// reported as the decompressor reports it, whichever saw it first.
    pub fn into_error(self, digest: &str) -> crate::Error {
        use crate::digest::IntegrityError;
        let digest = digest.to_string();
        match self {
            UnpackError::Tar(TarError::TooLarge { limit }) => {
                crate::Error::Integrity(IntegrityError::TooLarge {
                    what: "uncompressed layer",
                    digest,
                    limit,
                })
            }
            UnpackError::Tar(TarError::TooManyEntries { limit }) => {
                crate::Error::Integrity(IntegrityError::TooManyEntries { digest, limit })
            }
            source => crate::Error::Unpack { digest, source },
        }
    }
}

type Result<T, E = UnpackError> = std::result::Result<T, E>;

/// A failed filesystem operation on `path`. A symlink loop or a name too
/// long is the layer's doing, not the host's: malformed.
fn io_err(path: &Path, op: &'static str) -> impl FnOnce(io::Error) -> UnpackError {
    move |source| {
        if errno_is(&source, &[libc::ELOOP, libc::ENAMETOOLONG]) {
            return malformed(path, format!("{op}: {source}"));
        }
        UnpackError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

fn malformed(path: &Path, reason: impl Into<String>) -> UnpackError {
    UnpackError::Malformed {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn hostile(path: &Path, reason: impl Into<String>) -> UnpackError {
    UnpackError::Hostile {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn errno_is(e: &io::Error, codes: &[i32]) -> bool {
    fsroot::errno_of(e).is_some_and(|c| codes.contains(&c))
}

fn is_dir(st: &FileStat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// Apply one uncompressed layer tar stream to `root`. Reads the archive up
/// to its end-of-archive marker, not necessarily to the end of the stream.
pub fn apply_layer<R: Read>(
    root: &RootDir,
    layer: R,
    opts: &UnpackOptions,
) -> Result<LayerStats, UnpackError> {
    let mut reader = tar::Reader::new(layer, opts.limits);
    let mut applier = Applier::new(root, opts);
    while let Some(header) = reader.next_entry().map_err(UnpackError::Tar)? {
        applier.apply(&header, &mut reader)?;
    }
    applier.finish()?;
    applier.stats.skipped_xattrs = applier.skipped_xattrs.take();
    Ok(applier.stats)
}

/// Metadata of an entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    atime: TimeSpec,
    mtime: TimeSpec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

/// A directory whose mode (and times) are applied at the end of the layer.
struct Pending {
    path: PathBuf,
    dev: u64,
    ino: u64,
    mode: u32,
    times: Option<(TimeSpec, TimeSpec)>,
}

struct Applier<'a> {
    root: &'a RootDir,
    opts: &'a UnpackOptions,
    is_root: bool,
    /// Paths this layer wrote, spared by its whiteouts.
    added: HashSet<PathBuf>,
    /// Directories above the paths this layer wrote.
    added_ancestors: HashSet<PathBuf>,
    pending: Vec<Pending>,
    stats: LayerStats,
    /// Apart from `stats`: noted where only `&self` is at hand.
    skipped_xattrs: std::cell::RefCell<Skipped>,
    buf: Vec<u8>,
}

impl<'a> Applier<'a> {
    fn new(root: &'a RootDir, opts: &'a UnpackOptions) -> Self {
        Applier {
            root,
            opts,
            is_root: crate::userns::privileged(),
            added: HashSet::new(),
            added_ancestors: HashSet::new(),
            pending: Vec::new(),
            stats: LayerStats::default(),
            skipped_xattrs: Default::default(),
            buf: vec![0; COPY_BUFFER],
        }
    }

    fn apply<R: Read>(&mut self, h: &Header, reader: &mut tar::Reader<R>) -> Result<()> {
        if h.kind == Kind::GlobalExtension || self.opts.filter.drops(h) {
            return Ok(());
        }
        self.stats.entries += 1;
        let shown = PathBuf::from(OsString::from_vec(h.name.clone()));
        let path = clean_path(&h.name).map_err(|reason| hostile(&shown, reason))?;
        if self.opts.apply_whiteouts
            && let Some(name) = path.file_name()
            && name.as_bytes().starts_with(WHITEOUT_PREFIX)
        {
            self.stats.whiteouts += 1;
            return self.whiteout(&path, name.as_bytes());
        }
        if path.as_os_str().is_empty() && h.kind != Kind::Directory {
            return Err(hostile(&shown, "entry would replace the root directory"));
        }
        let meta = read_meta(h, &path)?;
        let link = || {
            if h.link_name.is_empty() {
                return Err(malformed(&path, "link without a target"));
            }
            Ok(OsStr::from_bytes(&h.link_name))
        };
        match h.kind {
            Kind::Directory => self.directory(&path, &meta)?,
            Kind::Regular | Kind::Contiguous | Kind::GnuSparse => {
                self.regular(&path, h, reader, &meta)?
            }
            Kind::Symlink => self.symlink(&path, link()?, &meta)?,
            Kind::Link => self.hardlink(&path, link()?.as_bytes())?,
            Kind::Char => self.node(&path, SFlag::S_IFCHR, device(h, &path)?, &meta)?,
            Kind::Block => self.node(&path, SFlag::S_IFBLK, device(h, &path)?, &meta)?,
            Kind::Fifo => self.node(&path, SFlag::S_IFIFO, 0, &meta)?,
            Kind::GlobalExtension | Kind::Other(_) => {
                let flag = h.kind.flag();
                return Err(malformed(
                    &path,
                    format!(
                        "unsupported entry type {} ({flag:#04x})",
                        crate::escape::bytes(&[flag])
                    ),
                ));
            }
        }
        self.mark_added(path);
        Ok(())
    }

    fn mark_added(&mut self, path: PathBuf) {
        for parent in path.ancestors().skip(1) {
            if parent.as_os_str().is_empty() || !self.added_ancestors.insert(parent.to_path_buf()) {
                break;
            }
        }
        self.added.insert(path);
    }

    // ---- whiteouts ----

    fn whiteout(&mut self, path: &Path, name: &[u8]) -> Result<()> {
        let parent = path.parent().unwrap_or(Path::new(""));
        if name == OPAQUE_MARKER {
            return self.clear_lower_children(parent);
        }
        if name.starts_with(AUFS_META_PREFIX) {
            return Ok(());
        }
        let victim = &name[WHITEOUT_PREFIX.len()..];
        if matches!(victim, b"" | b"." | b"..") {
            return Err(malformed(path, "whiteout names no entry"));
        }
        self.remove_lower(&parent.join(OsStr::from_bytes(victim)))
    }

    /// Remove what lower layers have at `path`, sparing what this layer wrote.
    fn remove_lower(&mut self, path: &Path) -> Result<()> {
        if self.added.contains(path) || self.added_ancestors.contains(path) {
            return self.clear_lower_children(path);
        }
        let (dir, name) = match self.root.parent_of(path, false) {
            Ok(found) => found,
            // Nothing there to remove (a symlink loop holds nothing either).
            Err(e) if errno_is(&e, &[libc::ENOENT, libc::ENOTDIR, libc::ELOOP]) => return Ok(()),
            Err(e) => return Err(io_err(path, "resolving whiteout")(e)),
        };
        if let Some(parent) = path.parent() {
            self.make_writable(parent, &dir)?;
        }
        self.root
            .remove(&dir, name)
            .map_err(io_err(path, "removing whited-out entry"))?;
        Ok(())
    }

    /// Remove lower-layer children of directory `path` (a symlink there is
    /// not a directory and has no children).
    fn clear_lower_children(&mut self, path: &Path) -> Result<()> {
        let Some(dir) = self.real_dir(path)? else {
            return Ok(());
        };
        self.make_writable(path, &dir)?;
        let names = dir.list().map_err(io_err(path, "listing directory"))?;
        for name in names {
            self.remove_lower(&path.join(name))?;
        }
        Ok(())
    }

    /// The directory at `path`, its final component not followed; `None`
    /// when there is no directory there.
    fn real_dir(&self, path: &Path) -> Result<Option<DirFd>> {
        if path.as_os_str().is_empty() {
            return Ok(Some(self.root.root()));
        }
        let absent = [libc::ENOENT, libc::ENOTDIR, libc::ELOOP];
        let opened = self
            .root
            .parent_of(path, false)
            .and_then(|(dir, name)| dir.open_subdir(name));
        match opened {
            Ok(dir) => Ok(Some(dir)),
            Err(e) if errno_is(&e, &absent) => Ok(None),
            Err(e) => Err(io_err(path, "opening directory")(e)),
        }
    }

    // ---- entries ----

    /// The parent directory of `path` (created if missing) and its name.
    fn parent<'p>(&mut self, path: &'p Path) -> Result<(DirFd, &'p OsStr)> {
        let (dir, name) = self.root.parent_of(path, true).map_err(|e| {
            // The error says what stopped the walk: a file on the way, a
            // symlink loop, a name too long.
            if errno_is(
                &e,
                &[
                    libc::ENOTDIR,
                    libc::EEXIST,
                    libc::ELOOP,
                    libc::ENOENT,
                    libc::ENAMETOOLONG,
                ],
            ) {
                malformed(path, format!("parent directory: {e}"))
            } else {
                io_err(path, "opening parent directory")(e)
            }
        })?;
        if let Some(parent) = path.parent() {
            self.make_writable(parent, &dir)?;
        }
        Ok((dir, name))
    }

    /// Create a new entry at `path` with `create`, replacing whatever is
    /// there. Creation is tried first (it is exclusive: nothing is ever
    /// written through what exists), so the common case of a new path
    /// costs no removal attempt.
    fn create_new<'p, T>(
        &mut self,
        path: &'p Path,
        create: impl Fn(&DirFd, &OsStr) -> io::Result<T>,
    ) -> Result<(DirFd, &'p OsStr, io::Result<T>)> {
        let (dir, name) = self.parent(path)?;
        let created = match create(&dir, name) {
            Err(e) if errno_is(&e, &[libc::EEXIST]) => {
                self.root
                    .remove(&dir, name)
                    .map_err(io_err(path, "removing the entry it replaces"))?;
                create(&dir, name)
            }
            other => other,
        };
        Ok((dir, name, created))
    }

    /// When not root, lets a read-only lower directory receive entries,
    /// and restores its mode at the end of the layer.
    fn make_writable(&mut self, path: &Path, dir: &DirFd) -> Result<()> {
        if self.is_root {
            return Ok(());
        }
        let st = dir.stat_self().map_err(io_err(path, "stat"))?;
        let mode = st.st_mode & 0o7777;
        if mode & 0o300 == 0o300 {
            return Ok(());
        }
        fchmod(dir, Mode::from_bits_truncate(mode | 0o700))
            .map_err(|e| io_err(path, "making directory writable")(e.into()))?;
        self.pending.push(Pending {
            path: path.to_path_buf(),
            dev: st.st_dev,
            ino: st.st_ino,
            mode,
            times: None,
        });
        Ok(())
    }

    fn directory(&mut self, path: &Path, meta: &Meta) -> Result<()> {
        let dir = if path.as_os_str().is_empty() {
            self.root.root()
        } else {
            let (parent, name) = self.parent(path)?;
            let existing = parent.stat(name).map_err(io_err(path, "stat"))?;
            if !existing.as_ref().is_some_and(is_dir) {
                if existing.is_some() {
                    self.root
                        .remove(&parent, name)
                        .map_err(io_err(path, "removing the entry it replaces"))?;
                }
                parent
                    .mkdir(name, 0o700)
                    .map_err(io_err(path, "creating directory"))?;
            }
            parent
                .open_subdir(name)
                .map_err(io_err(path, "opening directory"))?
        };
        self.fd_owner(&dir, path, meta)?;
        // A directory declared again keeps nothing of its former xattrs
        // and ACLs but what this header carries too (the spec: replaced).
        self.drop_other_xattrs(path, meta, fsroot::flist_xattrs(dir.as_fd()), |k| {
            fsroot::fremove_xattr(dir.as_fd(), k)
        })?;
        self.fd_xattrs(&dir, path, meta)?;
        let st = dir.stat_self().map_err(io_err(path, "stat"))?;
        let current = st.st_mode & 0o7777;
        if !self.is_root && current & 0o700 != 0o700 {
            fchmod(&dir, Mode::from_bits_truncate(current | 0o700))
                .map_err(|e| io_err(path, "making directory writable")(e.into()))?;
        }
        self.pending.push(Pending {
            path: path.to_path_buf(),
            dev: st.st_dev,
            ino: st.st_ino,
            mode: meta.mode,
            times: Some((meta.atime, meta.mtime)),
        });
        Ok(())
    }

    /// A regular file's content, a sparse file's holes left as holes.
    fn regular<R: Read>(
        &mut self,
        path: &Path,
        h: &Header,
        reader: &mut tar::Reader<R>,
        meta: &Meta,
    ) -> Result<()> {
        let (_, _, file) = self.create_new(path, |d, n| d.create_file(n, 0o600))?;
        let mut file = file.map_err(io_err(path, "creating file"))?;
        let read_err = |e: TarError| UnpackError::Read {
            path: path.to_path_buf(),
            source: e.into(),
        };
        // Where the file's cursor is: a hole moves the next write on.
        let mut cursor = 0;
        loop {
            match reader.read_chunk(&mut self.buf).map_err(read_err)? {
                Chunk::Data { offset, len } => {
                    if offset != cursor {
                        file.seek(SeekFrom::Start(offset))
                            .map_err(io_err(path, "seeking past a hole"))?;
                    }
                    file.write_all(&self.buf[..len])
                        .map_err(io_err(path, "writing file"))?;
                    cursor = offset + len as u64;
                    self.stats.bytes += len as u64;
                }
                Chunk::Hole { .. } => {}
                Chunk::End => break,
            }
        }
        // A trailing hole: the size without the blocks.
        let size = h.content_size();
        if cursor < size {
            file.set_len(size)
                .map_err(io_err(path, "extending a sparse file"))?;
        }
        self.fd_owner(&file, path, meta)?;
        // Before the chmod: removing an inherited access ACL leaves its
        // mask in the group bits.
        self.drop_other_xattrs(path, meta, fsroot::flist_xattrs(file.as_fd()), |k| {
            fsroot::fremove_xattr(file.as_fd(), k)
        })?;
        fchmod(&file, Mode::from_bits_truncate(meta.mode))
            .map_err(|e| io_err(path, "chmod")(e.into()))?;
        self.fd_xattrs(&file, path, meta)?;
        futimens(&file, &meta.atime, &meta.mtime)
            .map_err(|e| io_err(path, "setting times")(e.into()))
    }

    fn symlink(&mut self, path: &Path, target: &OsStr, meta: &Meta) -> Result<()> {
        if target.is_empty() {
            return Err(malformed(path, "symlink with an empty target"));
        }
        let (dir, name, created) = self.create_new(path, |d, n| d.symlink(n, target))?;
        created.map_err(io_err(path, "creating symlink"))?;
        self.name_metadata(&dir, name, path, meta, false)
    }

    fn hardlink(&mut self, path: &Path, target_raw: &[u8]) -> Result<()> {
        let shown = escape::bytes(target_raw);
        let target = clean_path(target_raw)
            .map_err(|reason| hostile(path, format!("hardlink target \"{shown}\": {reason}")))?;
        if target.as_os_str().is_empty() {
            return Err(hostile(path, "hardlink to the root directory"));
        }
        let missing = || malformed(path, format!("hardlink target \"{shown}\" does not exist"));
        let (src_dir, src_name) = match self.root.parent_of(&target, false) {
            Ok(found) => found,
            Err(e) if errno_is(&e, &[libc::ENOENT, libc::ENOTDIR, libc::ELOOP]) => {
                return Err(malformed(
                    path,
                    format!("hardlink target \"{shown}\" does not exist: {e}"),
                ));
            }
            Err(e) => return Err(io_err(path, "resolving hardlink target")(e)),
        };
        let src = src_dir
            .stat(src_name)
            .map_err(io_err(path, "stat of hardlink target"))?
            .ok_or_else(missing)?;
        if is_dir(&src) {
            return Err(malformed(
                path,
                format!("hardlink target \"{shown}\" is a directory"),
            ));
        }
        let (dir, name) = self.parent(path)?;
        if let Some(st) = dir.stat(name).map_err(io_err(path, "stat"))? {
            if (st.st_dev, st.st_ino) == (src.st_dev, src.st_ino) {
                return Ok(());
            }
            self.root
                .remove(&dir, name)
                .map_err(io_err(path, "removing the entry it replaces"))?;
        }
        dir.hardlink(name, &src_dir, src_name)
            .map_err(io_err(path, "creating hardlink"))
    }

    fn node(&mut self, path: &Path, kind: SFlag, dev: libc::dev_t, meta: &Meta) -> Result<()> {
        let (dir, name, created) = self.create_new(path, |d, n| d.mknod(n, kind, 0o600, dev))?;
        match created {
            Ok(()) => {}
            Err(e) if !self.is_root && kind != SFlag::S_IFIFO && errno_is(&e, &[libc::EPERM]) => {
                self.stats.skipped_nodes.note(escape::path(path));
                return Ok(());
            }
            Err(e) => return Err(io_err(path, "creating node")(e)),
        }
        self.name_metadata(&dir, name, path, meta, true)
    }

    // ---- metadata ----

    fn fd_owner(&self, fd: &impl AsFd, path: &Path, meta: &Meta) -> Result<()> {
        if !self.opts.preserve_owners {
            return Ok(());
        }
        fchown(
            fd,
            Some(Uid::from_raw(meta.uid)),
            Some(Gid::from_raw(meta.gid)),
        )
        .map_err(|e| io_err(path, "chown")(e.into()))
    }

    fn fd_xattrs(&self, fd: &impl AsFd, path: &Path, meta: &Meta) -> Result<()> {
        for (key, value) in &meta.xattrs {
            self.xattr_result(path, key, fset_xattr(fd.as_fd(), key, value))?;
        }
        Ok(())
    }

    /// Owner, mode (unless a symlink), xattrs and times of `name`, none of
    /// them following a symlink.
    fn name_metadata(
        &self,
        dir: &DirFd,
        name: &OsStr,
        path: &Path,
        meta: &Meta,
        chmod: bool,
    ) -> Result<()> {
        if self.opts.preserve_owners {
            dir.chown(name, meta.uid, meta.gid)
                .map_err(io_err(path, "chown"))?;
        }
        if chmod {
            // Symlinks inherit no ACL; devices and FIFOs do.
            self.drop_other_xattrs(path, meta, dir.list_xattrs(name), |k| {
                dir.remove_xattr(name, k)
            })?;
            dir.chmod(name, meta.mode).map_err(io_err(path, "chmod"))?;
        }
        for (key, value) in &meta.xattrs {
            self.xattr_result(path, key, dir.set_xattr(name, key, value))?;
        }
        dir.set_times(name, &meta.atime, &meta.mtime)
            .map_err(io_err(path, "setting times"))
    }

    /// Remove the xattrs in `listed` that the header does not carry: an
    /// entry gets exactly its header's, no ACL inherited from a parent's
    /// default ACL (the kernel gives one to every new child, which can
    /// open a 0640 file to another uid), nothing a lower layer's version
    /// of a directory had. Labels of the host's security modules are
    /// theirs and stay. What cannot be removed follows [`Self::xattr_result`].
    fn drop_other_xattrs(
        &self,
        path: &Path,
        meta: &Meta,
        listed: io::Result<Vec<OsString>>,
        remove: impl Fn(&OsStr) -> io::Result<()>,
    ) -> Result<()> {
        let keys = match listed {
            Ok(keys) => keys,
            Err(e) if errno_is(&e, &[libc::EOPNOTSUPP]) => return Ok(()),
            Err(e) => return Err(io_err(path, "listing xattrs")(e)),
        };
        for key in keys {
            if host_label(&key) || meta.xattrs.iter().any(|(k, _)| *k == key) {
                continue;
            }
            match remove(&key) {
                Err(e) if errno_is(&e, &[libc::ENODATA]) => {}
                result => self.xattr_result(path, &key, result)?,
            }
        }
        Ok(())
    }

    /// xattrs the filesystem cannot hold, that only root may set, or that
    /// the kernel refuses on this type (`user.*` on symlinks and devices)
    /// are skipped with a warning rather than failing the layer.
    fn xattr_result(&self, path: &Path, key: &OsStr, result: io::Result<()>) -> Result<()> {
        let user_ns = key.as_bytes().starts_with(b"user.");
        match result {
            Ok(()) => Ok(()),
            Err(e)
                if errno_is(&e, &[libc::EOPNOTSUPP])
                    || ((user_ns || !self.is_root) && errno_is(&e, &[libc::EPERM])) =>
            {
                tracing::debug!(
                    path = %escape::path(path),
                    xattr = %escape::bytes(key.as_bytes()),
                    error = %e,
                    "skipping xattr"
                );
                self.skipped_xattrs.borrow_mut().note(format!(
                    "{} on {}",
                    escape::bytes(key.as_bytes()),
                    escape::path(path)
                ));
                Ok(())
            }
            Err(e) => Err(io_err(path, "setting xattr")(e)),
        }
    }

    /// Apply deferred directory modes and times, deepest first so that a
    /// directory losing its search bit does not hide its children.
    fn finish(&mut self) -> Result<()> {
        let mut pending = std::mem::take(&mut self.pending);
        pending.sort_by_key(|p| std::cmp::Reverse(p.path.components().count()));
        for p in &pending {
            let Some(dir) = self.real_dir(&p.path)? else {
                continue;
            };
            let st = dir.stat_self().map_err(io_err(&p.path, "stat"))?;
            // Replaced by a later entry of this layer: nothing to restore.
            if (st.st_dev, st.st_ino) != (p.dev, p.ino) {
                continue;
            }
            fchmod(&dir, Mode::from_bits_truncate(p.mode))
                .map_err(|e| io_err(&p.path, "chmod")(e.into()))?;
            if let Some((atime, mtime)) = &p.times {
                futimens(&dir, atime, mtime)
                    .map_err(|e| io_err(&p.path, "setting times")(e.into()))?;
            }
        }
        Ok(())
    }
}

/// xattrs the host's security modules label files with (SELinux, Smack,
/// IMA/EVM): set by the host for its own policy, not image content.
fn host_label(key: &OsStr) -> bool {
    let key = key.as_bytes();
    matches!(
        key,
        b"security.selinux" | b"security.apparmor" | b"security.ima" | b"security.evm"
    ) || key.starts_with(b"security.SMACK64")
}

fn device(h: &Header, path: &Path) -> Result<libc::dev_t> {
    let number = |n: i64| {
        u32::try_from(n).map_err(|_| malformed(path, format!("device number {n} out of range")))
    };
    Ok(libc::makedev(number(h.dev_major)?, number(h.dev_minor)?))
}

fn read_meta(h: &Header, path: &Path) -> Result<Meta> {
    let id = |v: i64, name: &str| {
        u32::try_from(v).map_err(|_| malformed(path, format!("{name} {v} out of range")))
    };
    let time = |t: tar::Time| TimeSpec::new(t.secs, i64::from(t.nanos));
    let mtime = time(h.mtime);
    Ok(Meta {
        mode: h.permissions(),
        uid: id(h.uid, "uid")?,
        gid: id(h.gid, "gid")?,
        atime: h.atime.map_or(mtime, time),
        mtime,
        xattrs: h
            .xattrs()
            .into_iter()
            .map(|(k, v)| (OsString::from_vec(k), v))
            .collect(),
    })
}
