//! A copy of an image's stored layers, merged as overlayfs merges them,
//! whose files share the layers' blocks where the filesystem can
//! (reflinks: XFS, btrfs), for `--rootfs store-copy`.
//!
//! The layer directories are read straight, not through an overlay mount:
//! overlayfs refuses to clone, or to `copy_file_range`, across itself
//! (EXDEV), so a copy of the mount copies every byte. Each directory is
//! merged as overlayfs does it: an entry comes from the topmost layer that
//! has it, a 0/0 character device (a whiteout) hides it, and an opaque
//! directory (`trusted.overlay.opaque=y`, or `user.` in a store made
//! rootless) hides the layers below. Each
//! entry is made anew with its owner, mode, xattrs (overlayfs's own left
//! out, escaped ones unescaped), times and hardlinks; a file's data is
//! cloned (`FICLONE`), or where the filesystem cannot clone, copied in the
//! kernel with its holes kept. Directories are shared out to a few
//! threads. Layer directories are walked by descriptor and never through a
//! symlink; the copy is a fresh, private tree of this process's.

use std::collections::{HashMap, HashSet};
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid};

/// overlayfs's xattrs in a store: `NS.overlay.*`, where NS is `trusted`
/// (a store made by root) or `user` (`userxattr`); an image's own xattrs
/// of such a name are escaped as `NS.overlay.overlay.*`.
struct Xattrs {
    own: Vec<u8>,
    escaped: Vec<u8>,
    opaque: CString,
}

impl Xattrs {
    fn new(namespace: &str) -> io::Result<Xattrs> {
        Ok(Xattrs {
            own: format!("{namespace}.overlay.").into_bytes(),
            escaped: format!("{namespace}.overlay.overlay.").into_bytes(),
            opaque: CString::new(format!("{namespace}.overlay.opaque"))?,
        })
    }
}

/// Copy the merged tree of `layers` (stored layer directories, lowest
/// first, whose overlayfs xattrs are in `namespace`: `trusted` or `user`)
/// into `dest`, an empty directory whose own metadata is left as it is.
pub fn copy(dest: &Path, layers: &[PathBuf], namespace: &str) -> io::Result<()> {
    let tops: Vec<(usize, Arc<OwnedFd>)> = layers
        .iter()
        .rev()
        .enumerate()
        .map(|(i, l)| Ok((i, Arc::new(open_dir(None, l.as_os_str())?))))
        .collect::<io::Result<_>>()?;
    let work = Work {
        root: dest.to_path_buf(),
        xattrs: Xattrs::new(namespace)?,
        queue: Mutex::new(Queue {
            jobs: vec![Dir {
                dest: dest.to_path_buf(),
                parent: tops,
                name: None,
            }],
            busy: 0,
            failed: None,
        }),
        ready: Condvar::new(),
        links: Mutex::new(HashMap::new()),
        dirs: Mutex::new(Vec::new()),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| work.run());
        }
    });
    let queue = work.queue.into_inner().map_err(|_| poisoned())?;
    if let Some(e) = queue.failed {
        return Err(e);
    }
    // Last: making their entries changed the directories' times.
    for (path, stat) in work.dirs.into_inner().map_err(|_| poisoned())? {
        set_times(None, path.as_os_str(), &stat).map_err(|e| at(dest, &path, e))?;
    }
    Ok(())
}

/// A directory to fill: where it goes, and where to find the layers'
/// directories at its path that overlayfs would merge, topmost first, with
/// each layer's index.
/// (The layers' directories at its own path are opened when it is
/// filled, from its parent's: a queue of thousands of directories holds
/// only their parents' descriptors open.)
struct Dir {
    dest: PathBuf,
    /// The parent's layers from the one that provides this directory
    /// down; this directory's name in them (none for the top).
    parent: Vec<(usize, Arc<OwnedFd>)>,
    name: Option<OsString>,
}

struct Queue {
    jobs: Vec<Dir>,
    /// Threads working on a directory (and maybe about to add more).
    busy: usize,
    failed: Option<io::Error>,
}

struct Work {
    /// The copy's top, for messages.
    root: PathBuf,
    xattrs: Xattrs,
    queue: Mutex<Queue>,
    ready: Condvar,
    /// A hardlinked inode (layer, inode number) → its first copy.
    links: Mutex<HashMap<(usize, u64), PathBuf>>,
    /// Directories made, for their times at the end.
    dirs: Mutex<Vec<(PathBuf, FileStat)>>,
}

