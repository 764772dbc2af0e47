//! Find files in an image's layers without unpacking anything: each layer
//! streams through the same verified pipeline and tar reader a bundle uses,
//! and only the matching entries' headers are kept. Whiteouts of later
//! layers are remembered (their paths only), to say which matches the
//! final tree no longer has.

use std::path::PathBuf;

use crate::fsroot::clean_path;
use crate::image::ResolvedImage;
use crate::progress::Progress;
use crate::source::Source;
use crate::tar::{self, Kind};
use crate::unpack::{OPAQUE_MARKER, WHITEOUT_PREFIX};
use crate::{Error, Result, pull};

/// What to look for: a shell glob over the whole path (`*` stays within a
/// component, `**` crosses them), or a regular expression found anywhere
/// in it. Paths are relative to the root, without a leading `/` or `./`.
#[derive(Debug, Clone)]
pub struct Pattern(Matcher);

// Private, so that the matching crates' types stay out of the public API.
#[derive(Debug, Clone)]
enum Matcher {
    Glob(globset::GlobMatcher),
    Regex(regex::bytes::Regex),
}

impl Pattern {
    /// A glob pattern; a leading `/` is allowed and ignored.
    pub fn glob(pattern: &str) -> Result<Pattern> {
        let glob = globset::GlobBuilder::new(pattern.trim_start_matches('/'))
            .literal_separator(true)
            .backslash_escape(true)
            .build()
            .map_err(|e| Error::Usage(format!("{pattern:?}: not a glob pattern: {e}")))?;
        Ok(Pattern(Matcher::Glob(glob.compile_matcher())))
    }

    /// A regular expression.
    pub fn regex(pattern: &str) -> Result<Pattern> {
        regex::bytes::Regex::new(pattern)
            .map(|r| Pattern(Matcher::Regex(r)))
            .map_err(|e| Error::Usage(format!("{pattern:?}: not a regular expression: {e}")))
    }

    /// Whether `path` (cleaned, relative) matches.
    pub(crate) fn matches(&self, path: &[u8]) -> bool {
        match &self.0 {
            Matcher::Glob(glob) => {
                use std::os::unix::ffi::OsStrExt;
                glob.is_match(std::ffi::OsStr::from_bytes(path))
            }
            Matcher::Regex(regex) => regex.is_match(path),
        }
    }
}

/// One matching entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    /// Index of the layer, lowest first, from 0.
    pub layer: usize,
    /// The layer's blob digest.
    pub digest: String,
    /// The entry's path, cleaned (relative, no `.` or `..`).
    pub path: PathBuf,
    /// The entry's type.
    pub kind: Kind,
    /// Its size (0 for types without content).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// A link's target, as stored.
    pub link: Option<Vec<u8>>,
    /// The first later layer whose whiteout (or opaque directory) removes
    /// it from the final tree.
    pub removed_by: Option<usize>,
}

/// A whiteout seen in a layer: a path and what lies below it, or (opaque)
/// only what lies below it.
pub(crate) struct Whiteout {
    pub(crate) layer: usize,
    pub(crate) path: PathBuf,
    pub(crate) opaque: bool,
}

impl Whiteout {
    fn removes(&self, hit: &Hit) -> bool {
        hit.layer < self.layer
            && if self.opaque {
                hit.path.starts_with(&self.path) && hit.path != self.path
            } else {
                hit.path.starts_with(&self.path)
            }
    }
}

