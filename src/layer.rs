//! One layer as a verified stream: the blob's bytes (already checked
//! against its digest by the registry reader) are decompressed and the
//! result is checked against the config's diff_id as it flows.

use std::io::{self, BufRead, BufReader, Read};

/// A blob or layer failed verification.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IntegrityError {
    #[error("{digest:?}: not a valid digest (expected sha256:<64 lowercase hex>)")]
    BadDigest { digest: String },

    #[error("{what} {expected}: content does not match its digest (got {actual})")]
    DigestMismatch {
        what: &'static str,
        expected: String,
        actual: String,
    },

    #[error("{what} {digest}: expected {expected} bytes, got {actual}{}", if actual > expected { " or more" } else { "" })]
    SizeMismatch {
        what: &'static str,
        digest: String,
        expected: u64,
        actual: u64,
    },

    #[error("layer {digest}: cannot decompress ({compression}): {reason}")]
    Decompress {
        digest: String,
        compression: &'static str,
        reason: String,
    },

    #[error("{what} {digest}: larger than the {limit}-byte limit")]
    TooLarge {
        what: &'static str,
        digest: String,
        limit: u64,
    },

    #[error("layer {digest}: more than the limit of {limit} tar entries")]
    TooManyEntries { digest: String, limit: u64 },
}

/// Caps on what one layer may decompress to, so that a decompression bomb
/// fails cleanly before it fills the disk. `None`: no cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerLimits {
    /// Most bytes of uncompressed tar.
    pub max_size: Option<u64>,
    /// Most tar entries (extension headers do not count).
    pub max_entries: Option<u64>,
}

/// Parse a byte count with an optional binary suffix: `1048576`, `512K`,
/// `100M`, `10G`, `1T` (also `KiB`, `MB`... all meaning powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: not a size (e.g. 1048576, 512K, 100M, 10G)"))?;
    let shift = match unit
        .trim()
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("{s:?}: unknown unit {unit:?} (use K, M, G or T)")),
    };
    number
        .checked_mul(1 << shift)
        .ok_or_else(|| format!("{s:?}: too large"))
}

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// From a layer media type; `None` when the type does not say.
    pub fn from_media_type(media_type: &str) -> Option<Compression> {
        if media_type.ends_with("+gzip") || media_type.ends_with(".gzip") {
            Some(Compression::Gzip)
        } else if media_type.ends_with("+zstd") || media_type.ends_with(".zstd") {
            Some(Compression::Zstd)
        } else if media_type.ends_with(".tar") || media_type.ends_with("layer.v1.tar") {
            Some(Compression::None)
        } else {
            None
        }
    }

    /// From the first bytes of the blob.
    pub fn sniff(head: &[u8]) -> Compression {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
            Compression::None => "uncompressed",
        }
    }
}

type Decoder = Box<dyn Read + Send + 'static>;

/// The uncompressed tar stream of one layer, held to its [`LayerLimits`]
/// as it flows. Its diff_id is checked by whoever reads it (the pipeline
/// does that on the consumer's thread, to share the hashing between
/// cores). Call [`LayerDecoder::finish`] after reading so the blob's own
/// checks run even if the reader stopped early.
pub struct LayerDecoder {
    inner: Limited,
    digest: String,
    compression: Compression,
}

impl LayerDecoder {
    /// Wrap a (digest-verified) blob reader. The compression comes from the
    /// media type if it says, else from magic bytes.
    pub fn new<R: Read + Send + 'static>(
        blob: R,
        media_type: &str,
        digest: &str,
        limits: LayerLimits,
    ) -> io::Result<LayerDecoder> {
        let mut blob = BufReader::with_capacity(256 * 1024, blob);
        let compression = match Compression::from_media_type(media_type) {
            Some(c) => c,
            None => Compression::sniff(blob.fill_buf()?),
        };
        let decoder: Decoder = match compression {
            Compression::Gzip => Box::new(crate::gzip::MultiGunzip::new(blob)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(blob)?),
            Compression::None => Box::new(blob),
        };
        let limited = Limited {
            inner: decoder,
            digest: digest.to_string(),
            limits,
            size: 0,
            entries: limits.max_entries.map(|_| EntryCounter::default()),
        };
        Ok(LayerDecoder {
            inner: limited,
            digest: digest.to_string(),
            compression,
        })
    }

    /// Drain what is left so the blob's digest and size checks run.
    pub fn finish(mut self) -> Result<(), crate::Error> {
        io::copy(&mut self.inner, &mut io::sink())
            .map(drop)
            .map_err(|e| self.classify(e))
    }

    /// Turn an I/O error raised while reading this layer into the most
    /// precise library error: integrity failures first, then decompression
    /// failures (the decoders report corrupt input as InvalidData).
    pub fn classify(&self, err: io::Error) -> crate::Error {
        classify_read_error(err, &self.digest, self.compression)
    }
}