fn poisoned() -> io::Error {
    io::Error::other("a copy thread failed")
}

/// `e`, saying where under `root` (the copy's top) it happened.
fn at(root: &Path, path: &Path, e: impl Into<io::Error>) -> io::Error {
    let e = e.into();
    let path = path.strip_prefix(root).unwrap_or(path);
    io::Error::new(e.kind(), format!("{}: {e}", crate::escape::path(path)))
}

impl Work {
    /// Take directories until there are none left and no thread can add one.
    fn run(&self) {
        let mut copier = Copier {
            kernel_copy: true,
            buf: Vec::new(),
        };
        loop {
            let job = {
                let Ok(mut queue) = self.queue.lock() else {
                    return;
                };
                loop {
                    if queue.failed.is_some() {
                        return;
                    }
                    if let Some(job) = queue.jobs.pop() {
                        queue.busy += 1;
                        break job;
                    }
                    if queue.busy == 0 {
                        self.ready.notify_all();
                        return;
                    }
                    queue = match self.ready.wait(queue) {
                        Ok(queue) => queue,
                        Err(_) => return,
                    };
                }
            };
            let result = self.dir(&job, &mut copier);
            let Ok(mut queue) = self.queue.lock() else {
                return;
            };
            queue.busy -= 1;
            if let Err(e) = result {
                queue.failed.get_or_insert(e);
            }
            self.ready.notify_all();
        }
    }

    /// Merge one directory's entries into `job.dest`.
    fn dir(&self, job: &Dir, copier: &mut Copier) -> io::Result<()> {
        let dest =
            open_dir(None, job.dest.as_os_str()).map_err(|e| at(&self.root, &job.dest, e))?;
        let layers = match &job.name {
            None => job.parent.clone(),
            Some(name) => {
                // Down to the first layer with something else at this name.
                let mut layers = Vec::new();
                for (index, layer) in &job.parent {
                    match nix::sys::stat::fstatat(
                        layer.as_ref(),
                        name.as_os_str(),
                        AtFlags::AT_SYMLINK_NOFOLLOW,
                    ) {
                        Ok(st) if kind(&st) == SFlag::S_IFDIR => {
                            layers.push((*index, Arc::new(open_dir(Some(layer), name)?)));
                        }
                        Ok(_) => break,
                        Err(Errno::ENOENT) => {}
                        Err(e) => return Err(at(&self.root, &job.dest, e)),
                    }
                }
                layers
            }
        };
        let mut seen = HashSet::new();
        let mut entries: Vec<(OsString, usize, FileStat)> = Vec::new();
        for (k, (_, layer)) in layers.iter().enumerate() {
            for name in names(layer)? {
                if !seen.insert(name.clone()) {
                    continue;
                }
                let stat = nix::sys::stat::fstatat(
                    layer.as_ref(),
                    name.as_os_str(),
                    AtFlags::AT_SYMLINK_NOFOLLOW,
                )?;
                if !is_whiteout(&stat) {
                    entries.push((name, k, stat));
                }
            }
            if is_opaque(layer, &self.xattrs) {
                break;
            }
        }
        let mut subdirs = Vec::new();
        for (name, k, stat) in entries {
            let path = job.dest.join(&name);
            let (index, layer) = &layers[k];
            self.entry(&dest, &path, &name, (*index, layer), &stat, copier)
                .map_err(|e| at(&self.root, &path, e))?;
            if kind(&stat) == SFlag::S_IFDIR {
                subdirs.push(Dir {
                    dest: path,
                    parent: layers[k..].to_vec(),
                    name: Some(name),
                });
            }
        }
        if !subdirs.is_empty() {
            let mut queue = self.queue.lock().map_err(|_| poisoned())?;
            queue.jobs.extend(subdirs);
            self.ready.notify_all();
        }
        Ok(())
    }

