//! The files of an image archive or layout, read where they lie: in a
//! directory (every name resolved inside it, as an image's own paths are
//! when unpacking) or in a tar file, indexed once by seeking from header to
//! header and then read at each member's offset. Nothing is extracted or
//! copied.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::escape;
use crate::fsroot::{self, RootDir};
use crate::tar::{self, Kind};
use crate::{Error, Result};

/// Links followed within an archive before giving up (a loop).
const MAX_LINKS: usize = 16;

/// A directory, or a tar file's members.
pub struct Files {
    /// The directory or tar file, for messages.
    path: PathBuf,
    store: Store,
}

enum Store {
    Dir(RootDir),
    Tar {
        file: Arc<File>,
        members: HashMap<PathBuf, Member>,
    },
}

/// Where a tar member's data lies, or where it points.
#[derive(Debug, Clone)]
enum Member {
    Data {
        offset: u64,
        size: u64,
    },
    /// A symlink (target relative to the member's directory) or hardlink
    /// (target from the archive's root): `docker save` links repeated
    /// layers to the first copy.
    Link(PathBuf),
}

/// A member's bytes.
pub struct MemberReader {
    file: Arc<File>,
    pos: u64,
    end: u64,
}

impl Read for MemberReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside this file",
            ));
        }
        self.pos += n as u64;
        Ok(n)
    }
}

impl Files {
    /// A directory as it is.
    pub fn dir(path: &Path) -> Result<Files> {
        let root = RootDir::open(path).map_err(|e| Error::io(path, e))?;
        Ok(Files {
            path: path.to_path_buf(),
            store: Store::Dir(root),
        })
    }

    /// A tar file, indexed: every header is read and checked with our tar
    /// reader (the one layers go through), and data is seeked over.
    pub fn tar(path: &Path) -> Result<Files> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        Files::tar_file(file, path)
    }

    /// Like [`Files::tar`], for a tar already open (`path` names it).
    pub fn tar_file(mut file: File, path: &Path) -> Result<Files> {
        let length = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut head = [0u8; 4];
        let n = file.read(&mut head).map_err(|e| Error::io(path, e))?;
        if crate::layer::Compression::sniff(&head[..n]) != crate::layer::Compression::None {
            return Err(Error::Usage(format!(
                "{}: a compressed archive; decompress it first (gunzip, zstd -d): archives are read where they lie, which needs the tar itself",
                escape::path(path)
            )));
        }
        file.rewind().map_err(|e| Error::io(path, e))?;
        let bad = |reason: String| Error::Malformed {
            what: "archive".into(),
            digest: path.display().to_string(),
            reason,
        };
        let mut reader = tar::Reader::new(io::BufReader::new(file), tar::Limits::default());
        let mut members = HashMap::new();
        loop {
            let header = match reader.next_entry() {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(e) => return Err(bad(e.to_string())),
            };
            let Ok(name) = fsroot::clean_path(&header.name) else {
                continue;
            };
            let member = match header.kind {
                Kind::Regular | Kind::Contiguous if header.sparse.is_none() => {
                    let (offset, size) = (reader.offset(), header.content_size());
                    if offset.saturating_add(size) > length {
                        return Err(bad(format!(
                            "truncated: {} ends at byte {} of {length}",
                            escape::path(&name),
                            offset.saturating_add(size)
                        )));
                    }
                    Member::Data { offset, size }
                }
                Kind::Symlink => {
                    let mut target = Vec::new();
                    if !header.link_name.starts_with(b"/") {
                        let parent = name.parent().unwrap_or(Path::new(""));
                        target.extend_from_slice(parent.as_os_str().as_encoded_bytes());
                        target.push(b'/');
                    }
                    target.extend_from_slice(&header.link_name);
                    match fsroot::clean_path(&target) {
                        Ok(t) => Member::Link(t),
                        Err(_) => continue,
                    }
                }
                Kind::Link => match fsroot::clean_path(&header.link_name) {
                    Ok(t) => Member::Link(t),
                    Err(_) => continue,
                },
                _ => continue,
            };
            members.insert(name, member);
            reader
                .seek_past()
                .map_err(|e| Error::io(path, io::Error::other(e)))?;
        }
        Ok(Files {
            path: path.to_path_buf(),
            store: Store::Tar {
                file: Arc::new(reader.into_inner().into_inner()),
                members,
            },
        })
    }

    /// The directory or archive, for messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `ARCHIVE:NAME`, escaped, for messages.
    pub fn describe(&self, name: &str) -> String {
        format!(
            "{}:{}",
            escape::path(&self.path),
            escape::bytes(name.as_bytes())
        )
    }

    /// Whether `name` is a regular file here.
    pub fn exists(&self, name: &str) -> bool {
        matches!(self.open(name, u64::MAX), Ok(Some(_)))
    }

    /// Open `name` (a path from the archive's own metadata: resolved
    /// inside it); `None` if absent.
    pub fn open(&self, name: &str, max_len: u64) -> Result<Option<(Box<dyn Read + Send>, u64)>> {
        let clean = fsroot::clean_path(name.as_bytes()).map_err(|reason| Error::Malformed {
            what: "archive".into(),
            digest: self.describe(name),
            reason: reason.into(),
        })?;
        let too_large = |size: u64| Error::Malformed {
            what: "archive".into(),
            digest: self.describe(name),
            reason: format!("{size} bytes, more than the {max_len}-byte limit"),
        };
        match &self.store {
            Store::Dir(root) => match root.open_file(&clean, max_len) {
                Ok(Some((file, size))) => Ok(Some((Box::new(file), size))),
                Ok(None) => Ok(None),
                Err(e) if e.kind() == io::ErrorKind::FileTooLarge => Err(Error::Malformed {
                    what: "archive".into(),
                    digest: self.describe(name),
                    reason: e.to_string(),
                }),
                Err(e) => Err(Error::io(self.path.join(&clean), e)),
            },
            Store::Tar { file, members } => {
                let mut at = clean;
                for _ in 0..MAX_LINKS {
                    match members.get(&at) {
                        None => return Ok(None),
                        Some(Member::Link(target)) => at = target.clone(),
                        Some(Member::Data { offset, size }) => {
                            if *size > max_len {
                                return Err(too_large(*size));
                            }
                            let reader = MemberReader {
                                file: file.clone(),
                                pos: *offset,
                                end: offset + size,
                            };
                            return Ok(Some((Box::new(reader), *size)));
                        }
                    }
                }
                Err(Error::Malformed {
                    what: "archive".into(),
                    digest: self.describe(name),
                    reason: "a loop of links".into(),
                })
            }
        }
    }

    /// The whole of a small file (metadata), or `None` if absent.
    pub fn read(&self, name: &str, max_len: u64) -> Result<Option<Vec<u8>>> {
        let Some((mut reader, size)) = self.open(name, max_len)? else {
            return Ok(None);
        };
        let mut data = Vec::with_capacity(size as usize);
        reader
            .read_to_end(&mut data)
            .map_err(|e| Error::io(self.path.join(name), e))?;
        Ok(Some(data))
    }
}