/// The decompressed stream, failing as soon as it passes a limit.
struct Limited {
    inner: Decoder,
    digest: String,
    limits: LayerLimits,
    size: u64,
    entries: Option<EntryCounter>,
}

impl Read for Limited {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.size += n as u64;
        if let Some(limit) = self.limits.max_size
            && self.size > limit
        {
            return Err(io::Error::other(IntegrityError::TooLarge {
                what: "uncompressed layer",
                digest: self.digest.clone(),
                limit,
            }));
        }
        if let (Some(counter), Some(limit)) = (self.entries.as_mut(), self.limits.max_entries) {
            counter.feed(&buf[..n]);
            if counter.entries > limit {
                return Err(io::Error::other(IntegrityError::TooManyEntries {
                    digest: self.digest.clone(),
                    limit,
                }));
            }
        }
        Ok(n)
    }
}

/// Tar blocks are 512 bytes.
const BLOCK: usize = 512;
/// PAX extended headers longer than this are not searched for a size.
const PAX_LIMIT: usize = 1 << 20;

/// Counts a tar stream's entries from its block structure alone (headers,
/// sizes, PAX `size` records, GNU sparse extension blocks), without
/// parsing names. It stops counting at the end-of-archive block or at a
/// header it cannot read: the tar parser downstream reports those.
#[derive(Default)]
struct EntryCounter {
    block: Vec<u8>,
    /// Bytes of the current entry's data (with padding) still to pass.
    skip: u64,
    /// Of those, how many belong to a PAX header being collected.
    pax_left: u64,
    pax: Option<Vec<u8>>,
    /// The size a PAX header set for the next entry.
    pax_size: Option<u64>,
    /// The next block is a GNU sparse extension block.
    sparse_extension: bool,
    stopped: bool,
    entries: u64,
}

impl EntryCounter {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.stopped {
            if self.skip > 0 {
                let n = self.skip.min(data.len() as u64) as usize;
                self.collect_pax(&data[..n]);
                self.skip -= n as u64;
                data = &data[n..];
                if self.skip == 0 {
                    self.end_of_data();
                }
                continue;
            }
            let n = (BLOCK - self.block.len()).min(data.len());
            self.block.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.block.len() == BLOCK {
                let block = std::mem::take(&mut self.block);
                self.header(&block);
            }
        }
    }

    fn collect_pax(&mut self, data: &[u8]) {
        if let Some(pax) = self.pax.as_mut() {
            let n = self.pax_left.min(data.len() as u64) as usize;
            self.pax_left -= n as u64;
            if pax.len() + n <= PAX_LIMIT {
                pax.extend_from_slice(&data[..n]);
            }
        }
    }

    fn end_of_data(&mut self) {
        if let Some(pax) = self.pax.take() {
            self.pax_size = pax_size(&pax);
        }
    }

    fn header(&mut self, block: &[u8]) {
        if self.sparse_extension {
            self.sparse_extension = block[504] != 0;
            return;
        }
        if block.iter().all(|&b| b == 0) {
            self.stopped = true;
            return;
        }
        let Some(field_size) = header_size(&block[124..136]) else {
            self.stopped = true;
            return;
        };
        let kind = block[156];
        let size = match kind {
            b'x' | b'g' | b'L' | b'K' => field_size,
            _ => self.pax_size.take().unwrap_or(field_size),
        };
        match kind {
            b'x' => {
                self.pax = Some(Vec::new());
                self.pax_left = size;
            }
            b'g' | b'L' | b'K' => {}
            _ => {
                self.entries += 1;
                self.sparse_extension = kind == b'S' && block[482] != 0;
            }
        }
        self.skip = size.div_ceil(BLOCK as u64) * BLOCK as u64;
        if self.skip == 0 {
            self.end_of_data();
        }
    }
}

/// A tar header's size field: octal, or base-256 when the top bit is set.
fn header_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        let mut value: u64 = u64::from(field[0] & 0x7f);
        for &b in &field[1..] {
            value = value.checked_mul(256)?.checked_add(u64::from(b))?;
        }
        return Some(value);
    }
    let text = std::str::from_utf8(field).ok()?;
    let digits = text.trim_matches(|c: char| c == ' ' || c == '\0');
    if digits.is_empty() {
        return Some(0);
    }
    u64::from_str_radix(digits, 8).ok()
}

