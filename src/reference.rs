//! Image references: parsing and normalisation with Docker's rules.
//!
//! `busybox` means `registry-1.docker.io/library/busybox:latest`, the first
//! path component is a registry only when it looks like a host (contains
//! `.` or `:`, or is `localhost`), and repositories are lowercase. The
//! canonical form names the host we actually talk to, so Docker Hub is
//! `registry-1.docker.io` rather than `docker.io`.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use crate::{Error, Result};

/// The host that serves Docker Hub's registry API.
pub const DOCKER_HUB_REGISTRY: &str = "registry-1.docker.io";

/// Names users (and Docker's own output) give Docker Hub.
const DOCKER_HUB_ALIASES: &[&str] = &["docker.io", "index.docker.io", DOCKER_HUB_REGISTRY];

/// Namespace of Docker Hub's official images (`busybox` is `library/busybox`).
const OFFICIAL_NAMESPACE: &str = "library/";

/// Tag used when a reference names neither a tag nor a digest.
const DEFAULT_TAG: &str = "latest";

/// Docker's limit on the length of a full name (registry and repository).
const MAX_NAME_LEN: usize = 255;

/// Docker's limit on the length of a tag.
const MAX_TAG_LEN: usize = 128;

/// A normalised image reference: which registry, which repository, and
/// which tag and/or digest in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageRef {
    /// Host (and port) of the registry, e.g. `registry-1.docker.io`, `localhost:5000`.
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag, e.g. `latest`. Absent when only a digest was given.
    pub tag: Option<String>,
    /// Manifest digest, e.g. `sha256:…`.
    pub digest: Option<String>,
}

impl FromStr for ImageRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidReference {
            reference: s.to_string(),
            reason,
        };
        if s.is_empty() {
            return Err(invalid("the reference is empty".into()));
        }
        let (rest, digest) = match s.split_once('@') {
            Some((rest, digest)) => (rest, Some(digest)),
            None => (s, None),
        };
        let (name, tag) = split_tag(rest);
        if name.ends_with('/') {
            return Err(invalid("the name ends with '/'".into()));
        }
        let (registry, path) = split_registry(name);
        build(registry, path, tag, digest).map_err(invalid)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

impl ImageRef {
    /// Builds a reference from the legacy command-line form: an optional
    /// registry, an image name, and a tag — which may instead be a digest
    /// (`sha256:…`). With no registry the image name is read as Docker
    /// would (`busybox`, `quay.io/x/y`).
    pub fn from_parts(registry: Option<&str>, image: &str, tag: &str) -> Result<ImageRef> {
        let shown = match registry {
            Some(registry) => format!("{registry}/{image} {tag}"),
            None => format!("{image} {tag}"),
        };
        let invalid = |reason: String| Error::InvalidReference {
            reference: shown.clone(),
            reason,
        };
        if split_tag(image).1.is_some() || image.contains('@') {
            return Err(invalid(
                "the image name must not carry a tag or digest; give it separately".into(),
            ));
        }
        let (registry, path) = match registry {
            Some(registry) => (Some(registry), image),
            None => split_registry(image),
        };
        let (tag, digest) = if tag.contains(':') {
            (None, Some(tag))
        } else {
            (Some(tag), None)
        };
        build(registry, path, tag, digest).map_err(invalid)
    }

    /// Docker's familiar name with tag, as written in `RepoTags`:
    /// `busybox:latest` for official Hub images, `user/app:tag` for other
    /// Hub images and `host:port/repo:tag` elsewhere. `None` without a tag.
    pub fn familiar_tagged(&self) -> Option<String> {
        let tag = self.tag.as_ref()?;
        Some(format!("{}:{tag}", self.familiar_repository()))
    }

    /// The repository as Docker displays it (see [`ImageRef::familiar_tagged`]).
    pub fn familiar_repository(&self) -> String {
        if !self.is_docker_hub() {
            return format!("{}/{}", self.registry, self.repository);
        }
        match self.repository.strip_prefix(OFFICIAL_NAMESPACE) {
            Some(short) if !short.contains('/') => short.to_string(),
            _ => self.repository.clone(),
        }
    }

