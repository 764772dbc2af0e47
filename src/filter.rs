//! Output filters that make a new image: `--normalize-timestamps` and
//! `--exclude`. A filtered layer is rewritten entry by entry (so it gets a
//! new diff_id), and the config is rewritten with the new diff_ids (so the
//! image gets a new ID, and its manifest a new digest).
//!
//! The rules, shared by every output (docker-archive, layouts, registries,
//! and bundles, which only exclude):
//! - Timestamps are *set*, not clamped: every entry's mtime becomes the
//!   epoch, atime and ctime are dropped, and so is the config's `created`.
//!   (reproducible-builds.org's `SOURCE_DATE_EPOCH` convention clamps
//!   times later than the epoch; we set them all, as the original Python
//!   occystrap's normalize-timestamps filter does, so that the same files
//!   built at different times give the same layer.) History is kept as it
//!   is.
//! - An entry is excluded when its cleaned path, or a directory above it,
//!   matches a pattern: an excluded directory takes what is under it along.
//! - Whiteouts (and opaque markers) are kept even when the path they remove
//!   matches, since they remove lower content; they go only with a directory
//!   above them excluded, where there is nothing left to remove.
//! - A hardlink to an excluded path would dangle: it is excluded too, with a
//!   warning.
//!
//! Layers are written deterministically (USTAR headers, PAX records for
//! what does not fit, nothing taken from the clock): the same input and
//! filter give the same bytes.

use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::digest::{Digest, Hasher};
use crate::export::docker_save::CopyError;
use crate::fsroot::clean_path;
use crate::search::Pattern;
use crate::tar::{Header, Kind, Limits, TarError, Time};
use crate::unpack::WHITEOUT_PREFIX;
use crate::{Error, Result};

/// What to change in an image's layers.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Set every entry's mtime (and the config's `created`) to these
    /// seconds since the epoch.
    pub normalize: Option<i64>,
    /// Leave out entries whose path, or a directory above it, matches.
    pub exclude: Vec<Pattern>,
}

/// The epoch `--normalize-timestamps` uses without a value:
/// `SOURCE_DATE_EPOCH` from the environment, else 0.
pub fn default_epoch() -> Result<i64> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(value) => value.trim().parse().map_err(|_| {
            Error::Usage(format!(
                "SOURCE_DATE_EPOCH={}: not a number of seconds since the epoch",
                crate::escape::bytes(value.as_bytes())
            ))
        }),
        Err(_) => Ok(0),
    }
}

impl Filter {
    /// Whether the filter changes nothing (the image is then copied as it is).
    pub fn is_empty(&self) -> bool {
        self.normalize.is_none() && self.exclude.is_empty()
    }

    /// Whether the entry `h` is left out of the new layer.
    pub fn drops(&self, h: &Header) -> bool {
        if self.exclude.is_empty() || h.kind == Kind::GlobalExtension {
            return false;
        }
        // A name a bundle would refuse matches nothing: it is kept, for the
        // reader of the layer to refuse.
        let Ok(path) = clean_path(&h.name) else {
            return false;
        };
        if path
            .file_name()
            .is_some_and(|n| n.as_bytes().starts_with(WHITEOUT_PREFIX))
        {
            return path.parent().is_some_and(|dir| self.excluded(dir));
        }
        if self.excluded(&path) {
            return true;
        }
        if h.kind == Kind::Link
            && let Ok(target) = clean_path(&h.link_name)
            && self.excluded(&target)
        {
            tracing::warn!(
                "{}: a hardlink to {}, which is excluded: excluded too",
                crate::escape::bytes(&h.name),
                crate::escape::bytes(&h.link_name)
            );
            return true;
        }
        false
    }

    /// Whether `path` or a directory above it matches a pattern.
    fn excluded(&self, path: &Path) -> bool {
        path.ancestors()
            .filter(|p| !p.as_os_str().is_empty())
            .any(|p| {
                self.exclude
                    .iter()
                    .any(|pattern| pattern.matches(p.as_os_str().as_bytes()))
            })
    }

