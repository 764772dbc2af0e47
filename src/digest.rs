//! Content digests (`sha256:<hex>`) and readers that verify them as bytes
//! stream through, so nothing unverified reaches a finished output.

use std::fmt;
use std::io::{self, Read};

use sha2::{Digest as _, Sha256, Sha512};

/// A blob or layer failed verification.
#[derive(Debug, Clone, thiserror::Error)]
pub enum IntegrityError {
    /// A digest (in a manifest, index, config or name) that does not
    /// parse, or of an algorithm other than sha256 and sha512.
    #[error("{digest:?}: not a valid digest (expected sha256:<64 lowercase hex>)")]
    BadDigest {
        /// The text given, as given.
        digest: String,
    },

    /// Content hashes to another digest than the one it was fetched by
    /// (or, for an uncompressed layer, than its diff_id).
    #[error("{what} {expected}: content does not match its digest (got {actual})")]
    DigestMismatch {
        /// What was read: "manifest", "config", "layer diff_id"...
        what: &'static str,
        /// The digest it should have.
        expected: String,
        /// The digest it has.
        actual: String,
    },

    /// A blob is shorter or longer than its descriptor says.
    #[error("{what} {digest}: expected {expected} bytes, got {actual}{}", if actual > expected { " or more" } else { "" })]
    SizeMismatch {
        /// What was read.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// The size its descriptor gives, in bytes.
        expected: u64,
        /// The bytes read; reading stops at the first byte too many.
        actual: u64,
    },

    /// A layer blob that its compression cannot decode (corrupt,
    /// truncated, or not what its media type says).
    #[error("layer {digest}: cannot decompress ({compression}): {reason}")]
    Decompress {
        /// The layer's blob digest.
        digest: String,
        /// "gzip", "zstd"...
        compression: &'static str,
        /// The decoder's error.
        reason: String,
    },

    /// A blob or uncompressed layer over its size limit (manifests and
    /// configs have fixed ones; layers
    /// [`LayerLimits`](crate::layer::LayerLimits)).
    #[error("{what} {digest}: larger than the {limit}-byte limit")]
    TooLarge {
        /// What was read.
        what: &'static str,
        /// Its digest.
        digest: String,
        /// The limit, in bytes.
        limit: u64,
    },

    /// A layer with more tar entries than
    /// [`LayerLimits`](crate::layer::LayerLimits) allows.
    #[error("layer {digest}: more than the limit of {limit} tar entries")]
    TooManyEntries {
        /// The layer's blob digest.
        digest: String,
        /// The limit.
        limit: u64,
    },
}

/// A parsed, validated content digest.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Algorithm {
    Sha256,
    Sha512,
}

impl Digest {
    /// Parse `sha256:<64 hex>` or `sha512:<128 hex>` (lowercase hex).
    pub fn parse(s: &str) -> Result<Digest, IntegrityError> {
        let bad = || IntegrityError::BadDigest {
            digest: s.to_string(),
        };
        let (alg, hex) = s.split_once(':').ok_or_else(bad)?;
        let (algorithm, len) = match alg {
            "sha256" => (Algorithm::Sha256, 64),
            "sha512" => (Algorithm::Sha512, 128),
            _ => return Err(bad()),
        };
        let valid = hex.len() == len
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !valid {
            return Err(bad());
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The sha256 digest of `bytes`.
    pub fn sha256_of(bytes: &[u8]) -> Digest {
        Digest {
            algorithm: Algorithm::Sha256,
            hex: hex::encode(Sha256::digest(bytes)),
        }
    }

    /// The hex part, without the algorithm.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// A hasher for this digest's algorithm.
    pub fn hasher(&self) -> Hasher {
        match self.algorithm {
            Algorithm::Sha256 => Hasher::sha256(),
            Algorithm::Sha512 => Hasher::Sha512(Sha512::new()),
        }
    }

    /// Check `bytes` against this digest.
    pub fn verify(&self, what: &'static str, bytes: &[u8]) -> Result<(), IntegrityError> {
        let mut h = self.hasher();
        h.update(bytes);
        h.check(what, self)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alg = match self.algorithm {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        };
        write!(f, "{alg}:{}", self.hex)
    }
}

/// An incremental hash of one of the supported algorithms.
pub enum Hasher {
    /// A sha256 hash in progress.
    Sha256(Sha256),
    /// A sha512 hash in progress.
    Sha512(Sha512),
}

impl Hasher {
    /// Feed bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::Sha512(h) => h.update(bytes),
        }
    }

    /// A sha256 hasher.
    pub fn sha256() -> Hasher {
        Hasher::Sha256(Sha256::new())
    }

    /// Finish: the digest of what was fed.
    pub fn finish(self) -> Digest {
        match self {
            Hasher::Sha256(h) => Digest {
                algorithm: Algorithm::Sha256,
                hex: hex::encode(h.finalize()),
            },
            Hasher::Sha512(h) => Digest {
                algorithm: Algorithm::Sha512,
                hex: hex::encode(h.finalize()),
            },
        }
    }

    /// Finish and compare with `expected`.
    pub fn check(self, what: &'static str, expected: &Digest) -> Result<(), IntegrityError> {
        let actual = self.finish();
        if actual == *expected {
            Ok(())
        } else {
            Err(IntegrityError::DigestMismatch {
                what,
                expected: expected.to_string(),
                actual: actual.to_string(),
            })
        }
    }
}