    /// Make `name` in `dest` (at `path`) as `layer` has it.
    fn entry(
        &self,
        dest: &OwnedFd,
        path: &Path,
        name: &OsStr,
        (index, layer): (usize, &OwnedFd),
        stat: &FileStat,
        copier: &mut Copier,
    ) -> io::Result<()> {
        let source = proc_path(layer, name)?;
        let target = CString::new(path.as_os_str().as_bytes())?;
        let (uid, gid) = (
            Some(Uid::from_raw(stat.st_uid)),
            Some(Gid::from_raw(stat.st_gid)),
        );
        let mode = Mode::from_bits_truncate(stat.st_mode & 0o7777);
        let kind = kind(stat);
        // Another name of an inode made already: a link to it. The lock is
        // held until the first name exists, so that no other links early.
        let mut links = None;
        if kind != SFlag::S_IFDIR && stat.st_nlink > 1 {
            let held = self.links.lock().map_err(|_| poisoned())?;
            if let Some(first) = held.get(&(index, stat.st_ino)) {
                return std::fs::hard_link(first, path);
            }
            links = Some(held);
        }
        let private = Mode::S_IRUSR | Mode::S_IWUSR;
        match kind {
            SFlag::S_IFDIR => nix::sys::stat::mkdirat(dest, name, Mode::S_IRWXU)?,
            SFlag::S_IFREG => {
                let file = File::from(nix::fcntl::openat(
                    dest,
                    name,
                    OFlag::O_WRONLY
                        | OFlag::O_CREAT
                        | OFlag::O_EXCL
                        | OFlag::O_NOFOLLOW
                        | OFlag::O_CLOEXEC,
                    private,
                )?);
                if let Some(mut held) = links.take() {
                    held.insert((index, stat.st_ino), path.to_path_buf());
                }
                if stat.st_size > 0 {
                    let from = File::from(nix::fcntl::openat(
                        layer,
                        name,
                        OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )?);
                    copier.data(&from, &file, stat.st_size)?;
                }
            }
            SFlag::S_IFLNK => {
                let to = nix::fcntl::readlinkat(layer, name)?;
                nix::unistd::symlinkat(to.as_os_str(), dest, name)?;
            }
            _ => nix::sys::stat::mknodat(dest, name, kind, private, stat.st_rdev)?,
        }
        if let Some(mut held) = links {
            held.insert((index, stat.st_ino), path.to_path_buf());
        }
        // After the data, which clears set-id bits and file capabilities;
        // the mode after the owner, for the same.
        nix::unistd::fchownat(dest, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)?;
        if kind != SFlag::S_IFLNK {
            let follow = nix::sys::stat::FchmodatFlags::FollowSymlink;
            nix::sys::stat::fchmodat(dest, name, mode, follow)?;
        }
        copy_xattrs(&source, &target, &self.xattrs)?;
        if kind == SFlag::S_IFDIR {
            // Last: the entries made in it change its times.
            self.dirs
                .lock()
                .map_err(|_| poisoned())?
                .push((path.to_path_buf(), *stat));
            return Ok(());
        }
        set_times(Some(dest), name, stat)
    }
}

fn kind(stat: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(stat.st_mode & libc::S_IFMT)
}

/// overlayfs's record of a removed path.
fn is_whiteout(stat: &FileStat) -> bool {
    kind(stat) == SFlag::S_IFCHR && stat.st_rdev == 0
}

/// Whether a stored directory hides the layers below it.
fn is_opaque(dir: &OwnedFd, xattrs: &Xattrs) -> bool {
    let mut value = [0u8; 2];
    // SAFETY: a NUL-terminated name and a buffer of the length given.
    let len = unsafe {
        libc::fgetxattr(
            dir.as_raw_fd(),
            xattrs.opaque.as_ptr(),
            value.as_mut_ptr().cast(),
            value.len(),
        )
    };
    len == 1 && value[0] == b'y'
}

/// The names in a directory.
fn names(dir: &OwnedFd) -> io::Result<Vec<OsString>> {
    std::fs::read_dir(format!("/proc/self/fd/{}", dir.as_raw_fd()))?
        .map(|e| e.map(|e| e.file_name()))
        .collect()
}

/// `name` in `dir`, as a path the `l*xattr` calls take without following
/// a symlink at its end.
fn proc_path(dir: &OwnedFd, name: &OsStr) -> io::Result<CString> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.as_bytes());
    Ok(CString::new(path)?)
}