    /// What to request the manifest by: the digest when there is one
    /// (it pins the content), else the tag.
    pub fn reference_string(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or(DEFAULT_TAG)
    }

    /// Whether the registry is on this machine (`localhost`, 127.0.0.0/8 or
    /// `::1`, any port). Docker talks plain HTTP to those by default.
    pub fn is_loopback_registry(&self) -> bool {
        let host = registry_host(&self.registry);
        if host.eq_ignore_ascii_case("localhost") {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(IpAddr::V4(v4)) => v4.is_loopback(),
            Ok(IpAddr::V6(v6)) => {
                v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
            Err(_) => false,
        }
    }

    /// The same reference for `oci-client`. The registry is passed as is:
    /// `oci-client` only rewrites `docker.io`, so `registry-1.docker.io`
    /// reaches Docker Hub's API host directly.
    pub fn to_oci(&self) -> oci_client::Reference {
        let (registry, repository) = (self.registry.clone(), self.repository.clone());
        match (&self.tag, &self.digest) {
            (Some(tag), Some(digest)) => oci_client::Reference::with_tag_and_digest(
                registry,
                repository,
                tag.clone(),
                digest.clone(),
            ),
            (None, Some(digest)) => {
                oci_client::Reference::with_digest(registry, repository, digest.clone())
            }
            (tag, None) => oci_client::Reference::with_tag(
                registry,
                repository,
                tag.clone().unwrap_or_else(|| DEFAULT_TAG.to_string()),
            ),
        }
    }

    /// Whether this reference points at Docker Hub.
    fn is_docker_hub(&self) -> bool {
        DOCKER_HUB_ALIASES.contains(&self.registry.as_str())
    }
}

/// Splits `name[:tag]`: a tag is what follows a colon after the last `/`
/// (earlier colons belong to a registry's port).
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let last_component = s.rfind('/').map_or(0, |i| i + 1);
    match s[last_component..].find(':') {
        Some(i) => (&s[..last_component + i], Some(&s[last_component + i + 1..])),
        None => (s, None),
    }
}

/// Splits off a leading registry with Docker's rule: the first component is
/// a registry only if it contains `.` or `:` or is `localhost`.
fn split_registry(name: &str) -> (Option<&str>, &str) {
    match name.split_once('/') {
        Some((first, rest)) if first.contains(['.', ':']) || first == "localhost" => {
            (Some(first), rest)
        }
        _ => (None, name),
    }
}

/// Validates and normalises the parts of a reference; the error is the
/// reason alone (the caller adds the reference).
fn build(
    registry: Option<&str>,
    path: &str,
    tag: Option<&str>,
    digest: Option<&str>,
) -> std::result::Result<ImageRef, String> {
    let registry = match registry {
        Some(registry) => {
            check_registry(registry)?;
            registry
        }
        None => DOCKER_HUB_REGISTRY,
    };
    check_repository(path)?;
    let is_hub = DOCKER_HUB_ALIASES.contains(&registry);
    let repository = if is_hub && !path.contains('/') {
        format!("{OFFICIAL_NAMESPACE}{path}")
    } else {
        path.to_string()
    };
    // Docker measures the name as it would print it, with `docker.io`.
    let shown_registry = if is_hub { "docker.io" } else { registry };
    let name_len = shown_registry.len() + 1 + repository.len();
    if name_len > MAX_NAME_LEN {
        return Err(format!(
            "the name is {name_len} characters long; at most {MAX_NAME_LEN} are allowed"
        ));
    }
    if let Some(tag) = tag {
        check_tag(tag)?;
    }
    if let Some(digest) = digest {
        check_digest(digest)?;
    }
    let tag = match (tag, digest) {
        (None, None) => Some(DEFAULT_TAG.to_string()),
        (tag, _) => tag.map(str::to_string),
    };
    Ok(ImageRef {
        registry: if is_hub {
            DOCKER_HUB_REGISTRY.to_string()
        } else {
            registry.to_string()
        },
        repository,
        tag,
        digest: digest.map(str::to_string),
    })
}

