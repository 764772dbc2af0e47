//! The library's error type. Every variant names the object at fault
//! (reference, digest or path) so a message alone is enough to act on.
//! Paths and what a registry or an image chose are shown escaped
//! ([`crate::escape`]): they may hold terminal escape sequences.

use std::path::PathBuf;

use crate::escape;

/// Result with the library's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broad classes of failure; the CLI maps each to its own exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The user asked for something malformed (reference, platform, option).
    Usage,
    /// The registry says no: missing image, tag, platform, or credentials.
    NotFound,
    /// Content failed verification (digest, size, diff_id) or is malformed.
    Integrity,
    /// Local filesystem or network transport failure.
    Io,
    /// Stopped on request (SIGINT, SIGTERM, [`crate::Cancel::cancel`]).
    Cancelled,
}

/// Everything that can go wrong in occystrap.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },

    #[error("invalid platform {platform:?}: {reason}")]
    InvalidPlatform { platform: String, reason: String },

    #[error("{0}")]
    Usage(String),

    #[error("{reference}: not found in the registry: {}", escape::bytes(message.as_bytes()))]
    NotFound { reference: String, message: String },

    #[error("{reference}: authentication failed: {}", escape::bytes(message.as_bytes()))]
    Auth { reference: String, message: String },

    #[error("{reference}: registry error: {}", escape::bytes(message.as_bytes()))]
    Registry { reference: String, message: String },

    /// registries.conf blocks the registry (exit 2, like other usage errors:
    /// asking again will not help, changing the configuration will).
    #[error("{reference}: blocked by the [[registry]] with prefix {prefix:?} at {source_file}")]
    Blocked {
        reference: String,
        prefix: String,
        source_file: String,
    },

    #[error("{reference}: no image for platform {wanted}; the image has: {available}")]
    NoMatchingPlatform {
        reference: String,
        wanted: String,
        available: String,
    },

    #[error("{reference}: unsupported manifest type {media_type:?}: {reason}")]
    UnsupportedManifest {
        reference: String,
        media_type: String,
        reason: String,
    },

    #[error("{what} {}: malformed: {reason}", escape::bytes(digest.as_bytes()))]
    Malformed {
        what: String,
        digest: String,
        reason: String,
    },

    #[error("{0}")]
    Integrity(#[from] crate::digest::IntegrityError),

    #[error("{}: {source}", escape::path(path))]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("layer {}: {source}", escape::bytes(digest.as_bytes()))]
    Unpack {
        digest: String,
        #[source]
        source: crate::unpack::UnpackError,
    },

    #[error("{0}")]
    Convert(#[from] crate::bundle::convert::ConvertError),

    #[error("{}: already exists (use --force to replace it)", escape::path(path))]
    OutputExists { path: PathBuf },

    #[error("{image}: not in {}; it has: {available}", escape::path(catalog))]
    NotInCatalog {
        catalog: PathBuf,
        image: String,
        available: String,
    },

    /// `check` found problems (printed as its report).
    #[error("{reference}: the check found {problems} problem(s)")]
    Unsound { reference: String, problems: usize },

    #[error("interrupted: nothing was written")]
    Cancelled,
}

impl Error {
    /// The class of this error, for exit codes.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::InvalidReference { .. }
            | Error::InvalidPlatform { .. }
            | Error::Usage(_)
            | Error::Blocked { .. }
            | Error::OutputExists { .. }
            | Error::Convert(crate::bundle::convert::ConvertError::RelativeWorkdir(_)) => {
                ErrorKind::Usage
            }
            Error::NotFound { .. }
            | Error::Auth { .. }
            | Error::NoMatchingPlatform { .. }
            | Error::NotInCatalog { .. } => ErrorKind::NotFound,
            Error::UnsupportedManifest { .. }
            | Error::Malformed { .. }
            | Error::Integrity(_)
            | Error::Convert(_)
            | Error::Unsound { .. } => ErrorKind::Integrity,
            Error::Unpack { source, .. } if source.is_integrity() => ErrorKind::Integrity,
            Error::Registry { .. } | Error::Io { .. } | Error::Unpack { .. } => ErrorKind::Io,
            Error::Cancelled => ErrorKind::Cancelled,
        }
    }

    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The error of type `T` an I/O error carries, however deeply wrapped.
pub use crate::cause::find as find_cause;

/// Reading a blob from where it is failed (a connection, a timeout, an
/// HTTP error mid-stream): not the content's fault. Sources tag their
/// read errors with it so that readers further down (decompression, tar)
/// can tell a failed download from corrupt content without knowing HTTP.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reference}: download failed: {message}")]
pub struct TransportError {
    /// The blob being read.
    pub reference: String,
    /// What went wrong.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_remote_text_are_escaped() {
        let io = Error::io("rootfs/\x1b[2Jetc", std::io::ErrorKind::NotFound.into());
        assert!(io.to_string().starts_with(r"rootfs/\x1b[2Jetc: "), "{io}");
        let reg = Error::Registry {
            reference: "r".into(),
            message: "denied\x1b]0;title\x07".into(),
        };
        assert_eq!(
            reg.to_string(),
            r"r: registry error: denied\x1b]0;title\x07"
        );
    }
}