    /// Rewrite one uncompressed layer tar from `input` into `out`, read by
    /// our tar reader within `limits`; returns the new layer's diff_id.
    /// The input is read to its end (for the caller's digest checks).
    pub fn rewrite_layer(
        &self,
        input: impl Read,
        out: impl Write,
        limits: Limits,
    ) -> std::result::Result<Digest, CopyError> {
        let mut out = HashingWriter {
            inner: out,
            hasher: Hasher::sha256(),
        };
        let mut reader = crate::tar::Reader::new(input, limits);
        let failed = |e: TarError| match e {
            TarError::Io(e) => CopyError::Read(e),
            other => CopyError::Tar(other),
        };
        while let Some(h) = reader.next_entry().map_err(failed)? {
            // A global header changes nothing in our reader's entries.
            if h.kind == Kind::GlobalExtension || self.drops(&h) {
                continue;
            }
            self.write_entry(&h, &mut reader, &mut out)?;
        }
        out.write_all(&[0u8; 1024]).map_err(CopyError::Write)?;
        out.flush().map_err(CopyError::Write)?;
        let mut input = reader.into_inner();
        io::copy(&mut input, &mut io::sink()).map_err(CopyError::Read)?;
        Ok(out.hasher.finish())
    }

    /// One entry: its PAX header if needed, its header, its content
    /// (a sparse file written dense).
    fn write_entry<R: Read>(
        &self,
        h: &Header,
        reader: &mut crate::tar::Reader<R>,
        out: &mut impl Write,
    ) -> std::result::Result<(), CopyError> {
        let mut pax: Vec<(Vec<u8>, Vec<u8>)> = h
            .pax
            .iter()
            .filter(|(k, _)| !regenerated(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut header = tar::Header::new_ustar();
        let kind = match h.kind {
            // Written dense, as an ordinary file.
            Kind::GnuSparse => b'0',
            other => other.flag(),
        };
        header.set_entry_type(tar::EntryType::new(kind));
        let size = h.content_size();
        let fields = header.as_ustar_mut().ok_or_else(|| {
            CopyError::Write(io::Error::other("internal error: not a USTAR header"))
        })?;
        text(&mut fields.name, &h.name, b"path", &mut pax);
        text(&mut fields.linkname, &h.link_name, b"linkpath", &mut pax);
        text(&mut fields.uname, &h.uname, b"uname", &mut pax);
        text(&mut fields.gname, &h.gname, b"gname", &mut pax);
        number(&mut fields.mode, h.mode & 0o7777777, None, &mut pax);
        number(&mut fields.uid, h.uid, Some(b"uid"), &mut pax);
        number(&mut fields.gid, h.gid, Some(b"gid"), &mut pax);
        number(&mut fields.size, size as i64, Some(b"size"), &mut pax);
        let mtime = match self.normalize {
            Some(epoch) => Time {
                secs: epoch,
                nanos: 0,
            },
            None => h.mtime,
        };
        time(&mut fields.mtime, b"mtime", mtime, &mut pax);
        if self.normalize.is_none() {
            // atime and ctime have no USTAR field.
            for (key, t) in [(b"atime", h.atime), (b"ctime", h.ctime)] {
                if let Some(t) = t {
                    pax.push((key.to_vec(), time_record(t)));
                }
            }
        }
        if matches!(h.kind, Kind::Char | Kind::Block) {
            let too_big = |_| TarError::Content {
                name: h.name.clone(),
                reason: "device number too large for a USTAR header",
            };
            octal(&mut fields.dev_major, h.dev_major)
                .map_err(too_big)
                .map_err(CopyError::Tar)?;
            octal(&mut fields.dev_minor, h.dev_minor)
                .map_err(too_big)
                .map_err(CopyError::Tar)?;
        }
        header.set_cksum();
        if !pax.is_empty() {
            let body = pax_body(&pax);
            let mut x = tar::Header::new_ustar();
            x.set_entry_type(tar::EntryType::XHeader);
            if let Some(f) = x.as_ustar_mut() {
                f.name[..14].copy_from_slice(b"././@PaxHeader");
                number(&mut f.mode, 0o644, None, &mut Vec::new());
                number(&mut f.size, body.len() as i64, None, &mut Vec::new());
                number(&mut f.mtime, 0, None, &mut Vec::new());
                number(&mut f.uid, 0, None, &mut Vec::new());
                number(&mut f.gid, 0, None, &mut Vec::new());
            }
            x.set_cksum();
            out.write_all(x.as_bytes()).map_err(CopyError::Write)?;
            out.write_all(&body).map_err(CopyError::Write)?;
            pad(out, body.len() as u64)?;
        }
        out.write_all(header.as_bytes()).map_err(CopyError::Write)?;
        if size > 0 {
            let copied = copy_content(reader, out)?;
            if copied != size {
                return Err(CopyError::Tar(TarError::Content {
                    name: h.name.clone(),
                    reason: "content shorter than its size",
                }));
            }
            pad(out, size)?;
        }
        Ok(())
    }

    /// `config` (the image config, blob `digest`) with `rootfs.diff_ids`
    /// replaced, and `created` set to the epoch when normalising.
    pub fn rewrite_config(
        &self,
        config: &[u8],
        digest: &Digest,
        diff_ids: &[Digest],
    ) -> Result<Vec<u8>> {
        let malformed = |reason: String| Error::Malformed {
            what: "config".into(),
            digest: digest.to_string(),
            reason,
        };
        let mut value: serde_json::Value =
            serde_json::from_slice(config).map_err(|e| malformed(e.to_string()))?;
        let object = value
            .as_object_mut()
            .ok_or_else(|| malformed("not a JSON object".into()))?;
        let ids: Vec<serde_json::Value> = diff_ids.iter().map(|d| d.to_string().into()).collect();
        let rootfs = object
            .entry("rootfs")
            .or_insert_with(|| serde_json::json!({ "type": "layers" }));
        rootfs
            .as_object_mut()
            .ok_or_else(|| malformed("rootfs is not a JSON object".into()))?
            .insert("diff_ids".into(), ids.into());
        if let Some(epoch) = self.normalize {
            object.insert("created".into(), rfc3339(epoch).into());
        }
        serde_json::to_vec(&value).map_err(|e| malformed(e.to_string()))
    }
}

/// PAX keys whose values come from the header fields we write.
fn regenerated(key: &[u8]) -> bool {
    matches!(
        key,
        b"path" | b"linkpath" | b"size" | b"uid" | b"gid" | b"uname" | b"gname"
    ) || matches!(key, b"mtime" | b"atime" | b"ctime")
        || key.starts_with(b"GNU.sparse.")
}

/// A NUL-padded text field, or a PAX record when it does not fit.
fn text(field: &mut [u8], value: &[u8], key: &[u8], pax: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    field.fill(0);
    if value.len() <= field.len() && !value.contains(&0) {
        field[..value.len()].copy_from_slice(value);
    } else {
        let n = value.len().min(field.len());
        field[..n].copy_from_slice(&value[..n]);
        pax.push((key.to_vec(), value.to_vec()));
    }
}

/// An octal field, or 0 and a PAX record (with `key`) when it does not fit.
fn number(field: &mut [u8], value: i64, key: Option<&[u8]>, pax: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    if octal(field, value).is_err() {
        let _ = octal(field, 0);
        if let Some(key) = key {
            pax.push((key.to_vec(), value.to_string().into_bytes()));
        }
    }
}

/// `value` in octal, zero-padded and NUL-terminated, if it fits.
fn octal(field: &mut [u8], value: i64) -> std::result::Result<(), ()> {
    let digits = field.len() - 1;
    let text = format!("{:0digits$o}", u64::try_from(value).map_err(drop)?);
    if text.len() > digits {
        return Err(());
    }
    field[..digits].copy_from_slice(text.as_bytes());
    field[digits] = 0;
    Ok(())
}

/// The mtime field, with a PAX record for what it cannot hold (a fraction,
/// a negative or very large time).
fn time(field: &mut [u8], key: &[u8], t: Time, pax: &mut Vec<(Vec<u8>, Vec<u8>)>) {
    let fits = octal(field, t.secs).is_ok();
    if !fits {
        let _ = octal(field, 0);
    }
    if !fits || t.nanos != 0 {
        pax.push((key.to_vec(), time_record(t)));
    }
}

/// A PAX time: seconds, and a fraction if there is one.
fn time_record(t: Time) -> Vec<u8> {
    if t.nanos == 0 {
        return t.secs.to_string().into_bytes();
    }
    // Go's form for negative times: the fraction counts back from secs+1.
    let (secs, nanos) = if t.secs < 0 {
        (t.secs + 1, 1_000_000_000 - t.nanos)
    } else {
        (t.secs, t.nanos)
    };
    let sign = if t.secs < 0 && secs == 0 { "-" } else { "" };
    format!("{sign}{secs}.{nanos:09}").into_bytes()
}

/// PAX records: `LEN key=value\n`, LEN counting itself.
fn pax_body(records: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut body = Vec::new();
    for (key, value) in records {
        let rest = key.len() + value.len() + 3;
        let mut len = rest + 1;
        while len != rest + len.to_string().len() {
            len = rest + len.to_string().len();
        }
        body.extend_from_slice(len.to_string().as_bytes());
        body.push(b' ');
        body.extend_from_slice(key);
        body.push(b'=');
        body.extend_from_slice(value);
        body.push(b'\n');
    }
    body
}

fn pad(out: &mut impl Write, size: u64) -> std::result::Result<(), CopyError> {
    let rem = (size % 512) as usize;
    if rem != 0 {
        out.write_all(&[0u8; 512][..512 - rem])
            .map_err(CopyError::Write)?;
    }
    Ok(())
}

/// The current entry's content (holes as zeros), telling a failure of the
/// layer from a failure of the output.
fn copy_content<R: Read>(
    reader: &mut crate::tar::Reader<R>,
    out: &mut impl Write,
) -> std::result::Result<u64, CopyError> {
    crate::export::docker_save::copy(reader, out).map_err(|e| match e {
        // What our reader refused, or a failure of the stream under it.
        CopyError::Read(e) if e.get_ref().is_some_and(|inner| inner.is::<TarError>()) => e
            .into_inner()
            .and_then(|inner| inner.downcast::<TarError>().ok())
            .map_or_else(
                || CopyError::Read(io::Error::other("the layer could not be read")),
                |tar| CopyError::Tar(*tar),
            ),
        other => other,
    })
}

/// Hashes what is written through it.
struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// `secs` since the epoch as RFC 3339 UTC (`1970-01-01T00:00:00Z`).
fn rfc3339(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(build: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        build(&mut b);
        b.into_inner().unwrap()
    }

    fn file(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8], mtime: u64) {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(mtime);
        b.append_data(&mut h, path, data).unwrap();
    }

    fn entries(bytes: &[u8]) -> Vec<Header> {
        let mut r = crate::tar::Reader::new(bytes, Limits::default());
        let mut out = Vec::new();
        while let Some(h) = r.next_entry().unwrap() {
            out.push(h);
        }
        out
    }

    fn rewrite(filter: &Filter, input: &[u8]) -> (Vec<u8>, Digest) {
        let mut out = Vec::new();
        let id = filter
            .rewrite_layer(input, &mut out, Limits::default())
            .unwrap();
        (out, id)
    }

    #[test]
    fn filter_normalizes_and_excludes() {
        let long = format!("{}/file", "d".repeat(150));
        let input = layer(|b| {
            file(b, "a/keep", b"1", 1_700_000_000);
            file(b, "var/cache/x/y", b"2", 5);
            file(b, &long, b"3", 7);
            file(b, "var/cache/.wh.z", b"", 7);
            file(b, "var/.wh.cache", b"", 7);
        });
        let filter = Filter {
            normalize: Some(42),
            exclude: vec![Pattern::glob("var/cache").unwrap()],
        };
        let (out, id) = rewrite(&filter, &input);
        assert_eq!(id, Digest::sha256_of(&out));
        let got = entries(&out);
        let names: Vec<_> = got.iter().map(|h| h.name.clone()).collect();
        assert_eq!(
            names,
            vec![
                b"a/keep".to_vec(),
                long.clone().into_bytes(),
                b"var/.wh.cache".to_vec()
            ]
        );
        assert!(got.iter().all(|h| h.mtime.secs == 42));
        // The same input gives the same bytes.
        assert_eq!(rewrite(&filter, &input).0, out);
    }

    #[test]
    fn filter_keeps_pax_records_and_times() {
        let input = layer(|b| {
            let mut h = tar::Header::new_ustar();
            h.set_size(0);
            h.set_entry_type(tar::EntryType::Regular);
            b.append_pax_extensions([("SCHILY.xattr.user.k", &b"v\n1"[..]), ("mtime", b"12.5")])
                .unwrap();
            b.append_data(&mut h, "f", &b""[..]).unwrap();
        });
        let (out, _) = rewrite(&Filter::default(), &input);
        let h = &entries(&out)[0];
        assert_eq!(h.xattrs(), vec![(b"user.k".to_vec(), b"v\n1".to_vec())]);
        assert_eq!(
            h.mtime,
            Time {
                secs: 12,
                nanos: 500_000_000
            }
        );
    }

    #[test]
    fn filter_drops_hardlinks_to_excluded_files() {
        let input = layer(|b| {
            file(b, "x", b"1", 0);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(tar::EntryType::Link);
            b.append_link(&mut h, "y", "x").unwrap();
        });
        let filter = Filter {
            normalize: None,
            exclude: vec![Pattern::glob("x").unwrap()],
        };
        assert!(entries(&rewrite(&filter, &input).0).is_empty());
    }

    #[test]
    fn filter_config_and_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        let d = Digest::sha256_of(b"x");
        let filter = Filter {
            normalize: Some(0),
            exclude: Vec::new(),
        };
        let config =
            br#"{"created":"2024-01-01T00:00:00Z","rootfs":{"type":"layers","diff_ids":[]}}"#;
        let out = filter
            .rewrite_config(config, &d, std::slice::from_ref(&d))
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["created"], "1970-01-01T00:00:00Z");
        assert_eq!(v["rootfs"]["diff_ids"][0], d.to_string());
    }
}