/// A blob of `size` bytes that must fit in memory is refused beyond `limit`.
pub(crate) fn within_limit(
    what: &'static str,
    digest: &Digest,
    size: u64,
    limit: u64,
) -> Result<(), IntegrityError> {
    if size > limit {
        return Err(IntegrityError::TooLarge {
            what,
            digest: digest.to_string(),
            limit,
        });
    }
    Ok(())
}

/// Hashes what is read through it (a layer's diff_id, as it streams); the
/// reader that owns the stream checks the result.
pub(crate) struct HashingReader<R> {
    pub(crate) inner: R,
    pub(crate) hasher: Hasher,
}

impl<R> HashingReader<R> {
    pub(crate) fn new(inner: R, hasher: Hasher) -> Self {
        HashingReader { inner, hasher }
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// Wraps a reader; hashes and counts what passes through and, at end of
/// stream, fails unless digest (and size, when known) match. A stream longer
/// than the expected size fails as soon as the excess byte arrives.
pub struct VerifyingReader<R> {
    inner: R,
    what: &'static str,
    expected: Digest,
    size: Option<u64>,
    seen: u64,
    hasher: Option<Hasher>,
    /// How the end was judged: a reader read again after a failure fails
    /// again (a cache fill must never take a second end for a good one).
    failed: Option<IntegrityError>,
}

impl<R: Read> VerifyingReader<R> {
    /// Verify `inner` against `expected` (and `size` if given).
    pub fn new(inner: R, what: &'static str, expected: Digest, size: Option<u64>) -> Self {
        let hasher = Some(expected.hasher());
        VerifyingReader {
            inner,
            what,
            expected,
            size,
            seen: 0,
            hasher,
            failed: None,
        }
    }

    /// Bytes already verified against `expected` (a checked cache entry):
    /// only their size is checked again, so the digest is not computed twice.
    pub fn verified(inner: R, what: &'static str, expected: Digest, size: u64) -> Self {
        VerifyingReader {
            hasher: None,
            ..VerifyingReader::new(inner, what, expected, Some(size))
        }
    }

    /// Read to the end (discarding) so the check runs even if the consumer
    /// stopped early, e.g. at a tar end-of-archive marker.
    pub fn drain(&mut self) -> io::Result<()> {
        io::copy(self, &mut io::sink()).map(|_| ())
    }

    fn finish(&mut self) -> Result<(), IntegrityError> {
        if let Some(failed) = &self.failed {
            return Err(failed.clone());
        }
        let judged = match self.size {
            Some(size) if size != self.seen => Err(self.size_error(size)),
            _ => match self.hasher.take() {
                Some(h) => h.check(self.what, &self.expected),
                None => Ok(()),
            },
        };
        if let Err(e) = &judged {
            self.failed = Some(e.clone());
        }
        judged
    }

    fn size_error(&self, expected: u64) -> IntegrityError {
        IntegrityError::SizeMismatch {
            what: self.what,
            digest: self.expected.to_string(),
            expected,
            actual: self.seen,
        }
    }
}

impl<R: Read> Read for VerifyingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            if !buf.is_empty() {
                self.finish().map_err(io::Error::other)?;
            }
            return Ok(0);
        }
        self.seen += n as u64;
        if let Some(size) = self.size
            && self.seen > size
        {
            return Err(io::Error::other(self.size_error(size)));
        }
        if let Some(h) = self.hasher.as_mut() {
            h.update(&buf[..n]);
        }
        Ok(n)
    }
}

/// The [`IntegrityError`] an I/O error carries, however deeply wrapped.
pub fn integrity_cause(err: &io::Error) -> Option<&IntegrityError> {
    crate::cause::find(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn parses_and_rejects() {
        assert!(Digest::parse(HELLO).is_ok());
        for bad in [
            "sha256:abc",
            "md5:2cf24dba5fb0a30e26e83b2ac5b9e29e",
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
            "sha256:2CF24DBA5FB0A30E26E83B2AC5B9E29E1B161E5C1FA7425E73043362938B9824",
            "sha256:zzf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824",
        ] {
            assert!(Digest::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_failed_end_fails_again_when_read_again() {
        let d = Digest::parse(HELLO).unwrap();
        let mut r = VerifyingReader::new(&b"hellO"[..], "blob", d, Some(5));
        let mut buf = [0u8; 16];
        assert_eq!(r.read(&mut buf).unwrap(), 5);
        assert!(r.read(&mut buf).is_err());
        assert!(r.read(&mut buf).is_err(), "a second end is not a good one");
    }

    fn read_all(data: &[u8], digest: &str, size: Option<u64>) -> io::Result<Vec<u8>> {
        let d = Digest::parse(digest).unwrap();
        let mut r = VerifyingReader::new(data, "blob", d, size);
        let mut out = Vec::new();
        r.read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn verifies_digest_and_size() {
        assert_eq!(read_all(b"hello", HELLO, Some(5)).unwrap(), b"hello");
        assert_eq!(read_all(b"hello", HELLO, None).unwrap(), b"hello");
        let e = read_all(b"hellO", HELLO, Some(5)).unwrap_err();
        assert!(matches!(
            integrity_cause(&e),
            Some(IntegrityError::DigestMismatch { .. })
        ));
        let e = read_all(b"hell", HELLO, Some(5)).unwrap_err();
        assert!(matches!(
            integrity_cause(&e),
            Some(IntegrityError::SizeMismatch { actual: 4, .. })
        ));
        let e = read_all(b"hello!", HELLO, Some(5)).unwrap_err();
        assert!(matches!(
            integrity_cause(&e),
            Some(IntegrityError::SizeMismatch { .. })
        ));
    }
}
