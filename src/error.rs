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
    /// An image name or reference does not parse.
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference {
        /// The text given, as given.
        reference: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A platform (`os/arch[/variant]`) does not parse.
    #[error("invalid platform {platform:?}: {reason}")]
    InvalidPlatform {
        /// The text given, as given.
        platform: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Options or names that cannot go together, or an input that is not
    /// what its transport says (a file that is not a docker-archive).
    #[error("{0}")]
    Usage(String),

    /// The registry (or engine) has no such repository, tag or blob.
    #[error("{reference}: not found in the registry: {}", escape::bytes(message.as_bytes()))]
    NotFound {
        /// The image asked for.
        reference: String,
        /// The registry's own words, unescaped: print it escaped.
        message: String,
    },

    /// The registry refused the credentials, or asked for some and none
    /// were configured.
    #[error("{reference}: authentication failed: {}", escape::bytes(message.as_bytes()))]
    Auth {
        /// The image asked for.
        reference: String,
        /// The registry's own words, unescaped: print it escaped.
        message: String,
    },

    /// The registry or engine failed otherwise: an unexpected status, a
    /// download broken off, every endpoint (mirrors included) failed once
    /// retries were spent.
    #[error("{reference}: registry error: {}", escape::bytes(message.as_bytes()))]
    Registry {
        /// The image asked for.
        reference: String,
        /// What failed, with the registry's own words unescaped: print it
        /// escaped.
        message: String,
    },

    /// registries.conf blocks the registry (exit 2, like other usage errors:
    /// asking again will not help, changing the configuration will).
    #[error("{reference}: blocked by the [[registry]] with prefix {prefix:?} at {source_file}")]
    Blocked {
        /// The image asked for.
        reference: String,
        /// The blocking entry's `prefix`.
        prefix: String,
        /// The registries.conf file that holds the entry.
        source_file: String,
    },

    /// No image of the index fits the platform asked for, or a
    /// single-platform image is of another platform than the one
    /// required ([`crate::PullOptions::platform_required`]).
    #[error("{reference}: no image for platform {wanted}; the image has: {available}")]
    NoMatchingPlatform {
        /// The image asked for.
        reference: String,
        /// The platform asked for, as `os/arch[/variant]`.
        wanted: String,
        /// The platforms the image offers, comma-separated.
        available: String,
    },

    /// A manifest of a type occystrap does not read (Docker schema 1, an
    /// artifact, an unknown media type).
    #[error("{reference}: unsupported manifest type {media_type:?}: {reason}")]
    UnsupportedManifest {
        /// The image asked for.
        reference: String,
        /// The manifest's media type, as declared or inferred.
        media_type: String,
        /// Why it is not read.
        reason: String,
    },

    /// Metadata (a manifest, config, index or archive's manifest.json) that
    /// does not parse or contradicts itself.
    #[error("{what} {}: malformed: {reason}", escape::bytes(digest.as_bytes()))]
    Malformed {
        /// What was read: "manifest", "config", "docker archive"...
        what: String,
        /// Its digest, or its path for an archive; unescaped.
        digest: String,
        /// What is wrong with it.
        reason: String,
    },

    /// Content does not match its digest, size or diff_id.
    #[error("{0}")]
    Integrity(#[from] crate::digest::IntegrityError),

    /// A local file operation failed.
    #[error("{}: {source}", escape::path(path))]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// An overlay of stored layers cannot be mounted here (not root, or an
    /// upper directory on a filesystem overlayfs refuses).
    #[error(
        "{}: cannot mount an overlay of {layers} layers here ({errno}); overlay needs root (or Linux 5.11 in a user namespace) and a filesystem overlayfs accepts as upper (not overlayfs itself, not NFS)",
        escape::path(path)
    )]
    Overlay {
        /// Where it was to be mounted.
        path: PathBuf,
        /// How many lower directories it had.
        layers: usize,
        /// What mount(2) said.
        errno: nix::errno::Errno,
    },

    /// A layer could not be applied to the root filesystem: malformed,
    /// hostile (escaping the root) or a local failure.
    #[error("layer {}: {source}", escape::bytes(digest.as_bytes()))]
    Unpack {
        /// The layer's blob digest.
        digest: String,
        /// What went wrong in it.
        #[source]
        source: crate::unpack::UnpackError,
    },

    /// The image config cannot become a runtime `config.json`.
    #[error("{0}")]
    Convert(#[from] crate::bundle::convert::ConvertError),

    /// The output is already there and replacing it was not asked for.
    #[error("{}: already exists (use --force to replace it)", escape::path(path))]
    OutputExists {
        /// The output's path.
        path: PathBuf,
    },

    /// [`crate::recreate_image`]: the shared image directory's catalog has
    /// no such image.
    #[error("{image}: not in {}; it has: {available}", escape::path(catalog))]
    NotInCatalog {
        /// The catalog file.
        catalog: PathBuf,
        /// The image asked for, as `NAME:TAG`.
        image: String,
        /// The images the catalog holds, comma-separated.
        available: String,
    },

    /// `check` found problems (printed as its report).
    #[error("{reference}: the check found {problems} problem(s)")]
    Unsound {
        /// The image checked.
        reference: String,
        /// How many problems the report lists.
        problems: usize,
    },

    /// The operation's [`Cancel`](crate::Cancel) token was cancelled; its
    /// temporaries are removed.
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
            | Error::Convert(
                crate::bundle::convert::ConvertError::RelativeWorkdir(_)
                | crate::bundle::convert::ConvertError::UnmappedId { .. },
            ) => ErrorKind::Usage,
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
            Error::Registry { .. }
            | Error::Io { .. }
            | Error::Overlay { .. }
            | Error::Unpack { .. } => ErrorKind::Io,
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
pub(crate) use crate::cause::find as find_cause;

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
