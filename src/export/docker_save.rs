//! The `docker save` format: `manifest.json` (Config, RepoTags, Layers),
//! `repositories`, the config blob byte for byte (so the image ID is kept)
//! and one `<diff_id hex>/layer.tar` per layer, uncompressed.
//!
//! Layers are streamed straight into the tarball: the entry header is
//! written with a placeholder size and patched once the layer has passed,
//! so no temporary copy of a layer is ever made.

use std::collections::HashSet;
use std::io::{self, Read, Seek, SeekFrom, Write};

use serde_json::json;

use crate::digest::Digest;
use crate::image::ResolvedImage;
use crate::reference::ImageRef;
use crate::tar::{Limits, TarError};

/// Names of the files in a docker-save image, derived from the image.
pub struct Layout {
    /// `<config hex>.json`.
    pub config: String,
    /// `<diff_id hex>/layer.tar` for each layer, lowest first (may repeat).
    pub layers: Vec<String>,
}

impl Layout {
    /// The layout of `image`.
    pub fn of(image: &ResolvedImage) -> Layout {
        let diff_ids: Vec<_> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
        Layout::new(&image.config_digest, &diff_ids)
    }

    /// The layout of an image whose config blob is `config` and whose
    /// layers are `diff_ids`, lowest first.
    pub fn new(config: &Digest, diff_ids: &[Digest]) -> Layout {
        Layout {
            config: format!("{}.json", config.hex()),
            layers: diff_ids.iter().map(|d| layer_path(d.hex())).collect(),
        }
    }

    /// The `manifest.json` body for an image with the given RepoTags.
    pub fn manifest_json(&self, repo_tags: &[String]) -> Vec<u8> {
        let body = json!([{
            "Config": self.config,
            "RepoTags": repo_tags,
            "Layers": self.layers,
        }]);
        to_json(&body)
    }

    /// The `repositories` file for `reference`; none without a tag.
    pub fn repositories_for(&self, reference: &ImageRef) -> Option<Vec<u8>> {
        let tag = reference.tag.as_ref()?;
        self.repositories_json(&reference.familiar_repository(), tag)
    }

    /// The legacy `repositories` file: repository → tag → top layer ID.
    pub fn repositories_json(&self, repository: &str, tag: &str) -> Option<Vec<u8>> {
        let top = self.layers.last()?.split('/').next()?;
        Some(to_json(&json!({ repository: { tag: top } })))
    }
}

/// `<diff_id hex>/layer.tar`.
pub fn layer_path(diff_id_hex: &str) -> String {
    format!("{diff_id_hex}/layer.tar")
}

fn to_json(value: &serde_json::Value) -> Vec<u8> {
    // Serialising a Value built in memory cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

/// Writes a tar archive to a seekable output, streaming entries of
/// unknown size.
pub struct TarWriter<W: Write + Seek> {
    out: W,
    dirs: HashSet<String>,
    files: HashSet<String>,
}

impl<W: Write + Seek> TarWriter<W> {
    /// Start an archive.
    pub fn new(out: W) -> Self {
        TarWriter {
            out,
            dirs: HashSet::new(),
            files: HashSet::new(),
        }
    }

    /// Whether an entry of this name was written already.
    pub fn contains(&self, name: &str) -> bool {
        self.files.contains(name)
    }

    /// Add a small file.
    pub fn add_file(&mut self, name: &str, bytes: &[u8]) -> io::Result<()> {
        self.add_parent_dirs(name)?;
        let mut header = header(name, tar::EntryType::Regular, 0o644, bytes.len() as u64)?;
        header.set_cksum();
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(bytes)?;
        self.pad(bytes.len() as u64)?;
        self.files.insert(name.to_string());
        Ok(())
    }

    /// Add a file whose content `fill` streams into the output (with
    /// [`copy`] or [`copy_layer`]); returns its size.
    pub fn add_stream(
        &mut self,
        name: &str,
        fill: impl FnOnce(&mut W) -> Result<u64, CopyError>,
    ) -> Result<u64, CopyError> {
        self.add_parent_dirs(name).map_err(CopyError::Write)?;
        let header_at = self.out.stream_position().map_err(CopyError::Write)?;
        self.out.write_all(&[0u8; 512]).map_err(CopyError::Write)?;
        let size = fill(&mut self.out)?;
        self.patch_header(name, header_at, size)
            .map_err(CopyError::Write)?;
        self.files.insert(name.to_string());
        Ok(size)
    }

    /// Add a file `<dir>/<name>` whose path `fill` returns once it has
    /// streamed the content (a layer named by a digest known only at its
    /// end): room for the directory's and the file's headers is kept
    /// before the content and they are written after it. Returns the path.
    pub fn add_stream_named(
        &mut self,
        fill: impl FnOnce(&mut W) -> Result<(u64, String), CopyError>,
    ) -> Result<String, CopyError> {
        let header_at = self.out.stream_position().map_err(CopyError::Write)?;
        self.out.write_all(&[0u8; 1024]).map_err(CopyError::Write)?;
        let (size, name) = fill(&mut self.out)?;
        let Some((dir, _)) = name.rsplit_once('/') else {
            return Err(CopyError::Write(io::Error::other(format!(
                "internal error: {name} is not in a directory"
            ))));
        };
        // The same directory twice (the same layer twice) is harmless.
        let mut h = header(&format!("{dir}/"), tar::EntryType::Directory, 0o755, 0)
            .map_err(CopyError::Write)?;
        h.set_cksum();
        self.dirs.insert(dir.to_string());
        let end = self.out.stream_position().map_err(CopyError::Write)?;
        self.out
            .seek(SeekFrom::Start(header_at))
            .and_then(|_| self.out.write_all(h.as_bytes()))
            .and_then(|()| self.out.seek(SeekFrom::Start(end)))
            .map_err(CopyError::Write)?;
        self.patch_header(&name, header_at + 512, size)
            .map_err(CopyError::Write)?;
        self.files.insert(name.clone());
        Ok(name)
    }

    fn patch_header(&mut self, name: &str, header_at: u64, size: u64) -> io::Result<()> {
        self.pad(size)?;
        let end = self.out.stream_position()?;
        let mut header = header(name, tar::EntryType::Regular, 0o644, size)?;
        header.set_cksum();
        self.out.seek(SeekFrom::Start(header_at))?;
        self.out.write_all(header.as_bytes())?;
        self.out.seek(SeekFrom::Start(end))?;
        Ok(())
    }

    /// Write the end-of-archive marker and return the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn add_parent_dirs(&mut self, name: &str) -> io::Result<()> {
        let Some((dir, _)) = name.rsplit_once('/') else {
            return Ok(());
        };
        if self.dirs.insert(dir.to_string()) {
            let mut h = header(&format!("{dir}/"), tar::EntryType::Directory, 0o755, 0)?;
            h.set_cksum();
            self.out.write_all(h.as_bytes())?;
        }
        Ok(())
    }

    fn pad(&mut self, size: u64) -> io::Result<()> {
        let rem = (size % 512) as usize;
        if rem != 0 {
            self.out.write_all(&[0u8; 512][..512 - rem])?;
        }
        Ok(())
    }
}

