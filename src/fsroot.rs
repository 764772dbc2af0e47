//! A directory used as a root: every operation stays inside it.
//!
//! Paths are resolved by the kernel with `openat2(RESOLVE_IN_ROOT)`, so
//! `..`, absolute paths and absolute or relative symlinks (chained, planted
//! by any earlier layer) resolve as if the root were `/`, like `chroot`.
//! Operations that create, remove or change an entry resolve only its
//! *parent* that way and then act on the final component with `*at()`
//! calls that never follow it (`AT_SYMLINK_NOFOLLOW`, `O_NOFOLLOW`,
//! `O_EXCL`), so a symlink in the final position is replaced or changed
//! itself, never its target.
//!
//! The threat is the content of an image, not a concurrent process: the
//! root is a directory this process owns while it writes it.

use std::collections::VecDeque;
use std::ffi::{CStr, CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, UtimensatFlags, fstat, fstatat, mkdirat, mknodat};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchownat, linkat, symlinkat, unlinkat};

/// Turn a path from an image (bytes, maybe absolute, maybe with `.` and
/// `..`) into a clean relative path inside the root.
///
/// A leading `/` is dropped (absolute means "from the root"); `.` and empty
/// components vanish; `..` removes the previous component. The empty path is
/// the root itself. Fails with a reason when `..` would climb above the
/// root or a name holds a NUL byte.
pub(crate) fn clean_path(raw: &[u8]) -> Result<PathBuf, &'static str> {
    if raw.contains(&0) {
        return Err("path contains a NUL byte");
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                if parts.pop().is_none() {
                    return Err("path climbs above the root with `..`");
                }
            }
            name => parts.push(name),
        }
    }
    Ok(PathBuf::from(OsString::from_vec(parts.join(&b'/'))))
}

/// An open directory inside a [`RootDir`]; cheap to clone.
// Public only for tests/unpack.rs, which builds and removes deep trees
// under an fd limit.
#[doc(hidden)]
#[derive(Clone, Debug)]
pub struct DirFd(Arc<OwnedFd>);

impl AsFd for DirFd {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.0.as_fd()
    }
}

/// A directory treated as `/` for every path resolved through it.
#[derive(Debug)]
pub struct RootDir {
    root: DirFd,
    path: PathBuf,
    /// The last parent directory resolved, keyed by its clean relative
    /// path: layer entries come mostly in directory order.
    cache: Mutex<Option<(PathBuf, DirFd)>>,
}

fn errno_io(e: Errno) -> io::Error {
    io::Error::from(e)
}

/// Symlinks followed in one walk before it is a loop (the kernel's
/// MAXSYMLINKS).
const MAX_SYMLINKS: usize = 40;

/// Why a path does not resolve inside the root: what stopped the walk, and
/// where (after symlinks). It travels inside an [`io::Error`]; read its
/// errno with [`errno_of`].
#[derive(Debug)]
pub(crate) struct ResolveError {
    errno: Errno,
    /// In-root path where the walk stopped, as reached.
    at: PathBuf,
    /// The last symlink followed before: its in-root path and target.
    via: Option<(PathBuf, OsString)>,
    /// The walk stopped inside that symlink's target.
    in_target: bool,
    what: &'static str,
}

impl ResolveError {
    fn new(errno: Errno, dir: &Path, name: &OsStr, what: &'static str) -> Self {
        ResolveError {
            errno,
            at: dir.join(name),
            via: None,
            in_target: false,
            what,
        }
    }
}

