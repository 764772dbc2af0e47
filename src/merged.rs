//! A copy of an image's stored layers whose files share the layers' blocks
//! where the filesystem can (reflinks: XFS, btrfs), for `--rootfs
//! store-copy`.
//!
//! `cp -a` of a read-only overlay of the layers gets every name, type,
//! owner, mode, time, xattr, hardlink, device and symlink right, but it
//! cannot share blocks: overlayfs refuses to clone, or to `copy_file_range`,
//! across itself (EXDEV). So `cp -a --attributes-only` makes the tree with
//! regular files empty, and [`fill`] then gives each regular file its data
//! straight from the layer that provides it: the topmost layer with an
//! entry at that path, which is what overlayfs shows. The data is cloned
//! (`FICLONE`), or where the filesystem cannot clone, copied in the kernel
//! with its holes kept. Layer directories are walked by descriptor and
//! never through a symlink.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{FileStat, Mode};

/// Give every regular file under `dest` (a merged tree made with
/// `cp -a --attributes-only`) its data from `layers` (lowest first). The
/// tree is walked first; the files are then filled on a few threads, since
/// each costs a handful of system calls and the kernel does the rest.
pub fn fill(dest: &Path, layers: &[PathBuf]) -> io::Result<()> {
    let tops: Vec<Option<Arc<OwnedFd>>> = layers
        .iter()
        .rev()
        .map(|l| open_dir(None, l.as_os_str()).map(|fd| Some(Arc::new(fd))))
        .collect::<io::Result<_>>()?;
    let mut jobs = Vec::new();
    plan(dest, &tops, &mut HashSet::new(), &mut jobs)?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let share = jobs.len().div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let workers: Vec<_> = jobs
            .chunks(share)
            .map(|part| {
                scope.spawn(move || {
                    let mut copier = Copier {
                        kernel_copy: true,
                        buf: Vec::new(),
                    };
                    part.iter().try_for_each(|job| {
                        copier.file(job).map_err(|e| {
                            io::Error::new(e.kind(), format!("{}: {e}", job.dest.display()))
                        })
                    })
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .unwrap_or_else(|_| Err(io::Error::other("a copy thread failed")))
        })
    })
}

/// One regular file to fill: `name` in the layer directory `dir`.
struct Job {
    dest: PathBuf,
    dir: Arc<OwnedFd>,
    name: OsString,
    stat: FileStat,
}

/// The files under `dest` (a directory) and where their data is; `layers`
/// are its counterparts, topmost first (`None` where a layer has no
/// directory there). `seen` holds inodes planned already: a hardlink's
/// other names share its data.
fn plan(
    dest: &Path,
    layers: &[Option<Arc<OwnedFd>>],
    seen: &mut HashSet<(u64, u64)>,
    jobs: &mut Vec<Job>,
) -> io::Result<()> {
    for entry in std::fs::read_dir(dest)? {
        let entry = entry?;
        let (name, kind) = (entry.file_name(), entry.file_type()?);
        let path = entry.path();
        if kind.is_dir() {
            let below: Vec<Option<Arc<OwnedFd>>> = layers
                .iter()
                .map(|l| {
                    l.as_ref()
                        .and_then(|fd| open_dir(Some(fd), &name).ok())
                        .map(Arc::new)
                })
                .collect();
            plan(&path, &below, seen, jobs)?;
        } else if kind.is_file() {
            let meta = entry.metadata()?;
            if !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            // The topmost entry is what the merged tree shows: a file
            // there means no whiteout or opaque directory above hid it.
            let found = layers.iter().flatten().find_map(|fd| {
                nix::sys::stat::fstatat(fd.as_ref(), name.as_os_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .ok()
                    .map(|st| (fd, st))
            });
            let what = match found {
                Some((_, st)) if st.st_mode & libc::S_IFMT != libc::S_IFREG => {
                    "the stored layers do not hold this as a file"
                }
                Some((fd, stat)) => {
                    if stat.st_size > 0 {
                        jobs.push(Job {
                            dest: path,
                            dir: fd.clone(),
                            name,
                            stat,
                        });
                    }
                    continue;
                }
                None => "no stored layer has this file",
            };
            return Err(io::Error::other(format!("{}: {what}", path.display())));
        }
    }
    Ok(())
}

/// Fills files, one thread's worth.
struct Copier {
    /// `copy_file_range` works between these filesystems (until it fails).
    kernel_copy: bool,
    /// For copies the kernel will not make.
    buf: Vec<u8>,
}

impl Copier {
    fn file(&mut self, job: &Job) -> io::Result<()> {
        let source = File::from(nix::fcntl::openat(
            job.dir.as_ref(),
            job.name.as_os_str(),
            OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?);
        let target = File::options().write(true).open(&job.dest)?;
        // SAFETY: both descriptors are open for the call.
        let cloned = unsafe { libc::ioctl(target.as_raw_fd(), libc::FICLONE, source.as_raw_fd()) };
        if cloned != 0 {
            self.copy_sparse(&source, &target, job.stat.st_size)?;
        }
        restore(&source, &target, &job.stat)
    }

    /// The data of `source` into `target`, holes left as holes.
    fn copy_sparse(&mut self, source: &File, target: &File, len: i64) -> io::Result<()> {
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
            self.copy_range(source, target, data, hole - data)?;
            pos = hole;
        }
        target.set_len(len as u64)
    }

    fn copy_range(&mut self, source: &File, target: &File, at: i64, len: i64) -> io::Result<()> {
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

/// What writing the data undid: the mode's set-id bits, the file
/// capabilities (removed on write) and the times.
fn restore(source: &File, target: &File, stat: &FileStat) -> io::Result<()> {
    const CAPS: &std::ffi::CStr = c"security.capability";
    let mut caps = [0u8; 64];
    // SAFETY: a NUL-terminated name and a buffer of the length given.
    let len = unsafe {
        libc::fgetxattr(
            source.as_raw_fd(),
            CAPS.as_ptr(),
            caps.as_mut_ptr().cast(),
            caps.len(),
        )
    };
    nix::sys::stat::fchmod(
        target.as_fd(),
        Mode::from_bits_truncate(stat.st_mode & 0o7777),
    )?;
    if len > 0 {
        // SAFETY: as above, with the bytes read.
        let set = unsafe {
            libc::fsetxattr(
                target.as_raw_fd(),
                CAPS.as_ptr(),
                caps.as_ptr().cast(),
                len as usize,
                0,
            )
        };
        if set != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let times = [
        nix::sys::time::TimeSpec::new(stat.st_atime, stat.st_atime_nsec),
        nix::sys::time::TimeSpec::new(stat.st_mtime, stat.st_mtime_nsec),
    ];
    nix::sys::stat::futimens(target.as_fd(), &times[0], &times[1])?;
    Ok(())
}

/// A directory (not a symlink to one) `name` under `parent`, or at `name`.
fn open_dir(parent: Option<&OwnedFd>, name: &std::ffi::OsStr) -> io::Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = match parent {
        Some(fd) => nix::fcntl::openat(fd, name, flags, Mode::empty()),
        None => nix::fcntl::open(name, flags, Mode::empty()),
    };
    Ok(fd?)
}
