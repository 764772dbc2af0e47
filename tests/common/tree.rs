//! Snapshots of directory trees, to compare what two unpackers wrote:
//! types, modes, owners, contents, link targets, device numbers, xattrs,
//! mtimes and hardlink groups.

use std::collections::BTreeMap;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// What we compare of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: i64,
    pub content: String,
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Index of the first path (in walk order) sharing this inode.
    pub link_group: Option<String>,
}

fn xattrs(path: &Path) -> BTreeMap<String, Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 64 * 1024];
    // SAFETY: the buffers outlive the calls and their lengths are passed.
    let len = unsafe { libc::llistxattr(c_path.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    assert!(len >= 0, "llistxattr {}", path.display());
    let mut map = BTreeMap::new();
    for name in names[..len as usize]
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
    {
        let c_name = std::ffi::CString::new(name).unwrap();
        let mut value = vec![0u8; 64 * 1024];
        let n = unsafe {
            libc::lgetxattr(
                c_path.as_ptr(),
                c_name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert!(n >= 0, "lgetxattr {}", path.display());
        value.truncate(n as usize);
        map.insert(String::from_utf8_lossy(name).into_owned(), value);
    }
    map
}

pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let md = std::fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let (kind, content) = if ft.is_dir() {
                pending.push(path.clone());
                ("dir", String::new())
            } else if ft.is_symlink() {
                (
                    "symlink",
                    std::fs::read_link(&path)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned(),
                )
            } else if ft.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                ("file", super::sha256_digest(&bytes))
            } else if ft.is_char_device() {
                ("char", format!("{:x}", md.rdev()))
            } else if ft.is_block_device() {
                ("block", format!("{:x}", md.rdev()))
            } else if ft.is_fifo() {
                ("fifo", String::new())
            } else {
                ("other", String::new())
            };
            let link_group = (!ft.is_dir() && md.nlink() > 1).then(|| {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_insert_with(|| rel.clone())
                    .clone()
            });
            out.insert(
                rel,
                Node {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    mtime: if ft.is_dir() { 0 } else { md.mtime() },
                    content,
                    xattrs: xattrs(&path),
                    link_group,
                },
            );
        }
    }
    out
}