/// The `size` record of a PAX extended header (`LEN size=VALUE\n` records).
fn pax_size(mut data: &[u8]) -> Option<u64> {
    let mut found = None;
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
        if len <= space || len > data.len() {
            return found;
        }
        let record = &data[space + 1..len];
        if let Some(value) = record.strip_prefix(b"size=") {
            let value = std::str::from_utf8(value).ok()?.trim_end_matches('\n');
            found = value.parse().ok();
        }
        data = &data[len..];
    }
    found
}

/// See [`LayerDecoder::classify`]: a failed check, then a failed
/// download, and anything else the decompressor or reader raised means the
/// content is corrupt.
pub fn classify_read_error(err: io::Error, digest: &str, compression: Compression) -> crate::Error {
    if let Some(integrity) = crate::digest::integrity_cause(&err) {
        return crate::Error::Integrity(integrity.clone());
    }
    if let Some(transport) = crate::error::find_cause::<crate::registry::TransportError>(&err) {
        return crate::Error::Registry {
            reference: transport.reference.clone(),
            message: format!("download failed: {}", transport.message),
        };
    }
    crate::Error::Integrity(IntegrityError::Decompress {
        digest: digest.to_string(),
        compression: compression.name(),
        reason: err.to_string(),
    })
}

impl Read for LayerDecoder {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tar with `count` small files, one of them given a PAX header with
    /// a long path (extension headers are not entries).
    fn tar_with(count: usize) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for i in 0..count {
            let data = vec![b'x'; i * 300];
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            let name = if i == 1 {
                format!("{}/file{i}", "d".repeat(200))
            } else {
                format!("file{i}")
            };
            builder.append_data(&mut header, name, &data[..]).unwrap();
        }
        let mut pax = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_ustar();
        header.set_size(5);
        header.set_mode(0o644);
        pax.append_pax_extensions([("path", "p".repeat(150).as_bytes())])
            .unwrap();
        pax.append_data(&mut header, "x", &b"hello"[..]).unwrap();
        let mut out = pax.into_inner().unwrap();
        out.truncate(out.len() - 1024); // drop its end-of-archive blocks
        out.extend(builder.into_inner().unwrap());
        out
    }

    fn count(tar: &[u8], chunk: usize) -> u64 {
        let mut counter = EntryCounter::default();
        for piece in tar.chunks(chunk) {
            counter.feed(piece);
        }
        counter.entries
    }

    #[test]
    fn counts_entries_in_any_chunking() {
        let tar = tar_with(7);
        for chunk in [1, 7, 512, 513, 4096, tar.len()] {
            assert_eq!(count(&tar, chunk), 8, "chunk {chunk}");
        }
    }

    #[test]
    fn pax_size_overrides_the_header() {
        let mut records = Vec::new();
        records.extend_from_slice(b"16 size=1000000\n");
        records.extend_from_slice(b"12 path=abc\n");
        assert_eq!(pax_size(&records), Some(1_000_000));
        assert_eq!(pax_size(b"12 path=abc\n"), None);
        assert_eq!(header_size(b"00000001750\0"), Some(1000));
        let mut base256 = [0u8; 12];
        base256[0] = 0x80;
        base256[11] = 1;
        base256[10] = 2;
        assert_eq!(header_size(&base256), Some(513));
    }

    fn decode(data: Vec<u8>, limits: LayerLimits) -> Result<(), crate::Error> {
        let mut d = LayerDecoder::new(
            io::Cursor::new(data),
            "application/vnd.oci.image.layer.v1.tar",
            "sha256:blob",
            limits,
        )
        .unwrap();
        let mut sink = Vec::new();
        d.read_to_end(&mut sink).map_err(|e| d.classify(e))?;
        d.finish()
    }

    #[test]
    fn limits_refuse_large_and_crowded_layers() {
        let tar = tar_with(7);
        let len = tar.len() as u64;
        decode(tar.clone(), LayerLimits::default()).unwrap();
        let exact = LayerLimits {
            max_size: Some(len),
            max_entries: Some(8),
        };
        decode(tar.clone(), exact).unwrap();
        let small = LayerLimits {
            max_size: Some(len - 1),
            max_entries: None,
        };
        let err = decode(tar.clone(), small).unwrap_err();
        assert!(
            matches!(
                err,
                crate::Error::Integrity(IntegrityError::TooLarge { .. })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("sha256:blob"), "{err}");
        let few = LayerLimits {
            max_size: None,
            max_entries: Some(7),
        };
        let err = decode(tar, few).unwrap_err();
        assert!(
            matches!(
                err,
                crate::Error::Integrity(IntegrityError::TooManyEntries { limit: 7, .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1t"), Ok(1 << 40));
        assert!(parse_size("ten").is_err());
        assert!(parse_size("10X").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