/// A registry is `host[:port]`, where host is a DNS name or a bracketed
/// IPv6 address.
fn check_registry(registry: &str) -> std::result::Result<(), String> {
    let bad = |why: &str| Err(format!("registry {registry:?}: {why}"));
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return bad("missing ']' after the IPv6 address");
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return bad("not a valid IPv6 address");
        }
        match after {
            "" => (addr, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (addr, Some(port)),
                None => return bad("unexpected text after the IPv6 address"),
            },
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    if !registry.starts_with('[') && !is_dns_name(host) {
        return bad("not a valid host name");
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("the port must be a number");
    }
    Ok(())
}

/// DNS-style name: dot-separated components of letters, digits and inner
/// hyphens.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.split('.').all(|c| {
            !c.is_empty()
                && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !c.starts_with('-')
                && !c.ends_with('-')
        })
}

/// Repository: `/`-separated lowercase components, each alphanumeric runs
/// joined by `.`, `_`, `__` or any number of `-`.
fn check_repository(path: &str) -> std::result::Result<(), String> {
    if path.is_empty() {
        return Err("the repository name is empty".into());
    }
    if path.ends_with('/') {
        return Err("the repository name ends with '/'".into());
    }
    if path.starts_with('/') || path.contains("//") {
        return Err("the repository name has an empty path component".into());
    }
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(format!("repository name {path:?} must be lowercase"));
    }
    match path.split('/').find(|c| !is_path_component(c)) {
        Some(component) => Err(format!(
            "repository component {component:?} may only hold lowercase letters and digits \
             separated by '.', '_', '__' or '-'"
        )),
        None => Ok(()),
    }
}

/// One repository component: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn is_path_component(c: &str) -> bool {
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let bytes = c.as_bytes();
    let mut i = 0;
    loop {
        // A run of alphanumerics.
        let start = i;
        while i < bytes.len() && alnum(bytes[i]) {
            i += 1;
        }
        if i == start {
            return false;
        }
        if i == bytes.len() {
            return true;
        }
        // A separator, then another run must follow.
        let sep_start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &c[sep_start..i];
        let ok = matches!(sep, "." | "_" | "__") || sep.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
}

/// Tag: a word character then up to 127 word characters, `.` or `-`.
fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    match tag.as_bytes() {
        [] => Err("the tag after ':' is empty".into()),
        _ if tag.len() > MAX_TAG_LEN => Err(format!(
            "the tag is {} characters long; at most {MAX_TAG_LEN} are allowed",
            tag.len()
        )),
        [first, rest @ ..]
            if word(*first) && rest.iter().all(|&b| word(b) || b == b'.' || b == b'-') =>
        {
            Ok(())
        }
        _ => Err(format!(
            "tag {tag:?} may only hold letters, digits, '_', '.' and '-', and must not start \
             with '.' or '-'"
        )),
    }
}

/// Digest: `sha256:` with 64 or `sha512:` with 128 lowercase hex digits.
fn check_digest(digest: &str) -> std::result::Result<(), String> {
    if digest.is_empty() {
        return Err("the digest after '@' is empty".into());
    }
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return Err(format!("digest {digest:?} lacks an 'algorithm:' prefix"));
    };
    let want = match algorithm {
        "sha256" => 64,
        "sha512" => 128,
        _ => {
            return Err(format!(
                "digest algorithm {algorithm:?} is not supported (sha256 or sha512)"
            ));
        }
    };
    let is_hex = hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if hex.len() != want || !is_hex {
        return Err(format!(
            "a {algorithm} digest needs {want} lowercase hex digits, got {hex:?}"
        ));
    }
    Ok(())
}

