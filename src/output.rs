//! Atomic outputs: every file or directory is built under a temporary name
//! beside its target and renamed into place only when complete. Dropping an
//! uncommitted output removes the temporary, so a failure never leaves
//! something that looks finished. A temporary is locked while its process
//! lives, and starting an output sweeps the temporaries beside it that
//! killed processes left (see [`crate::leftovers`]).

use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::leftovers::{self, Held};
use crate::{Error, Result};

/// How many times to start over when a sweeper removed a temporary in the
/// instant between its creation and its lock (each time under a new name).
const ATTEMPTS: usize = 8;

/// An output under construction.
#[derive(Debug)]
pub struct Staged {
    tmp: PathBuf,
    target: PathBuf,
    is_dir: bool,
    committed: bool,
    /// The lock on the temporary; dropped after it is renamed or removed.
    held: Option<Held>,
}

impl Staged {
    /// Start a file output. An existing file at `target` is replaced on
    /// commit (atomically), never touched before. Anything else there (a
    /// directory, a device such as `/dev/null`, a FIFO) is refused: the
    /// rename would put a regular file in its place.
    pub fn file(target: &Path) -> Result<(Staged, File)> {
        if let Ok(meta) = fs::metadata(target)
            && !meta.is_file()
        {
            return Err(Error::Usage(format!(
                "{}: is a {}, not a file; give the path of a file to write \
                 (occystrap writes the output whole, then moves it into place)",
                target.display(),
                kind_of(&meta.file_type())
            )));
        }
        Staged::sweep_beside(target);
        for _ in 0..ATTEMPTS {
            let mut staged = Staged::new(target, false)?;
            let file = File::options()
                .write(true)
                .read(true)
                .create_new(true)
                .open(&staged.tmp)
                .map_err(|e| Error::io(&staged.tmp, e))?;
            let handle = file.try_clone().map_err(|e| Error::io(&staged.tmp, e))?;
            if staged.hold(handle)? {
                return Ok((staged, file));
            }
        }
        Err(Staged::swept_away(target))
    }

    /// Start a directory output. An existing `target` is refused unless
    /// `replace` is set; then it is swapped out only on commit.
    pub fn dir(target: &Path, replace: bool) -> Result<Staged> {
        Staged::dir_mode(target, replace, 0o755)
    }

    /// Like [`Staged::dir`], but the directory is 0700 from its creation
    /// on: for outputs holding an image's filesystem, whose setuid
    /// binaries and 0666 device nodes no other host user may reach.
    pub fn private_dir(target: &Path, replace: bool) -> Result<Staged> {
        Staged::dir_mode(target, replace, 0o700)
    }