/// Every xattr of `source` onto `target` (neither followed if a symlink),
/// but overlayfs's own; an image's escaped by overlayfs get their names
/// back.
fn copy_xattrs(source: &CString, target: &CString, xattrs: &Xattrs) -> io::Result<()> {
    let list = xattr_call(|buf, len| {
        // SAFETY: a NUL-terminated path and a buffer of the length given.
        unsafe { libc::llistxattr(source.as_ptr(), buf.cast(), len) }
    })?;
    for key in list.split(|&b| b == 0).filter(|k| !k.is_empty()) {
        let name = match key.strip_prefix(xattrs.escaped.as_slice()) {
            Some(rest) => [xattrs.own.as_slice(), rest].concat(),
            None if key.starts_with(&xattrs.own) => continue,
            None => key.to_vec(),
        };
        let key = CString::new(key)?;
        let value = xattr_call(|buf, len| {
            // SAFETY: as above, with a NUL-terminated name.
            unsafe { libc::lgetxattr(source.as_ptr(), key.as_ptr(), buf.cast(), len) }
        })?;
        let name = CString::new(name)?;
        // SAFETY: NUL-terminated path and name, and the value's bytes.
        let set = unsafe {
            libc::lsetxattr(
                target.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Call a `*xattr` getter with a buffer grown until the value fits.
fn xattr_call(call: impl Fn(*mut u8, usize) -> isize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        let len = call(buf.as_mut_ptr(), buf.len());
        if len >= 0 {
            buf.truncate(len as usize);
            return Ok(buf);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::ERANGE) || buf.len() >= 1 << 20 {
            return Err(e);
        }
        let size = buf.len() * 4;
        buf.resize(size, 0);
    }
}

/// Give `name` in `dir` (or the path `name`) the access and modification
/// times of `stat`, not following a symlink.
fn set_times(dir: Option<&OwnedFd>, name: &OsStr, stat: &FileStat) -> io::Result<()> {
    let times = [
        TimeSpec::new(stat.st_atime, stat.st_atime_nsec),
        TimeSpec::new(stat.st_mtime, stat.st_mtime_nsec),
    ];
    let flag = nix::sys::stat::UtimensatFlags::NoFollowSymlink;
    match dir {
        Some(dir) => nix::sys::stat::utimensat(dir, name, &times[0], &times[1], flag)?,
        None => nix::sys::stat::utimensat(nix::fcntl::AT_FDCWD, name, &times[0], &times[1], flag)?,
    }
    Ok(())
}

/// A directory (not a symlink to one) `name` under `parent`, or at `name`,
/// open for reading its entries.
fn open_dir(parent: Option<&OwnedFd>, name: &OsStr) -> io::Result<OwnedFd> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match parent {
        Some(fd) => nix::fcntl::openat(fd, name, flags, Mode::empty()),
        None => nix::fcntl::open(name, flags, Mode::empty()),
    };
    Ok(fd?)
}

/// Copies file data, one thread's worth.
struct Copier {
    /// `copy_file_range` works between these filesystems (until it fails).
    kernel_copy: bool,
    /// For copies the kernel will not make.
    buf: Vec<u8>,
}

impl Copier {
    /// `len` bytes of `source` into the empty `target`: cloned if the
    /// filesystem can, else copied with holes kept.
    fn data(&mut self, source: &File, target: &File, len: i64) -> io::Result<()> {
        // SAFETY: both descriptors are open for the call.
        let cloned = unsafe { libc::ioctl(target.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) };
        if cloned == 0 {
            return Ok(());
        }
        let mut pos = 0;
        while pos < len {
            let data = match nix::unistd::lseek(source, pos, nix::unistd::Whence::SeekData) {
                Ok(data) => data,
                Err(Errno::ENXIO) => break,
                // No hole-finding here: all of it is data.
                Err(Errno::EINVAL) => pos,
                Err(e) => return Err(e.into()),
            };
            let hole = nix::unistd::lseek(source, data, nix::unistd::Whence::SeekHole)
                .unwrap_or(len)
                .min(len);
            self.range(source, target, data, hole - data)?;
            pos = hole;
        }
        target.set_len(len as u64)
    }

    fn range(&mut self, source: &File, target: &File, at: i64, len: i64) -> io::Result<()> {
        let (mut off_in, mut off_out, end) = (at, at, at + len);
        while self.kernel_copy && off_in < end {
            let left = (end - off_in) as usize;
            match nix::fcntl::copy_file_range(
                source,
                Some(&mut off_in),
                target,
                Some(&mut off_out),
                left,
            ) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(_) => {}
                // Across filesystems, or one that cannot: copy it ourselves.
                Err(Errno::EXDEV | Errno::EOPNOTSUPP | Errno::ENOSYS | Errno::EINVAL) => {
                    self.kernel_copy = false;
                }
                Err(e) => return Err(e.into()),
            }
        }
        self.buf.resize(1 << 20, 0);
        while off_in < end {
            let want = ((end - off_in) as usize).min(self.buf.len());
            let got = source.read_at(&mut self.buf[..want], off_in as u64)?;
            if got == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            target.write_all_at(&self.buf[..got], off_in as u64)?;
            off_in += got as i64;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set_xattr(path: &Path, name: &str, value: &[u8]) {
        let (path, name) = (
            CString::new(path.as_os_str().as_bytes()).unwrap(),
            CString::new(name).unwrap(),
        );
        // SAFETY: NUL-terminated path and name, and the value's bytes.
        let set = unsafe {
            libc::lsetxattr(
                path.as_ptr(),
                name.as_ptr(),
                value.as_ptr().cast(),
                value.len(),
                0,
            )
        };
        assert_eq!(set, 0, "{}", io::Error::last_os_error());
    }

    fn xattr_names(path: &Path) -> Vec<String> {
        let path = CString::new(path.as_os_str().as_bytes()).unwrap();
        let list = xattr_call(|buf, len| {
            // SAFETY: a NUL-terminated path and a buffer of the length given.
            unsafe { libc::llistxattr(path.as_ptr(), buf.cast(), len) }
        })
        .unwrap();
        let mut names: Vec<String> = list
            .split(|&b| b == 0)
            .filter(|k| !k.is_empty())
            .map(|k| String::from_utf8_lossy(k).into_owned())
            .collect();
        names.sort();
        names
    }

    /// Stored layers in overlayfs's form, made by hand (root: trusted
    /// xattrs and whiteout devices), merged as overlayfs would.
    #[test]
    fn layers_merge_as_overlayfs_merges_them() {
        let dir = tempfile::tempdir().unwrap();
        let (low, up, dest) = (
            dir.path().join("low"),
            dir.path().join("up"),
            dir.path().join("dest"),
        );
        for d in [
            "low/opaque",
            "low/kept",
            "low/gone-dir",
            "up/opaque",
            "up/kept",
            "dest",
        ] {
            std::fs::create_dir_all(dir.path().join(d)).unwrap();
        }
        for f in [
            "low/opaque/hidden",
            "low/kept/lower",
            "low/gone",
            "low/gone-dir/x",
        ] {
            std::fs::write(dir.path().join(f), f).unwrap();
        }
        std::fs::write(up.join("opaque/new"), b"new").unwrap();
        std::fs::write(up.join("kept/upper"), b"upper").unwrap();
        set_xattr(&up.join("opaque"), "trusted.overlay.opaque", b"y");
        for whiteout in ["gone", "gone-dir"] {
            nix::sys::stat::mknod(&up.join(whiteout), SFlag::S_IFCHR, Mode::empty(), 0).unwrap();
        }
        std::fs::write(up.join("tagged"), b"t").unwrap();
        set_xattr(&up.join("tagged"), "trusted.overlay.origin", b"");
        set_xattr(
            &up.join("tagged"),
            "trusted.overlay.overlay.mine",
            b"image's",
        );
        set_xattr(&up.join("tagged"), "user.kept", b"k");

        copy(&dest, &[low, up], "trusted").unwrap();
        let list = |d: &str| {
            let mut names: Vec<String> = std::fs::read_dir(dest.join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(list(""), ["kept", "opaque", "tagged"]);
        assert_eq!(list("opaque"), ["new"]);
        assert_eq!(list("kept"), ["lower", "upper"]);
        assert_eq!(
            std::fs::read(dest.join("kept/lower")).unwrap(),
            b"low/kept/lower"
        );
        assert_eq!(
            xattr_names(&dest.join("tagged")),
            ["trusted.overlay.mine", "user.kept"]
        );
        assert!(xattr_names(&dest.join("opaque")).is_empty());
    }
}
