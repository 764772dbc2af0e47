//! Compare two images' final trees without unpacking either: each image's
//! layers stream through the verified pipeline and tar reader, building an
//! index of its final tree in memory (per path: type, mode, owner, size,
//! link target, xattrs and a hash of the content, never the content), with
//! whiteouts, opaque directories and replacement applied as `layer.md`
//! says and as [`crate::unpack`] applies them.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::fsroot::clean_path;
use crate::image::ResolvedImage;
use crate::progress::Progress;
use crate::search::{Whiteout, whiteout_of};
use crate::source::Source;
use crate::tar::{self, Kind};
use crate::{Result, pull};

/// One path of a final tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// The entry's type; a hardlink takes its target's.
    pub kind: Kind,
    /// Permission bits, setuid, setgid and sticky included.
    pub mode: u32,
    /// Owner user ID.
    pub uid: i64,
    /// Owner group ID.
    pub gid: i64,
    /// Content size in bytes; 0 for types without content.
    pub size: u64,
    /// A symlink's target or a hardlink's target path, raw bytes as the
    /// layer wrote them (escape before printing); empty otherwise.
    pub link: Vec<u8>,
    /// Extended attributes (name, value), sorted, raw bytes.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// sha256 of a regular file's content (a hardlink's: its target's).
    pub content: Option<[u8; 32]>,
}

/// A final tree: path → node, paths relative and clean.
pub(crate) type Tree = BTreeMap<PathBuf, Node>;

/// What differs at one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Only in the second image.
    Added(Node),
    /// Only in the first image.
    Removed(Node),
    /// The old and new node, and what differs: `type`, `content`,
    /// `mode`, `owner`, `link`, `xattrs`.
    Changed(Node, Node, Vec<&'static str>),
}

/// The final tree of `image`.
pub(crate) async fn tree(
    source: &Source,
    image: &ResolvedImage,
    progress: &Progress,
) -> Result<Tree> {
    let limits = source.layer_limits();
    let index = std::sync::atomic::AtomicUsize::new(0);
    pull::each_layer(
        source,
        image,
        progress,
        Tree::new(),
        move |tree, layer, reader| {
            let n = index.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let digest = layer.digest.to_string();
            apply(tree, reader, n, limits)
                .map_err(|e| crate::unpack::UnpackError::Tar(e).into_error(&digest))
        },
    )
    .await
}

/// Apply one layer to the index: its whiteouts first (they only touch
/// lower layers), then its entries, each replacing what is at its path
/// unless both are directories.
fn apply(
    tree: &mut Tree,
    layer: impl Read,
    n: usize,
    limits: tar::Limits,
) -> std::result::Result<(), tar::TarError> {
    let mut reader = tar::Reader::new(layer, limits);
    let mut whiteouts: Vec<Whiteout> = Vec::new();
    let mut entries: Vec<(PathBuf, Node, Option<PathBuf>)> = Vec::new();
    while let Some(h) = reader.next_entry()? {
        if h.kind == Kind::GlobalExtension {
            continue;
        }
        let Ok(path) = clean_path(&h.name) else {
            continue;
        };
        if let Some(w) = whiteout_of(&path, n) {
            whiteouts.push(w);
            continue;
        }
        let mut content = None;
        if matches!(h.kind, Kind::Regular | Kind::Contiguous | Kind::GnuSparse) {
            let mut hasher = Sha256::new();
            std::io::copy(&mut reader, &mut HashWriter(&mut hasher)).map_err(tar::TarError::Io)?;
            content = Some(hasher.finalize().into());
        }
        let hardlink = (h.kind == Kind::Link)
            .then(|| clean_path(&h.link_name).ok())
            .flatten();
        let mut xattrs = h.xattrs();
        xattrs.sort();
        let node = Node {
            kind: h.kind,
            mode: h.permissions(),
            uid: h.uid,
            gid: h.gid,
            size: h.content_size(),
            link: h.link_name.clone(),
            xattrs,
            content,
        };
        entries.push((path, node, hardlink));
    }
    for w in &whiteouts {
        let below: Vec<PathBuf> = tree
            .range(w.path.clone()..)
            .take_while(|(p, _)| p.starts_with(&w.path))
            .map(|(p, _)| p.clone())
            .filter(|p| !(w.opaque && *p == w.path))
            .collect();
        for p in below {
            tree.remove(&p);
        }
    }
    for (path, mut node, hardlink) in entries {
        if let Some(target) = hardlink.and_then(|t| tree.get(&t)) {
            // A hardlink is the file it links: its type and content.
            node = Node {
                link: node.link,
                ..target.clone()
            };
        }
        let both_dirs = node.kind == Kind::Directory
            && tree
                .get(&path)
                .is_some_and(|old| old.kind == Kind::Directory);
        if !both_dirs {
            remove_below(tree, &path);
        }
        tree.insert(path, node);
    }
    Ok(())
}

fn remove_below(tree: &mut Tree, path: &Path) {
    let below: Vec<PathBuf> = tree
        .range(path.to_path_buf()..)
        .take_while(|(p, _)| p.starts_with(path))
        .filter(|(p, _)| *p != path)
        .map(|(p, _)| p.clone())
        .collect();
    for p in below {
        tree.remove(&p);
    }
}

struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What changed from tree `a` to tree `b`, by path.
pub(crate) fn compare(a: &Tree, b: &Tree) -> Vec<(PathBuf, Change)> {
    let mut changes = Vec::new();
    for (path, old) in a {
        match b.get(path) {
            None => changes.push((path.clone(), Change::Removed(old.clone()))),
            Some(new) => {
                let mut what = Vec::new();
                if old.kind != new.kind {
                    what.push("type");
                }
                if old.content != new.content {
                    what.push("content");
                }
                if old.mode != new.mode {
                    what.push("mode");
                }
                if (old.uid, old.gid) != (new.uid, new.gid) {
                    what.push("owner");
                }
                if old.link != new.link && matches!(new.kind, Kind::Symlink) {
                    what.push("link");
                }
                if old.xattrs != new.xattrs {
                    what.push("xattrs");
                }
                if !what.is_empty() {
                    changes.push((
                        path.clone(),
                        Change::Changed(old.clone(), new.clone(), what),
                    ));
                }
            }
        }
    }
    for (path, new) in b {
        if !a.contains_key(path) {
            changes.push((path.clone(), Change::Added(new.clone())));
        }
    }
    changes.sort_by(|x, y| x.0.cmp(&y.0));
    changes
}
