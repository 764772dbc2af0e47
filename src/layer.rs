//! One layer as a verified stream: the blob's bytes (already checked
//! against its digest by the registry reader) are decompressed and the
//! result is checked against the config's diff_id as it flows.

use std::io::{self, BufRead, BufReader, Read};

pub use crate::digest::IntegrityError;

/// Caps on what one layer may decompress to, so that a decompression bomb
/// fails cleanly before it fills the disk: the decompressor holds the
/// stream to `max_size`, and the tar reader holds the entries to both
/// (a sparse file counts its full size).
pub use crate::tar::Limits as LayerLimits;

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
    /// gzip (`+gzip`, and Docker's `.tar.gzip`).
    Gzip,
    /// zstd (`+zstd`).
    Zstd,
    /// An uncompressed tar.
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
pub(crate) struct LayerDecoder {
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
            limit: limits.max_size,
            size: 0,
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

    /// Decompress on a thread of its own, a few chunks ahead of the
    /// reader, so that whoever parses and hashes the stream works on the
    /// other core meanwhile.
    pub(crate) fn on_thread(self) -> io::Result<Decoded> {
        let (digest, compression) = (self.digest.clone(), self.compression);
        let (tx, rx) = std::sync::mpsc::sync_channel::<io::Result<Vec<u8>>>(AHEAD);
        let mut decoder = self;
        std::thread::Builder::new()
            .name("layer-decode".into())
            .spawn(move || {
                loop {
                    let mut chunk = vec![0u8; 256 * 1024];
                    let sent = match decoder.read(&mut chunk) {
                        Ok(0) => return,
                        Ok(n) => {
                            chunk.truncate(n);
                            tx.send(Ok(chunk))
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    };
                    // The reader went away: stop.
                    if sent.is_err() {
                        return;
                    }
                }
            })?;
        Ok(Decoded {
            rx,
            chunk: Vec::new(),
            pos: 0,
            digest,
            compression,
        })
    }
}

/// Chunks a [`LayerDecoder::on_thread`] decodes ahead (× 256 KiB).
const AHEAD: usize = 16;

/// A layer decompressed on another thread, as a stream.
pub(crate) struct Decoded {
    rx: std::sync::mpsc::Receiver<io::Result<Vec<u8>>>,
    chunk: Vec<u8>,
    pos: usize,
    digest: String,
    compression: Compression,
}

impl Decoded {
    /// See [`LayerDecoder::classify`].
    pub(crate) fn classify(&self, err: io::Error) -> crate::Error {
        classify_read_error(err, &self.digest, self.compression)
    }
}

impl Read for Decoded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.chunk.len() {
            match self.rx.recv() {
                Ok(Ok(chunk)) => {
                    self.chunk = chunk;
                    self.pos = 0;
                }
                Ok(Err(e)) => return Err(e),
                // The decoder ended the stream.
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.pos);
        buf[..n].copy_from_slice(&self.chunk[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// The decompressed stream, failing as soon as it passes the size limit.
struct Limited {
    inner: Decoder,
    digest: String,
    limit: Option<u64>,
    size: u64,
}

impl Read for Limited {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.size += n as u64;
        if let Some(limit) = self.limit
            && self.size > limit
        {
            return Err(io::Error::other(IntegrityError::TooLarge {
                what: "uncompressed layer",
                digest: self.digest.clone(),
                limit,
            }));
        }
        Ok(n)
    }
}

/// See [`LayerDecoder::classify`]: a failed check, then a failed
/// download, and anything else the decompressor or reader raised means the
/// content is corrupt.
pub(crate) fn classify_read_error(
    err: io::Error,
    digest: &str,
    compression: Compression,
) -> crate::Error {
    if let Some(integrity) = crate::digest::integrity_cause(&err) {
        return crate::Error::Integrity(integrity.clone());
    }
    if let Some(transport) = crate::error::find_cause::<crate::error::TransportError>(&err) {
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

    /// The stream's size is held here; entries are counted by the tar
    /// reader (see `crate::tar`).
    #[test]
    fn the_size_limit_refuses_large_streams() {
        let data = vec![7u8; 10_000];
        decode(data.clone(), LayerLimits::default()).unwrap();
        let exact = LayerLimits {
            max_size: Some(10_000),
            max_entries: Some(0),
        };
        decode(data.clone(), exact).unwrap();
        let small = LayerLimits {
            max_size: Some(9_999),
            max_entries: None,
        };
        let err = decode(data, small).unwrap_err();
        assert!(
            matches!(
                err,
                crate::Error::Integrity(IntegrityError::TooLarge { .. })
            ),
            "{err}"
        );
        assert!(err.to_string().contains("sha256:blob"), "{err}");
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