impl std::fmt::Display for ResolveError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::escape;
        write!(f, "/{}: {}", escape::path(&self.at), self.what)?;
        if let Some((link, target)) = &self.via {
            let dangling = if self.errno == Errno::ENOENT && self.in_target {
                "dangling "
            } else {
                ""
            };
            write!(
                f,
                " (reached through {dangling}symlink /{} -> {})",
                escape::path(link),
                escape::bytes(target.as_bytes())
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ResolveError {}

impl From<ResolveError> for io::Error {
    fn from(e: ResolveError) -> Self {
        io::Error::new(io::Error::from(e.errno).kind(), e)
    }
}

/// The errno of an error from this module: the OS error's, or the one a
/// [`ResolveError`] carries.
pub(crate) fn errno_of(e: &io::Error) -> Option<i32> {
    e.raw_os_error().or_else(|| {
        e.get_ref()
            .and_then(|inner| inner.downcast_ref::<ResolveError>())
            .map(|r| r.errno as i32)
    })
}

/// The components of a path as written (`.`, `..` and empty ones kept).
fn components(raw: &[u8]) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    raw.split(|b| *b == b'/')
        .map(|c| OsString::from_vec(c.to_vec()))
}

/// Called at a name that does not exist: when the rest of the path (`todo`)
/// climbs back out of it with `..`, drop that part of `todo` and say so.
/// Below a missing name nothing exists, so this is decided by the names
/// alone, without making the directories they pass through.
fn climbs_back(todo: &mut VecDeque<OsString>) -> bool {
    let mut depth = 1usize;
    for (i, c) in todo.iter().enumerate() {
        match c.as_bytes() {
            b"" | b"." => {}
            b".." => {
                depth -= 1;
                if depth == 0 {
                    todo.drain(..=i);
                    return true;
                }
            }
            _ => depth += 1,
        }
    }
    false
}

fn join(parts: &[OsString]) -> PathBuf {
    parts.iter().collect()
}

/// What a file type is, for "not a directory" messages.
fn type_name(kind: libc::mode_t) -> &'static str {
    match kind {
        libc::S_IFREG => "is a regular file, not a directory",
        libc::S_IFCHR | libc::S_IFBLK => "is a device, not a directory",
        libc::S_IFIFO => "is a FIFO, not a directory",
        libc::S_IFSOCK => "is a socket, not a directory",
        _ => "is not a directory",
    }
}

fn cstring(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `openat2` relative to `dir`, resolving inside `dir` as root; retried on
/// the EAGAIN the kernel may return when a rename raced the walk.
fn open_in_root(dir: &DirFd, path: &Path, flags: OFlag) -> io::Result<OwnedFd> {
    let how = OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut tries = 0;
    loop {
        match openat2(dir, path, how) {
            Err(Errno::EAGAIN | Errno::EINTR) if tries < 32 => tries += 1,
            other => return other.map_err(errno_io),
        }
    }
}

fn is_absent(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR))
}

impl RootDir {
    /// Open an existing directory as a root.
    pub fn open(path: &Path) -> io::Result<RootDir> {
        let fd = nix::fcntl::open(
            path,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno_io)?;
        Ok(RootDir {
            root: DirFd(Arc::new(fd)),
            path: path.to_path_buf(),
            cache: Mutex::new(None),
        })
    }

    /// The host path this root was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The root directory itself.
    // Public only for tests/unpack.rs (see DirFd).
    #[doc(hidden)]
    pub fn root(&self) -> DirFd {
        self.root.clone()
    }

    /// Read a regular file, following symlinks only inside the root.
    /// `Ok(None)` when it does not exist; an error when it is not a
    /// regular file or is larger than `max_len` bytes.
    pub(crate) fn read_file(&self, path: &str, max_len: u64) -> io::Result<Option<Vec<u8>>> {
        let Some((file, _)) = self.open_file(Path::new(path), max_len)? else {
            return Ok(None);
        };
        let mut data = Vec::new();
        file.take(max_len + 1).read_to_end(&mut data)?;
        if data.len() as u64 > max_len {
            return Err(too_large(max_len));
        }
        Ok(Some(data))
    }

    /// Open a regular file for reading, following symlinks only inside
    /// the root, with its size. `Ok(None)` when it does not exist; an
    /// error when it is not a regular file or is larger than `max_len`.
    pub(crate) fn open_file(&self, path: &Path, max_len: u64) -> io::Result<Option<(File, u64)>> {
        // O_PATH first: opening a device or FIFO for reading has effects.
        let probe = match open_in_root(&self.root, path, OFlag::O_PATH) {
            Ok(fd) => fd,
            Err(e) if is_absent(&e) => return Ok(None),
            Err(e) => return Err(e),
        };
        let st = fstat(&probe).map_err(errno_io)?;
        check_regular(&st, max_len)?;
        let fd = open_in_root(
            &self.root,
            path,
            OFlag::O_RDONLY | OFlag::O_NOCTTY | OFlag::O_NONBLOCK,
        )?;
        let again = fstat(&fd).map_err(errno_io)?;
        if (again.st_dev, again.st_ino) != (st.st_dev, st.st_ino) {
            return Err(io::Error::other("file changed while being opened"));
        }
        Ok(Some((File::from(fd), again.st_size as u64)))
    }