/// A failed streamed copy: reading the source, writing the output, or
/// (for a layer) what the tar reader refused.
#[derive(Debug)]
pub enum CopyError {
    Read(io::Error),
    Write(io::Error),
    Tar(TarError),
}

/// Copy a layer's uncompressed tar from `reader` to `out` while our tar
/// reader walks its headers, so that a layer a bundle would refuse to read
/// (malformed, or over the `limits`) is refused here too. The bytes written
/// are exactly the bytes read, trailing bytes included.
pub fn copy_layer(
    reader: &mut impl Read,
    out: &mut impl Write,
    limits: Limits,
) -> Result<u64, CopyError> {
    let mut tee = Tee {
        reader,
        out,
        written: 0,
        failed: None,
    };
    let walked = crate::tar::Reader::new(&mut tee, limits).skim().map(drop);
    let drained = walked.and_then(|()| {
        io::copy(&mut tee, &mut io::sink())
            .map(drop)
            .map_err(TarError::Io)
    });
    match (tee.failed.take(), drained) {
        (Some(write), _) => Err(CopyError::Write(write)),
        (None, Err(TarError::Io(read))) => Err(CopyError::Read(read)),
        (None, Err(tar)) => Err(CopyError::Tar(tar)),
        (None, Ok(())) => Ok(tee.written),
    }
}

/// Passes what is read on to `out`; a write failure is kept aside, so that
/// it is not mistaken for a failure of the source.
struct Tee<'a, R, W> {
    reader: &'a mut R,
    out: &'a mut W,
    written: u64,
    failed: Option<io::Error>,
}

impl<R: Read, W: Write> Read for Tee<'_, R, W> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.reader.read(buf)?;
        if let Err(e) = self.out.write_all(&buf[..n]) {
            self.failed = Some(e);
            return Err(io::Error::other("writing the output failed"));
        }
        self.written += n as u64;
        Ok(n)
    }
}

/// `io::copy`, telling read errors from write errors.
pub fn copy(
    reader: &mut (impl Read + ?Sized),
    out: &mut (impl Write + ?Sized),
) -> Result<u64, CopyError> {
    let mut buf = vec![0u8; 256 * 1024];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        out.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

fn header(name: &str, kind: tar::EntryType, mode: u32, size: u64) -> io::Result<tar::Header> {
    let mut h = tar::Header::new_gnu();
    h.set_path(name)?;
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_mtime(0);
    h.set_uid(0);
    h.set_gid(0);
    Ok(h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn streamed_entries_read_back() {
        let mut w = TarWriter::new(Cursor::new(Vec::new()));
        w.add_file("abc.json", b"{}").unwrap();
        let big = vec![7u8; 100_000];
        let n = w
            .add_stream("d1/layer.tar", |out| copy(&mut &big[..], out))
            .unwrap();
        assert_eq!(n, 100_000);
        w.add_stream("d2/layer.tar", |out| copy(&mut &b""[..], out))
            .unwrap();
        let bytes = w.finish().unwrap().into_inner();
        let mut ar = tar::Archive::new(&bytes[..]);
        let mut seen = Vec::new();
        for e in ar.entries().unwrap() {
            let mut e = e.unwrap();
            let path = e.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            e.read_to_end(&mut data).unwrap();
            seen.push((path, data.len()));
        }
        assert_eq!(
            seen,
            vec![
                ("abc.json".into(), 2),
                ("d1/".into(), 0),
                ("d1/layer.tar".into(), 100_000),
                ("d2/".into(), 0),
                ("d2/layer.tar".into(), 0),
            ]
        );
    }
}