/// The host of `host[:port]` or `[v6][:port]`, without brackets or port.
fn registry_host(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split_once(']').map_or(rest, |(addr, _)| addr);
    }
    registry.split_once(':').map_or(registry, |(host, _)| host)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D256: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn d512() -> String {
        format!("sha512:{}", "ab".repeat(64))
    }

    /// (input, registry, repository, tag, digest)
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Option<&'a str>);

    #[test]
    fn parses_and_normalises() {
        let d512 = d512();
        let with_digest = format!("busybox@{D256}");
        let tag_and_digest = format!("quay.io/org/app:v1.2@{D256}");
        let sha512 = format!("localhost:5000/x@{d512}");
        let cases: Vec<Case> = vec![
            (
                "busybox",
                DOCKER_HUB_REGISTRY,
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "busybox:1.36",
                DOCKER_HUB_REGISTRY,
                "library/busybox",
                Some("1.36"),
                None,
            ),
            (
                "library/busybox",
                DOCKER_HUB_REGISTRY,
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "docker.io/busybox",
                DOCKER_HUB_REGISTRY,
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "index.docker.io/busybox:x",
                DOCKER_HUB_REGISTRY,
                "library/busybox",
                Some("x"),
                None,
            ),
            (
                "registry-1.docker.io/busybox",
                DOCKER_HUB_REGISTRY,
                "library/busybox",
                Some("latest"),
                None,
            ),
            (
                "docker.io/user/app",
                DOCKER_HUB_REGISTRY,
                "user/app",
                Some("latest"),
                None,
            ),
            (
                "user/app:Tag_1",
                DOCKER_HUB_REGISTRY,
                "user/app",
                Some("Tag_1"),
                None,
            ),
            (
                "a/b/c/d",
                DOCKER_HUB_REGISTRY,
                "a/b/c/d",
                Some("latest"),
                None,
            ),
            (
                "quay.io/org/app",
                "quay.io",
                "org/app",
                Some("latest"),
                None,
            ),
            ("ghcr.io/app", "ghcr.io", "app", Some("latest"), None),
            ("localhost/app", "localhost", "app", Some("latest"), None),
            (
                "localhost:5000/app:1",
                "localhost:5000",
                "app",
                Some("1"),
                None,
            ),
            // No slash: "localhost:5000" is image "localhost" with tag "5000".
            (
                "localhost:5000",
                DOCKER_HUB_REGISTRY,
                "library/localhost",
                Some("5000"),
                None,
            ),
            (
                "localhost",
                DOCKER_HUB_REGISTRY,
                "library/localhost",
                Some("latest"),
                None,
            ),
            (
                "test.com:tag",
                DOCKER_HUB_REGISTRY,
                "library/test.com",
                Some("tag"),
                None,
            ),
            ("host:5000/a/b:c", "host:5000", "a/b", Some("c"), None),
            (
                "127.0.0.1:5000/x",
                "127.0.0.1:5000",
                "x",
                Some("latest"),
                None,
            ),
            ("[::1]:5000/x:y", "[::1]:5000", "x", Some("y"), None),
            ("[fe80::1]/x", "[fe80::1]", "x", Some("latest"), None),
            (
                "My-Registry.example.com/x",
                "My-Registry.example.com",
                "x",
                Some("latest"),
                None,
            ),
            (
                &with_digest,
                DOCKER_HUB_REGISTRY,
                "library/busybox",
                None,
                Some(D256),
            ),
            (
                &tag_and_digest,
                "quay.io",
                "org/app",
                Some("v1.2"),
                Some(D256),
            ),
            (&sha512, "localhost:5000", "x", None, Some(&d512)),
            (
                "a_b/c__d/e-f/g--h/i.j",
                DOCKER_HUB_REGISTRY,
                "a_b/c__d/e-f/g--h/i.j",
                Some("latest"),
                None,
            ),
            (
                "x:_under",
                DOCKER_HUB_REGISTRY,
                "library/x",
                Some("_under"),
                None,
            ),
        ];
        for (input, registry, repository, tag, digest) in cases {
            let r: ImageRef = input.parse().unwrap_or_else(|e| panic!("{input}: {e}"));
            assert_eq!(r.registry, registry, "{input}");
            assert_eq!(r.repository, repository, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert_eq!(r.digest.as_deref(), digest, "{input}");
        }
    }

    /// (input, fragment of the reason)
    #[test]
    fn rejects_malformed_references() {
        let long_tag = format!("x:{}", "t".repeat(129));
        let long_name = format!("quay.io/{}", "a".repeat(250));
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("busybox/".into(), "ends with '/'"),
            ("quay.io/".into(), "ends with '/'"),
            ("a//b".into(), "empty path component"),
            ("/busybox".into(), "empty path component"),
            ("busybox:".into(), "tag after ':' is empty"),
            ("busybox@".into(), "digest after '@' is empty"),
            ("BusyBox".into(), "must be lowercase"),
            ("quay.io/Org/app".into(), "must be lowercase"),
            ("busybox:.x".into(), "must not start"),
            ("busybox:-x".into(), "must not start"),
            ("busybox:a+b".into(), "may only hold"),
            (long_tag, "at most 128"),
            (long_name, "at most 255"),
            ("busybox@sha256:abc".into(), "64 lowercase hex"),
            (
                format!(
                    "busybox@{}",
                    D256.to_uppercase().replace("SHA256", "sha256")
                ),
                "lowercase hex",
            ),
            (
                "busybox@md5:0123456789abcdef0123456789abcdef".into(),
                "not supported",
            ),
            ("busybox@0123".into(), "algorithm:"),
            (
                format!("busybox@sha512:{}", "a".repeat(64)),
                "128 lowercase hex",
            ),
            ("a..b".into(), "may only hold lowercase"),
            ("a_-b".into(), "may only hold lowercase"),
            ("-a".into(), "may only hold lowercase"),
            ("a___b".into(), "may only hold lowercase"),
            ("host:port/x".into(), "port must be a number"),
            ("host:/x".into(), "port must be a number"),
            ("-bad.host/x".into(), "not a valid host name"),
            ("[::1/x".into(), "missing ']'"),
            ("[nothex]:5000/x".into(), "not a valid IPv6"),
            ("a b".into(), "may only hold lowercase"),
        ];
        for (input, fragment) in cases {
            match input.parse::<ImageRef>() {
                Ok(r) => panic!("{input:?} parsed as {r}"),
                Err(Error::InvalidReference { reference, reason }) => {
                    assert_eq!(reference, input);
                    assert!(reason.contains(fragment), "{input:?}: {reason}");
                }
                Err(e) => panic!("{input:?}: wrong error {e}"),
            }
        }
    }

    #[test]
    fn display_is_canonical_and_round_trips() {
        for input in [
            "busybox",
            "user/app:1",
            "localhost:5000/a/b:c",
            "[::1]:5000/x:y",
            &format!("quay.io/org/app:v1@{D256}"),
            &format!("busybox@{D256}"),
        ] {
            let r: ImageRef = input.parse().unwrap();
            let again: ImageRef = r.to_string().parse().unwrap();
            assert_eq!(r, again, "{input}");
        }
        let r: ImageRef = "busybox".parse().unwrap();
        assert_eq!(r.to_string(), "registry-1.docker.io/library/busybox:latest");
    }

    #[test]
    fn familiar_names() {
        let cases = [
            ("busybox", "busybox", Some("busybox:latest")),
            ("docker.io/library/busybox:1", "busybox", Some("busybox:1")),
            ("user/app:t", "user/app", Some("user/app:t")),
            // Only a single component under library/ is shortened.
            ("library/a/b", "library/a/b", Some("library/a/b:latest")),
            (
                "localhost:5000/x:y",
                "localhost:5000/x",
                Some("localhost:5000/x:y"),
            ),
            (
                "quay.io/org/app",
                "quay.io/org/app",
                Some("quay.io/org/app:latest"),
            ),
            (&*format!("busybox@{D256}"), "busybox", None),
        ];
        for (input, repo, tagged) in cases {
            let r: ImageRef = input.parse().unwrap();
            assert_eq!(r.familiar_repository(), repo, "{input}");
            assert_eq!(r.familiar_tagged().as_deref(), tagged, "{input}");
        }
    }

    #[test]
    fn reference_string_prefers_digest() {
        let r: ImageRef = format!("busybox:1@{D256}").parse().unwrap();
        assert_eq!(r.reference_string(), D256);
        let r: ImageRef = "busybox:1".parse().unwrap();
        assert_eq!(r.reference_string(), "1");
    }

    #[test]
    fn loopback_registries() {
        let cases = [
            ("localhost/x", true),
            ("localhost:5000/x", true),
            ("LOCALHOST:1/x", true), // host names are case-insensitive
            ("127.0.0.1:5000/x", true),
            ("127.8.9.10/x", true),
            ("[::1]:5000/x", true),
            ("[::1]/x", true),
            ("[::ffff:127.0.0.1]:5000/x", true),
            ("128.0.0.1/x", false),
            ("[::2]/x", false),
            ("localhost.example.com/x", false),
            ("busybox", false),
            ("quay.io/x", false),
        ];
        for (input, want) in cases {
            let r: ImageRef = input.parse().unwrap();
            assert_eq!(r.is_loopback_registry(), want, "{input}");
        }
    }

    #[test]
    fn to_oci_keeps_the_registry_we_mean() {
        let r: ImageRef = "busybox".parse().unwrap();
        let o = r.to_oci();
        assert_eq!(o.resolve_registry(), DOCKER_HUB_REGISTRY);
        assert_eq!(o.repository(), "library/busybox");
        assert_eq!(o.tag(), Some("latest"));
        assert_eq!(o.digest(), None);

        let r: ImageRef = format!("localhost:5000/a/b:t@{D256}").parse().unwrap();
        let o = r.to_oci();
        assert_eq!(o.resolve_registry(), "localhost:5000");
        assert_eq!(o.repository(), "a/b");
        assert_eq!(o.tag(), Some("t"));
        assert_eq!(o.digest(), Some(D256));

        let r: ImageRef = format!("quay.io/x@{D256}").parse().unwrap();
        let o = r.to_oci();
        assert_eq!(o.tag(), None);
        assert_eq!(o.digest(), Some(D256));
    }

    #[test]
    fn from_parts_legacy_form() {
        let r = ImageRef::from_parts(Some("registry-1.docker.io"), "library/busybox", "latest")
            .unwrap();
        assert_eq!(r, "busybox".parse().unwrap());
        let r = ImageRef::from_parts(Some("docker.io"), "busybox", "1").unwrap();
        assert_eq!(r, "busybox:1".parse().unwrap());
        // An explicit registry need not look like a host.
        let r = ImageRef::from_parts(Some("myregistry"), "app", "v1").unwrap();
        assert_eq!(r.registry, "myregistry");
        assert_eq!(r.repository, "app");
        let r = ImageRef::from_parts(None, "quay.io/org/app", D256).unwrap();
        assert_eq!(r.registry, "quay.io");
        assert_eq!(r.tag, None);
        assert_eq!(r.digest.as_deref(), Some(D256));
        let r = ImageRef::from_parts(Some("localhost:5000"), "x", "y").unwrap();
        assert_eq!(r, "localhost:5000/x:y".parse().unwrap());

        for (registry, image, tag) in [
            (None, "busybox:1", "2"),
            (Some("quay.io"), "x@sha256:00", "1"),
            (None, "busybox", ""),
            (None, "busybox", "sha256:abc"),
            (Some("bad host"), "x", "1"),
            (Some("quay.io"), "UPPER", "1"),
        ] {
            let err = ImageRef::from_parts(registry, image, tag).unwrap_err();
            assert!(
                matches!(err, Error::InvalidReference { .. }),
                "{image}: {err}"
            );
        }
    }
}