    /// Open the directory at clean relative `path`, every component
    /// (the last one too) resolved inside the root.
    pub(crate) fn open_dir(&self, path: &Path) -> io::Result<DirFd> {
        if path.as_os_str().is_empty() {
            return Ok(self.root());
        }
        let fd = open_in_root(&self.root, path, OFlag::O_RDONLY | OFlag::O_DIRECTORY)?;
        Ok(DirFd(Arc::new(fd)))
    }

    /// The directory holding clean relative `path` and the final name.
    /// With `create`, missing parent directories are made (mode 0755).
    /// Fails with `InvalidInput` for the root itself.
    pub(crate) fn parent_of<'p>(
        &self,
        path: &'p Path,
        create: bool,
    ) -> io::Result<(DirFd, &'p OsStr)> {
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the root has no parent",
            ));
        };
        let mut cache = self.cache.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((cached, dir)) = cache.as_ref()
            && cached == parent
        {
            return Ok((dir.clone(), name));
        }
        let dir = match self.open_dir(parent) {
            Ok(dir) => dir,
            // The kernel's walk stopped: walk again a component at a time,
            // to create what is missing or to say what stopped it.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOENT | libc::ENOTDIR | libc::ELOOP)
                ) =>
            {
                self.walk(parent, create)?
            }
            Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                return Err(ResolveError::new(
                    Errno::ENAMETOOLONG,
                    Path::new(""),
                    parent.as_os_str(),
                    "name too long",
                )
                .into());
            }
            Err(e) => return Err(e),
        };
        *cache = Some((parent.to_path_buf(), dir.clone()));
        Ok((dir, name))
    }

    /// Resolve directory `path` inside the root one component at a time,
    /// as the kernel does (symlinks absolute or relative, `..` never above
    /// the root), with two differences that make legitimate layers apply
    /// as Docker and containerd apply them:
    /// - with `create`, a missing directory is made (0755), also where a
    ///   symlink points to a path that does not exist yet (`var/run ->
    ///   /run` with no `/run`): it is made at the symlink's target, inside
    ///   the root;
    /// - below a missing name nothing exists, so a `..` that climbs back
    ///   out of it is taken by the names (as containerd cleans link targets):
    ///   nothing is made that the path only passes through.
    ///
    /// Failures are [`ResolveError`]s naming where the walk stopped and why.
    fn walk(&self, path: &Path, create: bool) -> io::Result<DirFd> {
        let mut todo: VecDeque<OsString> = components(path.as_os_str().as_bytes()).collect();
        let mut cur = self.root();
        // The real directories from the root to `cur`, for messages and to
        // know whether `..` may climb.
        let mut at: Vec<OsString> = Vec::new();
        // The last symlink followed, and how many components `todo` had
        // left before its target's: fewer left means past its target.
        let mut via: Option<(PathBuf, OsString, usize)> = None;
        let mut links = 0;
        let mut retries = 0;
        while let Some(part) = todo.pop_front() {
            match part.as_bytes() {
                b"" | b"." => continue,
                b".." => {
                    // At the root, `..` is the root (RESOLVE_IN_ROOT).
                    if at.pop().is_some() {
                        cur = cur.open_parent()?;
                    }
                    continue;
                }
                _ => {}
            }
            let left = todo.len();
            let fail = |errno: Errno, what: &'static str| -> io::Error {
                let mut e = ResolveError::new(errno, &join(&at), &part, what);
                if let Some((link, target, rest)) = &via {
                    e.via = Some((link.clone(), target.clone()));
                    e.in_target = left >= *rest;
                }
                e.into()
            };
            match fstatat(&cur, part.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => match st.st_mode & libc::S_IFMT {
                    libc::S_IFDIR => {
                        cur = cur.open_subdir(&part)?;
                        at.push(part);
                    }
                    libc::S_IFLNK => {
                        links += 1;
                        if links > MAX_SYMLINKS {
                            return Err(fail(Errno::ELOOP, "symlink loop (more than 40 symlinks)"));
                        }
                        let target =
                            nix::fcntl::readlinkat(&cur, part.as_os_str()).map_err(errno_io)?;
                        let mut link = join(&at);
                        link.push(&part);
                        if target.as_bytes().starts_with(b"/") {
                            cur = self.root();
                            at.clear();
                        }
                        let rest = todo.len();
                        for c in components(target.as_bytes()).rev() {
                            todo.push_front(c);
                        }
                        via = Some((link, target, rest));
                    }
                    kind => return Err(fail(Errno::ENOTDIR, type_name(kind))),
                },
                Err(Errno::ENOENT) => {
                    if climbs_back(&mut todo) {
                        continue;
                    }
                    if !create {
                        return Err(fail(Errno::ENOENT, "does not exist"));
                    }
                    match mkdirat(&cur, part.as_os_str(), Mode::from_bits_truncate(0o755)) {
                        Ok(()) => {
                            let dir = cur.open_subdir(&part)?;
                            // No header, so no ACL: not the one a default
                            // ACL above gives every new directory. Before
                            // the chmod, as removing it leaves its mask.
                            for key in ["system.posix_acl_access", "system.posix_acl_default"] {
                                match fremove_xattr(dir.as_fd(), OsStr::new(key)) {
                                    Ok(()) => {}
                                    Err(e)
                                        if matches!(
                                            e.raw_os_error(),
                                            Some(libc::ENODATA | libc::EOPNOTSUPP)
                                        ) => {}
                                    Err(e) => return Err(e),
                                }
                            }
                            // Not subject to the umask: implicit directories
                            // are 0755, as Docker makes them.
                            nix::sys::stat::fchmod(&dir, Mode::from_bits_truncate(0o755))
                                .map_err(errno_io)?;
                            cur = dir;
                            at.push(part);
                        }
                        // Made meanwhile: look again.
                        Err(Errno::EEXIST) if retries < 8 => {
                            retries += 1;
                            todo.push_front(part);
                        }
                        Err(e) => return Err(errno_io(e)),
                    }
                }
                Err(e @ Errno::ENAMETOOLONG) => return Err(fail(e, "name too long")),
                Err(e) => return Err(errno_io(e)),
            }
        }
        Ok(cur)
    }

    /// Remove `name` in `dir` whatever it is (directories recursively,
    /// never following symlinks). `Ok(false)` when it did not exist.
    // Public only for tests/unpack.rs (see DirFd).
    #[doc(hidden)]
    pub fn remove(&self, dir: &DirFd, name: &OsStr) -> io::Result<bool> {
        let removed = dir.remove(name)?;
        if removed {
            // What was removed may be a component of the cached parent.
            *self.cache.lock().unwrap_or_else(PoisonError::into_inner) = None;
        }
        Ok(removed)
    }
}

