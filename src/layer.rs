//! One layer as a verified stream: the blob's bytes (already checked
//! against its digest by the registry reader) are decompressed and the
//! result is checked against the config's diff_id as it flows.

use std::io::{self, BufRead, BufReader, Read};

use crate::digest::{Digest, VerifyingReader};

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

/// The uncompressed tar stream of one layer, verified against its diff_id
/// when it reaches its end. Call [`LayerDecoder::finish`] after reading so
/// the checks run even if the reader stopped early.
pub struct LayerDecoder {
    inner: VerifyingReader<Decoder>,
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
        diff_id: Digest,
    ) -> io::Result<LayerDecoder> {
        let mut blob = BufReader::with_capacity(256 * 1024, blob);
        let compression = match Compression::from_media_type(media_type) {
            Some(c) => c,
            None => Compression::sniff(blob.fill_buf()?),
        };
        let decoder: Decoder = match compression {
            Compression::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(blob)),
            Compression::Zstd => Box::new(zstd::stream::read::Decoder::with_buffer(blob)?),
            Compression::None => Box::new(blob),
        };
        Ok(LayerDecoder {
            inner: VerifyingReader::new(decoder, "layer diff_id", diff_id, None),
            digest: digest.to_string(),
            compression,
        })
    }

    /// Drain what is left and run the final digest and diff_id checks.
    pub fn finish(mut self) -> Result<(), crate::Error> {
        self.inner.drain().map_err(|e| self.classify(e))
    }

    /// Turn an I/O error raised while reading this layer into the most
    /// precise library error: integrity failures first, then decompression
    /// failures (the decoders report corrupt input as InvalidData).
    pub fn classify(&self, err: io::Error) -> crate::Error {
        classify_read_error(err, &self.digest, self.compression)
    }
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
