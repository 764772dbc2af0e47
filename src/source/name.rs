//! Image names as the containers tools spell them (containers-transports(5)):
//! `docker://REF`, `docker-archive:PATH[:REF|:@N]`, `oci:PATH[:NAME]`,
//! `oci-archive:PATH[:NAME]`, `docker-daemon:REF`, or a bare reference,
//! which is a registry's as Docker reads it.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::digest::Digest;
use crate::escape;
use crate::reference::ImageRef;
use crate::{Error, Result};

/// Transports we read, as the containers tools name them.
pub const TRANSPORTS: &[&str] = &[
    "docker",
    "docker-archive",
    "oci",
    "oci-archive",
    "docker-daemon",
];

/// Names of transports that other tools have and we do not.
const OTHER_TRANSPORTS: &[&str] = &["containers-storage", "dir", "sif", "ostree", "tarball"];

/// Where an image is, and which one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageName {
    /// A registry's image (`docker://REF`, or a bare reference).
    Registry(ImageRef),
    /// A `docker save` tarball, or a directory laid out as one.
    DockerArchive {
        /// The tarball or directory.
        path: PathBuf,
        /// Which of its images; `None`: its only one (several are a
        /// usage error). As a copy's destination, the tag to write.
        image: Option<ArchiveImage>,
    },
    /// An OCI image layout directory (`archive: false`) or a tar of one.
    Oci {
        /// The layout directory, or the tar of one.
        path: PathBuf,
        /// The `org.opencontainers.image.ref.name` to pick; `None`: the
        /// layout's only image (or only index). As a copy's destination,
        /// the name to give.
        image: Option<String>,
        /// Whether `path` is a tar of the layout (`oci-archive:`) rather
        /// than the directory (`oci:`).
        archive: bool,
    },
    /// An image of the local Docker or Podman engine, by the name the
    /// engine knows it by (`app:ci`, `localhost:5000/x@sha256:...`) or
    /// its ID (`sha256:...`).
    DockerDaemon(String),
    /// A path given bare: what it is is told by its content.
    Path(PathBuf),
}

/// Which image of a docker-archive with several.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveImage {
    /// One of its `RepoTags`.
    Name(ImageRef),
    /// The Nth entry of its `manifest.json`, from 0 (`@N`).
    Index(usize),
}

impl ImageName {
    /// Parse an image name. A name without a transport is a registry
    /// reference, unless it is a path that exists and is written as one
    /// (starting with `/`, `./` or `../`, or ending in `.tar`): then it is
    /// the archive or layout found there.
    pub fn parse(s: &str) -> Result<ImageName> {
        let invalid = |reason: String| Error::InvalidReference {
            reference: s.to_string(),
            reason,
        };
        if let Some(rest) = s.strip_prefix("docker://") {
            return Ok(ImageName::Registry(rest.parse()?));
        }
        if let Some((transport, rest)) = s.split_once(':')
            && !transport.contains(['/', '.'])
        {
            let (path, image) = match rest.split_once(':') {
                Some((path, image)) => (path, Some(image)),
                None => (rest, None),
            };
            let path = || -> Result<PathBuf> {
                if path.is_empty() {
                    return Err(invalid(format!("{transport}: needs a path")));
                }
                Ok(PathBuf::from(path))
            };
            match transport {
                "docker-archive" => {
                    let image = match image {
                        None | Some("") => None,
                        Some(index) if index.starts_with('@') => {
                            Some(ArchiveImage::Index(index[1..].parse().map_err(|_| {
                                invalid(format!("{index:?}: not an image index (@0, @1, ...)"))
                            })?))
                        }
                        Some(name) => Some(ArchiveImage::Name(name.parse()?)),
                    };
                    return Ok(ImageName::DockerArchive {
                        path: path()?,
                        image,
                    });
                }
                "oci" | "oci-archive" => {
                    return Ok(ImageName::Oci {
                        path: path()?,
                        image: image.filter(|i| !i.is_empty()).map(str::to_string),
                        archive: transport == "oci-archive",
                    });
                }
                "docker-daemon" => {
                    if Digest::parse(rest).is_ok() {
                        return Ok(ImageName::DockerDaemon(rest.to_string()));
                    }
                    let reference: ImageRef = rest.parse()?;
                    // The engine's own short form: its store knows
                    // docker.io names, not registry-1.docker.io ones.
                    let name = match (&reference.digest, reference.familiar_tagged()) {
                        (Some(digest), _) => {
                            format!("{}@{digest}", reference.familiar_repository())
                        }
                        (None, Some(tagged)) => tagged,
                        (None, None) => reference.familiar_repository(),
                    };
                    return Ok(ImageName::DockerDaemon(name));
                }
                other if OTHER_TRANSPORTS.contains(&other) => {
                    return Err(invalid(format!(
                        "the {other} transport is not supported; use one of {}",
                        TRANSPORTS.join(", ")
                    )));
                }
                // `localhost:5000/app`, `busybox:latest`: a reference.
                _ => {}
            }
        }
        if looks_like_path(s) && Path::new(s).exists() {
            return Ok(ImageName::Path(PathBuf::from(s)));
        }
        match s.parse() {
            Ok(reference) => Ok(ImageName::Registry(reference)),
            Err(e) if looks_like_path(s) => Err(invalid(format!(
                "no such file or directory, and not an image reference ({e}); archives and layouts are read as docker-archive:PATH, oci:PATH or oci-archive:PATH"
            ))),
            Err(e) => Err(e),
        }
    }

