//! A full disk (ENOSPC) is reported as such, exit 5, and the partial
//! output is removed. Uses a small tmpfs (the tests run as root).

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::busybox::busybox_image;
use common::registry::Registry;

/// A tmpfs of `size` mounted on a fresh directory; unmounted on drop.
struct SmallDisk {
    path: PathBuf,
    _dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("disk");
        std::fs::create_dir(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .status()
            .unwrap();
        assert!(status.success(), "mount tmpfs (needs root)");
        SmallDisk { path, _dir: dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.path).status();
    }
}

fn assert_full_disk_failure(args: &[&str], disk: &Path) {
    let out = common::cli::command().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(stderr.contains("No space left on device"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(disk).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn disk_full_is_reported_and_cleaned_up() {
    let registry = Registry::start();
    // busybox alone is ~2 MB uncompressed: it cannot fit in 1 MiB.
    registry.push_image("test/bb", "v1", &busybox_image());
    let reference = registry.image_ref("test/bb", "v1");
    let disk = SmallDisk::mount("1m");
    let tarball = disk.path.join("out.tar");
    assert_full_disk_failure(
        &["export", &reference, tarball.to_str().unwrap()],
        &disk.path,
    );
    let bundle = disk.path.join("bundle");
    assert_full_disk_failure(
        &["bundle", &reference, bundle.to_str().unwrap()],
        &disk.path,
    );
}