    fn dir_mode(target: &Path, replace: bool, mode: u32) -> Result<Staged> {
        if let Ok(meta) = fs::symlink_metadata(target) {
            if !replace {
                return Err(Error::OutputExists {
                    path: target.to_path_buf(),
                });
            }
            // Replacing means replacing a directory, never a device or file
            // (a symlink is judged by what it points to).
            let kind = fs::metadata(target).map_or(meta.file_type(), |m| m.file_type());
            if !kind.is_dir() {
                return Err(Error::Usage(format!(
                    "{}: is a {}, not a directory; --force only replaces a directory",
                    target.display(),
                    kind_of(&kind)
                )));
            }
        }
        Staged::sweep_beside(target);
        for _ in 0..ATTEMPTS {
            let mut staged = Staged::new(target, true)?;
            fs::DirBuilder::new()
                .mode(mode)
                .create(&staged.tmp)
                .map_err(|e| Error::io(&staged.tmp, e))?;
            // A sweeper beside us may remove the directory before it is
            // opened and locked: then start over under a new name.
            let handle = match File::options()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW)
                .open(&staged.tmp)
            {
                Ok(handle) => handle,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&staged.tmp, e)),
            };
            if staged.hold(handle)? {
                return Ok(staged);
            }
        }
        Err(Staged::swept_away(target))
    }

    /// Remove what killed processes left beside `target` (our names only,
    /// never a temporary a live process holds).
    fn sweep_beside(target: &Path) {
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        leftovers::sweep(parent, leftovers::is_staged_name);
    }

    /// Lock the temporary just created; false when a sweeper removed it
    /// first (then nothing of ours is at that path).
    fn hold(&mut self, handle: File) -> Result<bool> {
        match leftovers::hold(&self.tmp, handle) {
            Ok(Some(held)) => {
                self.held = Some(held);
                Ok(true)
            }
            Ok(None) => {
                self.committed = true;
                Ok(false)
            }
            Err(e) => Err(Error::io(&self.tmp, e)),
        }
    }

    fn swept_away(target: &Path) -> Error {
        Error::io(
            target,
            std::io::Error::other("its temporary kept being removed while it was created"),
        )
    }

    fn new(target: &Path, is_dir: bool) -> Result<Staged> {
        let name = target
            .file_name()
            .ok_or_else(|| Error::Usage(format!("{}: not a file name", target.display())))?;
        let parent = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if !parent.is_dir() {
            return Err(Error::io(
                &parent,
                std::io::Error::new(std::io::ErrorKind::NotFound, "directory does not exist"),
            ));
        }
        let tmp = parent.join(format!(
            ".{}.occystrap-{}-{}.tmp",
            name.to_string_lossy(),
            std::process::id(),
            unique_suffix()
        ));
        Ok(Staged {
            tmp,
            target: target.to_path_buf(),
            is_dir,
            committed: false,
            held: None,
        })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Move the finished output into place.
    /// Move the finished output into place unless something is there
    /// already (then it is removed, and `false` returned): for outputs
    /// others may make at the same time and that must never be replaced
    /// under their users (a stored layer another process has mounted).
    pub fn commit_if_absent(mut self) -> Result<bool> {
        let (from, to) = (cstring(&self.tmp)?, cstring(&self.target)?);
        // SAFETY: both are NUL-terminated paths that outlive the call.
        let renamed = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if renamed == 0 {
            self.committed = true;
            return Ok(true);
        }
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EEXIST) {
            // Dropping `self` removes ours.
            return Ok(false);
        }
        Err(Error::io(&self.target, err))
    }

    pub fn commit(mut self) -> Result<()> {
        if self.is_dir && fs::symlink_metadata(&self.target).is_ok() {
            // A directory cannot be renamed over a non-empty one: swap the old
            // one aside first, then remove it once the new one is in place.
            let old = self.tmp.with_extension("old");
            // Locked before it takes a temporary's name, so that no sweeper
            // removes the old output while it may still have to go back.
            let _old_held = leftovers::try_hold_dir(&self.target);
            fs::rename(&self.target, &old).map_err(|e| Error::io(&self.target, e))?;
            if let Err(e) = fs::rename(&self.tmp, &self.target) {
                let _ = fs::rename(&old, &self.target);
                return Err(Error::io(&self.target, e));
            }
            remove_any(&old).map_err(|e| Error::io(&old, e))?;
        } else {
            fs::rename(&self.tmp, &self.target).map_err(|e| Error::io(&self.target, e))?;
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.committed {
            let _ = remove_any(&self.tmp);
        }
    }
}

/// What a non-regular file is, for messages.
fn kind_of(kind: &fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "directory"
    } else if kind.is_char_device() || kind.is_block_device() {
        "device"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_socket() {
        "socket"
    } else if kind.is_file() {
        "file"
    } else if kind.is_symlink() {
        "dangling symlink"
    } else {
        "special file"
    }
}