    /// The registry reference, for a registry's image.
    pub fn registry(&self) -> Option<&ImageRef> {
        match self {
            ImageName::Registry(r) => Some(r),
            _ => None,
        }
    }
}

fn looks_like_path(s: &str) -> bool {
    s.starts_with('/') || s.starts_with("./") || s.starts_with("../") || s.ends_with(".tar")
}

impl fmt::Display for ImageName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ImageName::Registry(r) => write!(f, "{r}"),
            ImageName::DockerArchive { path, image } => {
                write!(f, "docker-archive:{}", escape::path(path))?;
                match image {
                    Some(ArchiveImage::Name(r)) => write!(f, ":{r}"),
                    Some(ArchiveImage::Index(i)) => write!(f, ":@{i}"),
                    None => Ok(()),
                }
            }
            ImageName::Oci {
                path,
                image,
                archive,
            } => {
                let transport = if *archive { "oci-archive" } else { "oci" };
                write!(f, "{transport}:{}", escape::path(path))?;
                match image {
                    Some(i) => write!(f, ":{}", escape::bytes(i.as_bytes())),
                    None => Ok(()),
                }
            }
            ImageName::DockerDaemon(name) => {
                write!(f, "docker-daemon:{}", escape::bytes(name.as_bytes()))
            }
            ImageName::Path(path) => write!(f, "{}", escape::path(path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_are_read_as_the_containers_tools_read_them() {
        assert_eq!(
            ImageName::parse("docker://busybox").unwrap(),
            ImageName::Registry("busybox".parse().unwrap())
        );
        assert_eq!(
            ImageName::parse("busybox:1.36").unwrap(),
            ImageName::Registry("busybox:1.36".parse().unwrap())
        );
        assert_eq!(
            ImageName::parse("localhost:5000/app").unwrap(),
            ImageName::Registry("localhost:5000/app".parse().unwrap())
        );
        assert_eq!(
            ImageName::parse("docker-archive:in.tar:busybox:1.36").unwrap(),
            ImageName::DockerArchive {
                path: "in.tar".into(),
                image: Some(ArchiveImage::Name("busybox:1.36".parse().unwrap())),
            }
        );
        assert_eq!(
            ImageName::parse("docker-archive:/x/in.tar:@1").unwrap(),
            ImageName::DockerArchive {
                path: "/x/in.tar".into(),
                image: Some(ArchiveImage::Index(1)),
            }
        );
        assert_eq!(
            ImageName::parse("oci:./layout:1.36").unwrap(),
            ImageName::Oci {
                path: "./layout".into(),
                image: Some("1.36".into()),
                archive: false,
            }
        );
        assert_eq!(
            ImageName::parse("oci-archive:app.tar").unwrap(),
            ImageName::Oci {
                path: "app.tar".into(),
                image: None,
                archive: true,
            }
        );
        for bad in [
            "oci:",
            "docker-archive:x:@one",
            "containers-storage:x",
            "dir:/x",
        ] {
            let e = ImageName::parse(bad).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Usage, "{bad}: {e}");
        }
        assert_eq!(
            ImageName::parse("docker-daemon:app:ci").unwrap(),
            ImageName::DockerDaemon("app:ci".into())
        );
        assert_eq!(
            ImageName::parse("docker-daemon:docker.io/library/busybox").unwrap(),
            ImageName::DockerDaemon("busybox:latest".into())
        );
    }

    #[test]
    fn bare_paths_are_paths_only_when_written_as_paths_and_present() {
        let dir = tempfile::tempdir().unwrap();
        let tar = dir.path().join("img.tar");
        std::fs::write(&tar, b"").unwrap();
        let s = tar.to_str().unwrap();
        assert_eq!(ImageName::parse(s).unwrap(), ImageName::Path(tar.clone()));
        let missing = dir.path().join("gone.tar");
        let e = ImageName::parse(missing.to_str().unwrap()).unwrap_err();
        assert!(e.to_string().contains("docker-archive:PATH"), "{e}");
        // Not written as a path: a repository, as Docker reads it.
        assert!(matches!(
            ImageName::parse("library/busybox").unwrap(),
            ImageName::Registry(_)
        ));
    }
}