fn too_large(max_len: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("larger than {max_len} bytes"),
    )
}

fn check_regular(st: &FileStat, max_len: u64) -> io::Result<()> {
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a regular file",
        ));
    }
    if st.st_size as u64 > max_len {
        return Err(too_large(max_len));
    }
    Ok(())
}

/// Set an extended attribute on an open file or directory.
pub(crate) fn fset_xattr(fd: BorrowedFd<'_>, key: &OsStr, value: &[u8]) -> io::Result<()> {
    let key = cstring(key)?;
    // SAFETY: valid fd, NUL-terminated key, value pointer and length match.
    let rc = unsafe {
        libc::fsetxattr(
            fd.as_raw_fd(),
            key.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    Errno::result(rc).map(drop).map_err(errno_io)
}

/// The names of the extended attributes of an open file or directory.
pub(crate) fn flist_xattrs(fd: BorrowedFd<'_>) -> io::Result<Vec<OsString>> {
    // SAFETY: valid fd; the buffer pointer and length match.
    list_xattrs_with(|buf| unsafe {
        libc::flistxattr(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len())
    })
}

/// Remove an extended attribute of an open file or directory.
pub(crate) fn fremove_xattr(fd: BorrowedFd<'_>, key: &OsStr) -> io::Result<()> {
    let key = cstring(key)?;
    // SAFETY: valid fd and NUL-terminated key.
    let rc = unsafe { libc::fremovexattr(fd.as_raw_fd(), key.as_ptr()) };
    Errno::result(rc).map(drop).map_err(errno_io)
}

/// Run a `listxattr` call (`list(buf)`, an empty `buf` asking for the size)
/// and split the NUL-separated names it returns.
fn list_xattrs_with(mut list: impl FnMut(&mut [u8]) -> isize) -> io::Result<Vec<OsString>> {
    let mut buf = Vec::new();
    loop {
        let n = Errno::result(list(&mut buf)).map_err(errno_io)? as usize;
        if n == 0 {
            return Ok(Vec::new());
        }
        if buf.is_empty() {
            buf.resize(n, 0);
            continue;
        }
        match Errno::result(list(&mut buf)) {
            Ok(n) => {
                buf.truncate(n as usize);
                return Ok(buf
                    .split(|b| *b == 0)
                    .filter(|k| !k.is_empty())
                    .map(|k| OsString::from_vec(k.to_vec()))
                    .collect());
            }
            // Grown meanwhile: ask for the size again.
            Err(Errno::ERANGE) => buf.clear(),
            Err(e) => return Err(errno_io(e)),
        }
    }
}

impl DirFd {
    /// Metadata of this directory.
    pub(crate) fn stat_self(&self) -> io::Result<FileStat> {
        fstat(self).map_err(errno_io)
    }

    /// Metadata of `name` (not followed); `None` when absent.
    pub(crate) fn stat(&self, name: &OsStr) -> io::Result<Option<FileStat>> {
        match fstatat(self, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::ENOENT) => Ok(None),
            Err(e) => Err(errno_io(e)),
        }
    }

    /// Open the subdirectory `name`; fails if it is a symlink.
    pub fn open_subdir(&self, name: &OsStr) -> io::Result<DirFd> {
        let fd = openat(
            self,
            name,
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno_io)?;
        Ok(DirFd(Arc::new(fd)))
    }

    /// Create directory `name`.
    pub fn mkdir(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        mkdirat(self, name, Mode::from_bits_truncate(mode)).map_err(errno_io)
    }

    /// Create a new regular file `name` for writing; fails if anything
    /// (a symlink included) is already there.
    pub fn create_file(&self, name: &OsStr, mode: u32) -> io::Result<File> {
        let fd = openat(
            self,
            name,
            OFlag::O_WRONLY
                | OFlag::O_CREAT
                | OFlag::O_EXCL
                | OFlag::O_NOFOLLOW
                | OFlag::O_CLOEXEC
                | OFlag::O_NOCTTY,
            Mode::from_bits_truncate(mode),
        )
        .map_err(errno_io)?;
        Ok(File::from(fd))
    }

    /// Create symlink `name` holding `target` verbatim.
    pub fn symlink(&self, name: &OsStr, target: &OsStr) -> io::Result<()> {
        symlinkat(target, self, name).map_err(errno_io)
    }

    /// Make `name` a hard link to `src_name` in `src_dir` (a symlink there
    /// is linked itself, not followed).
    pub(crate) fn hardlink(
        &self,
        name: &OsStr,
        src_dir: &DirFd,
        src_name: &OsStr,
    ) -> io::Result<()> {
        linkat(src_dir, src_name, self, name, AtFlags::empty()).map_err(errno_io)
    }

    /// Create a device node or FIFO `name`.
    pub(crate) fn mknod(
        &self,
        name: &OsStr,
        kind: SFlag,
        mode: u32,
        dev: libc::dev_t,
    ) -> io::Result<()> {
        mknodat(self, name, kind, Mode::from_bits_truncate(mode), dev).map_err(errno_io)
    }

    /// Change the owner of `name` (a symlink itself, not its target).
    pub(crate) fn chown(&self, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        fchownat(
            self,
            name,
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(errno_io)
    }

    /// Change the mode of `name`, never following a symlink.
    pub(crate) fn chmod(&self, name: &OsStr, mode: u32) -> io::Result<()> {
        let c_name = cstring(name)?;
        // SAFETY: valid fd and NUL-terminated name.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_fchmodat2,
                self.as_fd().as_raw_fd(),
                c_name.as_ptr(),
                mode as libc::mode_t,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        match Errno::result(rc) {
            Ok(_) => Ok(()),
            // Kernels before 6.6: check the type, then plain fchmodat.
            Err(Errno::ENOSYS) => {
                let st = self.stat(name)?.ok_or_else(|| errno_io(Errno::ENOENT))?;
                if st.st_mode & libc::S_IFMT == libc::S_IFLNK {
                    return Err(errno_io(Errno::EOPNOTSUPP));
                }
                nix::sys::stat::fchmodat(
                    self,
                    name,
                    Mode::from_bits_truncate(mode),
                    nix::sys::stat::FchmodatFlags::FollowSymlink,
                )
                .map_err(errno_io)
            }
            Err(e) => Err(errno_io(e)),
        }
    }

    /// Set access and modification times of `name` (not followed).
    pub(crate) fn set_times(
        &self,
        name: &OsStr,
        atime: &TimeSpec,
        mtime: &TimeSpec,
    ) -> io::Result<()> {
        nix::sys::stat::utimensat(self, name, atime, mtime, UtimensatFlags::NoFollowSymlink)
            .map_err(errno_io)
    }

    /// Set extended attribute `key` on `name` (a symlink itself).
    pub(crate) fn set_xattr(&self, name: &OsStr, key: &OsStr, value: &[u8]) -> io::Result<()> {
        let path = self.proc_path(name)?;
        let key = cstring(key)?;
        // SAFETY: NUL-terminated strings, value pointer and length match.
        let rc = unsafe {
            libc::lsetxattr(
                path.as_ptr(),
                key.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        Errno::result(rc).map(drop).map_err(errno_io)
    }

    /// The names of the extended attributes of `name` (a symlink itself).
    pub(crate) fn list_xattrs(&self, name: &OsStr) -> io::Result<Vec<OsString>> {
        let path = self.proc_path(name)?;
        // SAFETY: NUL-terminated path; the buffer pointer and length match.
        list_xattrs_with(|buf| unsafe {
            libc::llistxattr(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len())
        })
    }

    /// Remove extended attribute `key` of `name` (a symlink itself).
    pub(crate) fn remove_xattr(&self, name: &OsStr, key: &OsStr) -> io::Result<()> {
        let path = self.proc_path(name)?;
        let key = cstring(key)?;
        // SAFETY: NUL-terminated strings.
        let rc = unsafe { libc::lremovexattr(path.as_ptr(), key.as_ptr()) };
        Errno::result(rc).map(drop).map_err(errno_io)
    }

    /// `name` in this directory as a path for the `l*xattr` calls: the
    /// magic link names this very directory, and the final component is
    /// not followed.
    fn proc_path(&self, name: &OsStr) -> io::Result<CString> {
        let mut path = format!("/proc/self/fd/{}/", self.as_fd().as_raw_fd()).into_bytes();
        path.extend_from_slice(name.as_bytes());
        cstring(OsStr::from_bytes(&path))
    }

    /// The names in this directory, without `.` and `..`.
    pub(crate) fn list(&self) -> io::Result<Vec<OsString>> {
        // A fresh open: its own offset, and closedir owns it.
        let fd = openat(
            self,
            ".",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno_io)?;
        let raw = fd.into_raw_fd();
        // SAFETY: raw is an open directory fd whose ownership passes to dirp.
        let dirp = unsafe { libc::fdopendir(raw) };
        if dirp.is_null() {
            let err = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so raw is still ours to close.
            unsafe { libc::close(raw) };
            return Err(err);
        }
        let mut names = Vec::new();
        let result = loop {
            Errno::clear();
            // SAFETY: dirp is a valid DIR stream until closedir below.
            let ent = unsafe { libc::readdir64(dirp) };
            if ent.is_null() {
                match Errno::last_raw() {
                    0 => break Ok(()),
                    e => break Err(io::Error::from_raw_os_error(e)),
                }
            }
            // SAFETY: readdir returned a valid entry with a NUL-terminated name.
            let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) }.to_bytes();
            if name != b"." && name != b".." {
                names.push(OsString::from_vec(name.to_vec()));
            }
        };
        // SAFETY: dirp is valid and closed exactly once.
        unsafe { libc::closedir(dirp) };
        result.map(|()| names)
    }

    /// Remove `name` whatever it is; directories recursively. Symlinks are
    /// removed, never followed. `Ok(false)` when absent.
    fn remove(&self, name: &OsStr) -> io::Result<bool> {
        match unlinkat(self, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => Ok(true),
            Err(Errno::ENOENT) => Ok(false),
            Err(Errno::EISDIR) => self.remove_tree(name).map(|()| true),
            Err(e) => Err(errno_io(e)),
        }
    }

    /// Remove directory `name` and everything below it with a bounded
    /// number of open descriptors, however deep the tree (a layer can nest
    /// thousands of directories, more than the fd limit): only the
    /// directory being emptied is open. Its parent is reopened through
    /// `..` on the way back up, and checked to be the one it came from.
    fn remove_tree(&self, name: &OsStr) -> io::Result<()> {
        struct Level {
            /// This directory's name in its parent.
            name: OsString,
            /// Identity of the parent, to check the reopened `..`.
            parent_id: (u64, u64),
            /// Children not yet removed.
            todo: Vec<OsString>,
        }
        let open = |parent: &DirFd, name: OsString| -> io::Result<(DirFd, Level)> {
            let parent_id = file_id(&parent.stat_self()?);
            let dir = parent.open_subdir(&name)?;
            // Read-only directories must still be emptied when not root.
            let mode = dir.stat_self()?.st_mode & 0o7777;
            if mode & 0o700 != 0o700 {
                nix::sys::stat::fchmod(&dir, Mode::from_bits_truncate(mode | 0o700))
                    .map_err(errno_io)?;
            }
            let todo = dir.list()?;
            Ok((
                dir,
                Level {
                    name,
                    parent_id,
                    todo,
                },
            ))
        };
        let (mut dir, first) = open(self, name.to_os_string())?;
        let mut levels = vec![first];
        while let Some(level) = levels.last_mut() {
            if let Some(child) = level.todo.pop() {
                match unlinkat(&dir, child.as_os_str(), UnlinkatFlags::NoRemoveDir) {
                    Ok(()) | Err(Errno::ENOENT) => {}
                    Err(Errno::EISDIR) => {
                        let (sub, next) = open(&dir, child)?;
                        dir = sub;
                        levels.push(next);
                    }
                    Err(e) => return Err(errno_io(e)),
                }
                continue;
            }
            let Some(done) = levels.pop() else { break };
            let parent = if levels.is_empty() {
                self.clone()
            } else {
                let parent = dir.open_parent()?;
                if file_id(&parent.stat_self()?) != done.parent_id {
                    return Err(io::Error::other("directory moved while being removed"));
                }
                parent
            };
            unlinkat(&parent, done.name.as_os_str(), UnlinkatFlags::RemoveDir).map_err(errno_io)?;
            dir = parent;
        }
        Ok(())
    }

    /// This directory's parent (`..`); callers make sure this directory is
    /// below the root.
    fn open_parent(&self) -> io::Result<DirFd> {
        let fd = openat(
            self,
            "..",
            OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno_io)?;
        Ok(DirFd(Arc::new(fd)))
    }
}

fn file_id(st: &FileStat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}

/// Remove `path` whatever it is (directories recursively, never following
/// a symlink below `path`), with a bounded number of open descriptors.
/// Absent is fine.
pub fn remove_all(path: &Path) -> io::Result<()> {
    let (parent, name) = match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) if !p.as_os_str().is_empty() => (p, n),
        (_, Some(n)) => (Path::new("."), n),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "not a removable path",
            ));
        }
    };
    let fd = nix::fcntl::open(
        parent,
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .map_err(errno_io)?;
    DirFd(Arc::new(fd)).remove(name).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, symlink};

    #[test]
    fn clean_path_rules() {
        let ok =
            |raw: &str, want: &str| assert_eq!(clean_path(raw.as_bytes()), Ok(PathBuf::from(want)));
        ok("/etc/passwd", "etc/passwd");
        ok("./a//b/./c/", "a/b/c");
        ok("a/../b", "b");
        ok("./", "");
        ok("/", "");
        assert!(clean_path(b"../x").is_err());
        assert!(clean_path(b"a/../../x").is_err());
        assert!(clean_path(b"a\0b").is_err());
    }

    #[test]
    fn parents_are_made_inside_the_root_only() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("var")).unwrap();
        symlink("/run", root.join("var/run")).unwrap();
        symlink("../../../../../../opt/x", root.join("up")).unwrap();
        symlink("/missing/../../../../srv", root.join("dd")).unwrap();
        symlink(tmp.path(), root.join("host")).unwrap();
        let before: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        let r = RootDir::open(&root).unwrap();
        for (path, made) in [
            ("var/run/a/b/f", "run/a/b"),
            ("up/f", "opt/x"),
            ("dd/f", "srv"),
            (
                "host/f",
                tmp.path().strip_prefix("/").unwrap().to_str().unwrap(),
            ),
        ] {
            // Without `create`, what is missing stays missing.
            let e = r.parent_of(Path::new(path), false).unwrap_err();
            assert_eq!(errno_of(&e), Some(libc::ENOENT), "{path}: {e}");
            let (dir, name) = r.parent_of(Path::new(path), true).unwrap();
            assert_eq!(name, "f");
            let want = std::fs::metadata(root.join(made)).unwrap();
            let got = dir.stat_self().unwrap();
            assert_eq!((got.st_dev, got.st_ino), (want.dev(), want.ino()), "{path}");
        }
        assert!(!root.join("missing").exists());
        let after: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(before, after, "something was made outside the root");

        // What stops a walk is named.
        std::fs::write(root.join("file"), "").unwrap();
        symlink("loop2", root.join("loop1")).unwrap();
        symlink("/loop1", root.join("loop2")).unwrap();
        for (path, errno, says) in [
            (
                "file/x/f",
                libc::ENOTDIR,
                "/file: is a regular file, not a directory",
            ),
            ("loop1/f", libc::ELOOP, "symlink loop"),
        ] {
            let e = r.parent_of(Path::new(path), true).unwrap_err();
            assert_eq!(errno_of(&e), Some(errno), "{path}: {e}");
            assert!(e.to_string().contains(says), "{path}: {e}");
        }
        let long = format!("{}/f", "n".repeat(300));
        let e = r.parent_of(Path::new(&long), true).unwrap_err();
        assert_eq!(errno_of(&e), Some(libc::ENAMETOOLONG), "{e}");
    }

    #[test]
    fn read_file_stays_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let host = tmp.path().join("host-secret");
        std::fs::write(&host, "host").unwrap();
        std::fs::write(root.join("etc/real"), "inside").unwrap();
        // Absolute, relative-climbing and chained symlinks all stay in root.
        symlink(&host, root.join("etc/abs")).unwrap();
        symlink("../../../host-secret", root.join("etc/rel")).unwrap();
        symlink("/etc/rel", root.join("etc/chain")).unwrap();
        symlink("/etc/real", root.join("etc/good")).unwrap();
        let r = RootDir::open(&root).unwrap();
        assert_eq!(r.read_file("/etc/abs", 100).unwrap(), None);
        assert_eq!(r.read_file("etc/rel", 100).unwrap(), None);
        assert_eq!(r.read_file("etc/chain", 100).unwrap(), None);
        assert_eq!(r.read_file("/etc/good", 100).unwrap().unwrap(), b"inside");
        assert_eq!(
            r.read_file("/../../etc/real", 100).unwrap().unwrap(),
            b"inside"
        );
        assert!(r.read_file("/etc/real", 3).is_err());
        assert!(r.read_file("/etc", 100).is_err());
    }
}