/// Remove whatever is at `path`, a tree however deep (with a bounded
/// number of descriptors) and however read-only; absent is fine.
fn remove_any(path: &Path) -> std::io::Result<()> {
    match crate::fsroot::remove_all(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

pub(crate) fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{nanos:x}{}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

fn cstring(path: &Path) -> Result<std::ffi::CString> {
    std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| Error::Usage(format!("{}: a NUL byte in the path", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::fs::FileTypeExt;

    #[test]
    fn file_appears_only_on_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.tar");
        let (staged, mut f) = Staged::file(&target).unwrap();
        f.write_all(b"data").unwrap();
        assert!(!target.exists());
        staged.commit().unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"data");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn dropped_outputs_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (_s, mut f) = Staged::file(&dir.path().join("a.tar")).unwrap();
            f.write_all(b"partial").unwrap();
            let d = Staged::dir(&dir.path().join("bundle"), false).unwrap();
            fs::create_dir(d.path().join("rootfs")).unwrap();
        }
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn outputs_are_staged_while_another_process_sweeps_beside_them() {
        let dir = tempfile::tempdir().unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            // Another thread's open file description conflicts with our
            // locks as another process's would.
            scope.spawn(|| {
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    leftovers::sweep(dir.path(), leftovers::is_staged_name);
                }
            });
            for i in 0..3000 {
                let made = Staged::dir(&dir.path().join(format!("b{i}")), false)
                    .and_then(|d| Staged::file(&dir.path().join(format!("f{i}"))).map(|f| (d, f)));
                if let Err(e) = made {
                    done.store(true, std::sync::atomic::Ordering::Relaxed);
                    panic!("attempt {i}: {e}");
                }
            }
            done.store(true, std::sync::atomic::Ordering::Relaxed);
        });
    }

    #[test]
    fn only_a_regular_file_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let link = dir.path().join("to-null");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        for (target, kind) in [
            (Path::new("/dev/null"), "device"),
            (link.as_path(), "device"),
            (fifo.as_path(), "FIFO"),
            (dir.path(), "directory"),
        ] {
            let err = Staged::file(target).unwrap_err();
            assert!(matches!(err, Error::Usage(_)), "{err}");
            assert!(err.to_string().contains(&format!("is a {kind}")), "{err}");
        }
        let kinds = |p: &Path| fs::symlink_metadata(p).unwrap().file_type();
        assert!(kinds(&fifo).is_fifo() && kinds(&link).is_symlink());
        assert!(kinds(Path::new("/dev/null")).is_char_device());
        // Nothing was staged beside them.
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn private_dirs_are_private_from_the_start() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let target = dir.path().join("bundle");
        let s = Staged::private_dir(&target, false).unwrap();
        assert_eq!(mode(s.path()), 0o700);
        s.commit().unwrap();
        assert_eq!(mode(&target), 0o700);
        let s = Staged::private_dir(&target, true).unwrap();
        s.commit().unwrap();
        assert_eq!(mode(&target), 0o700);
    }

    #[test]
    fn existing_dir_refused_unless_replace() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("bundle");
        fs::create_dir(&target).unwrap();
        fs::write(target.join("old"), b"x").unwrap();
        assert!(matches!(
            Staged::dir(&target, false),
            Err(Error::OutputExists { .. })
        ));
        let file = dir.path().join("file");
        fs::write(&file, b"not a bundle").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        let dangling = dir.path().join("dangling");
        std::os::unix::fs::symlink("nowhere", &dangling).unwrap();
        for (path, kind) in [
            (file.as_path(), "file"),
            (Path::new("/dev/null"), "device"),
            (link.as_path(), "device"),
            (dangling.as_path(), "dangling symlink"),
        ] {
            let err = Staged::dir(path, true).unwrap_err();
            assert!(err.to_string().contains(&format!("is a {kind}")), "{err}");
        }
        assert!(
            Path::new("/dev/null")
                .metadata()
                .unwrap()
                .file_type()
                .is_char_device()
        );
        for path in [&file, &link, &dangling] {
            fs::remove_file(path).unwrap();
        }
        let s = Staged::dir(&target, true).unwrap();
        fs::write(s.path().join("new"), b"y").unwrap();
        s.commit().unwrap();
        assert!(target.join("new").exists() && !target.join("old").exists());
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