/// Every entry of `image` whose path matches `pattern`, lowest layer first.
pub(crate) async fn search(
    source: &Source,
    image: &ResolvedImage,
    pattern: Pattern,
    progress: &Progress,
) -> Result<Vec<Hit>> {
    let limits = source.layer_limits();
    let index = std::sync::atomic::AtomicUsize::new(0);
    let state = (Vec::<Hit>::new(), Vec::<Whiteout>::new());
    let (mut hits, whiteouts) = pull::each_layer(
        source,
        image,
        progress,
        state,
        move |(hits, whiteouts), layer, reader| {
            let n = index.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let digest = layer.digest.to_string();
            let mut tar = tar::Reader::new(reader, limits);
            let failed = |e| crate::unpack::UnpackError::Tar(e).into_error(&digest);
            while let Some(h) = tar.next_entry().map_err(failed)? {
                if h.kind == Kind::GlobalExtension {
                    continue;
                }
                // Names a bundle would refuse cannot be in its tree.
                let Ok(path) = clean_path(&h.name) else {
                    continue;
                };
                if let Some(whiteout) = whiteout_of(&path, n) {
                    whiteouts.push(whiteout);
                    continue;
                }
                use std::os::unix::ffi::OsStrExt;
                if !pattern.matches(path.as_os_str().as_bytes()) {
                    continue;
                }
                hits.push(Hit {
                    layer: n,
                    digest: digest.clone(),
                    path,
                    kind: h.kind,
                    size: h.content_size(),
                    mode: h.permissions(),
                    link: matches!(h.kind, Kind::Link | Kind::Symlink).then(|| h.link_name.clone()),
                    removed_by: None,
                });
            }
            Ok(())
        },
    )
    .await?;
    for hit in &mut hits {
        hit.removed_by = whiteouts.iter().find(|w| w.removes(hit)).map(|w| w.layer);
    }
    Ok(hits)
}

/// The whiteout a cleaned entry path of layer `layer` is, if it is one.
pub(crate) fn whiteout_of(path: &std::path::Path, layer: usize) -> Option<Whiteout> {
    use std::os::unix::ffi::OsStrExt;
    let name = path.file_name()?.as_bytes();
    let parent = path
        .parent()
        .unwrap_or(std::path::Path::new(""))
        .to_path_buf();
    if name == OPAQUE_MARKER {
        return Some(Whiteout {
            layer,
            path: parent,
            opaque: true,
        });
    }
    let victim = name.strip_prefix(WHITEOUT_PREFIX)?;
    if victim.starts_with(WHITEOUT_PREFIX) || victim.is_empty() {
        // aufs bookkeeping (`.wh..wh.*`) removes nothing.
        return None;
    }
    Some(Whiteout {
        layer,
        path: parent.join(std::ffi::OsStr::from_bytes(victim)),
        opaque: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_stay_within_components_unless_double_starred() {
        let p = Pattern::glob("/usr/bin/*sh").unwrap();
        assert!(p.matches(b"usr/bin/bash"));
        assert!(!p.matches(b"usr/bin/x/bash"));
        let p = Pattern::glob("**/passwd").unwrap();
        assert!(p.matches(b"etc/passwd") && p.matches(b"a/b/c/passwd"));
        assert!(Pattern::glob("a[").is_err());
        assert!(Pattern::regex("bin/.*sh$").unwrap().matches(b"usr/bin/zsh"));
        assert!(Pattern::regex("(").is_err());
    }

    #[test]
    fn whiteouts_remove_lower_paths_and_what_is_below() {
        let hit = |layer, path: &str| Hit {
            layer,
            digest: String::new(),
            path: PathBuf::from(path),
            kind: Kind::Regular,
            size: 0,
            mode: 0,
            link: None,
            removed_by: None,
        };
        let w = whiteout_of(std::path::Path::new("usr/.wh.lib"), 2).unwrap();
        assert!(w.removes(&hit(1, "usr/lib")) && w.removes(&hit(0, "usr/lib/x")));
        assert!(!w.removes(&hit(1, "usr/lib64")), "not a prefix match");
        assert!(!w.removes(&hit(2, "usr/lib")), "not its own layer");
        let o = whiteout_of(std::path::Path::new("usr/bin/.wh..wh..opq"), 1).unwrap();
        assert!(o.removes(&hit(0, "usr/bin/sh")) && !o.removes(&hit(0, "usr/bin")));
        assert!(whiteout_of(std::path::Path::new("a/.wh..wh.plnk"), 1).is_none());
    }
}
