//! What a killed process leaves behind, and how the next one tells it from
//! the work of a live one.
//!
//! Every temporary (a staged output `.NAME.occystrap-PID-N.tmp`, the
//! `.old` copy a replacement swaps aside, a blob cache file in `tmp/`) is
//! `flock`ed by its writer for as long as the writer works on it. The
//! kernel drops the lock when the process dies, however it dies (SIGKILL
//! included), so a temporary whose lock can be taken has no writer left and
//! can go. PIDs alone would not do: a dead writer's PID may be reused.
//!
//! The writer creates the file or directory first and locks it just after;
//! a sweeper that slips in between takes the lock and removes it. So the
//! writer, once it holds the lock, checks that its path still names what
//! it locked, and starts over with a new name if not. A sweeper removes
//! only while it holds the lock, so a writer blocked on the lock sees the
//! removal finished. Only entries owned by this user are considered, and
//! symlinks are never followed.

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::fsroot::RootDir;

/// A temporary held by this process; dropping it releases the lock.
#[derive(Debug)]
pub struct Held {
    _lock: Flock<File>,
}

/// Open `path` without following a symlink or blocking on a FIFO.
fn open_nofollow(path: &Path) -> io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
}

fn flock(file: File, arg: FlockArg) -> Result<Flock<File>, (File, Errno)> {
    let mut file = file;
    loop {
        match Flock::lock(file, arg) {
            Err((f, Errno::EINTR)) => file = f,
            other => return other,
        }
    }
}

/// Lock what was just created at `path` (`opened` is a handle on it).
/// `Ok(None)` when a sweeper removed it in the meantime: create it again
/// under a new name.
pub fn hold(path: &Path, opened: File) -> io::Result<Option<Held>> {
    let lock = flock(opened, FlockArg::LockExclusive).map_err(|(_, e)| io::Error::from(e))?;
    let mine = lock.metadata()?;
    match fs::symlink_metadata(path) {
        Ok(now) if (now.dev(), now.ino()) == (mine.dev(), mine.ino()) => {
            Ok(Some(Held { _lock: lock }))
        }
        Ok(_) => Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Lock an existing directory (not a symlink to one) if no one else holds
/// it; `None` otherwise.
pub fn try_hold_dir(path: &Path) -> Option<Held> {
    let dir = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path)
        .ok()?;
    let lock = flock(dir, FlockArg::LockExclusiveNonblock).ok()?;
    Some(Held { _lock: lock })
}

/// Whether `name` is a staged output's temporary:
/// `.NAME.occystrap-PID-N.tmp` or `.NAME.occystrap-PID-N.old`.
pub fn is_staged_name(name: &OsStr) -> bool {
    let Some(name) = name.to_str() else {
        return false;
    };
    let Some(rest) = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp").or_else(|| n.strip_suffix(".old")))
    else {
        return false;
    };
    let Some((output, ids)) = rest.rsplit_once(".occystrap-") else {
        return false;
    };
    let Some((pid, unique)) = ids.split_once('-') else {
        return false;
    };
    !output.is_empty()
        && !pid.is_empty()
        && pid.bytes().all(|b| b.is_ascii_digit())
        && !unique.is_empty()
        && unique.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Remove every entry of `dir` that `wanted` picks and no live process
/// holds. Best effort: what cannot be examined or removed stays, for a
/// later run.
pub fn sweep(dir: &Path, wanted: impl Fn(&OsStr) -> bool) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let euid = nix::unistd::geteuid().as_raw();
    let mut root = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !wanted(&name) {
            continue;
        }
        let path = entry.path();
        let Ok(file) = open_nofollow(&path) else {
            continue;
        };
        let Ok(meta) = file.metadata() else {
            continue;
        };
        if meta.uid() != euid || !(meta.is_file() || meta.is_dir()) {
            continue;
        }
        // Held by a live process: its work, not a leftover.
        let Ok(lock) = flock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let same = fs::symlink_metadata(&path)
            .is_ok_and(|now| (now.dev(), now.ino()) == (meta.dev(), meta.ino()));
        if !same {
            continue;
        }
        let removed = if meta.is_dir() {
            // A killed overlay bundle's rootfs may still be mounted.
            crate::store::unmount_under(&path);
            if root.is_none() {
                root = RootDir::open(dir).ok();
            }
            match &root {
                Some(root) => root.remove(&root.root(), &name).map(drop),
                None => continue,
            }
        } else {
            fs::remove_file(&path)
        };
        match removed {
            Ok(()) => tracing::info!(
                "removed {}, left by an occystrap process that was killed",
                path.display()
            ),
            Err(e) => tracing::warn!("cannot remove the leftover {}: {e}", path.display()),
        }
        drop(lock);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staged_names() {
        for name in [
            ".bundle.occystrap-123-1a2b3c0.tmp",
            ".out.tar.occystrap-1-f.old",
            ".a.occystrap-b.occystrap-99-0.tmp",
        ] {
            assert!(is_staged_name(OsStr::new(name)), "{name}");
        }
        for name in [
            "bundle",
            ".bundle.occystrap-123-1a2b.txt",
            "..occystrap-1-2.tmp",
            ".bundle.occystrap--2.tmp",
            ".bundle.occystrap-12-.tmp",
            ".bundle.occystrap-x1-2.tmp",
            ".bundle.occystrap-1-zz.tmp",
            "bundle.occystrap-1-2.tmp",
            ".bundle.tmp",
        ] {
            assert!(!is_staged_name(OsStr::new(name)), "{name}");
        }
    }

    #[test]
    fn sweeps_only_unheld_entries_of_ours() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        // Dead writers' leftovers: a file, and a tree with a read-only dir.
        fs::write(p(".a.occystrap-1-1.tmp"), b"x").unwrap();
        fs::create_dir_all(p(".b.occystrap-1-2.tmp/rootfs/ro")).unwrap();
        fs::write(p(".b.occystrap-1-2.tmp/rootfs/ro/f"), b"x").unwrap();
        use std::os::unix::fs::PermissionsExt;
        let ro = p(".b.occystrap-1-2.tmp/rootfs/ro");
        fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).unwrap();
        // Live writers' temporaries, held by this test.
        fs::write(p(".c.occystrap-1-3.tmp"), b"x").unwrap();
        let held_file = hold(
            &p(".c.occystrap-1-3.tmp"),
            File::open(p(".c.occystrap-1-3.tmp")).unwrap(),
        )
        .unwrap()
        .unwrap();
        fs::create_dir(p(".d.occystrap-1-4.old")).unwrap();
        let held_dir = try_hold_dir(&p(".d.occystrap-1-4.old")).unwrap();
        // Not ours: other names, and a symlink (never followed).
        fs::write(p("keep"), b"x").unwrap();
        std::os::unix::fs::symlink(p("keep"), p(".e.occystrap-1-5.tmp")).unwrap();

        sweep(dir.path(), is_staged_name);
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                ".c.occystrap-1-3.tmp",
                ".d.occystrap-1-4.old",
                ".e.occystrap-1-5.tmp",
                "keep"
            ]
        );
        // Once released, they are leftovers too.
        drop((held_file, held_dir));
        sweep(dir.path(), is_staged_name);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 2);
    }

    #[test]
    fn a_writer_whose_new_file_was_swept_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".a.occystrap-1-1.tmp");
        fs::write(&path, b"x").unwrap();
        let opened = File::open(&path).unwrap();
        // A sweeper takes it between creation and lock.
        sweep(dir.path(), is_staged_name);
        assert!(hold(&path, opened).unwrap().is_none());
    }
}
