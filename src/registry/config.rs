//! The containers tools' `registries.conf` (version 2, see
//! containers-registries.conf(5)): which registries are blocked or
//! insecure, where a name is really pulled from (`location`), and which
//! mirrors to try first.
//!
//! Files are read as the containers tools read them: the main file is
//! `~/.config/containers/registries.conf` if it exists, else
//! `/etc/containers/registries.conf`; then the drop-ins `*.conf` of
//! `/etc/containers/registries.conf.d/` and
//! `~/.config/containers/registries.conf.d/`, in file-name order (a user
//! drop-in replaces the system one of the same name). A `[[registry]]` of a
//! later file replaces an earlier one with the same prefix. Only
//! `[[registry]]` tables are used: `unqualified-search-registries`,
//! `short-name-mode`, `[aliases]` and `credential-helpers` are accepted and
//! ignored (occystrap has no short names), other keys are warned about.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::reference::{DOCKER_HUB_REGISTRY, ImageRef};
use crate::{Error, Result};

/// The system-wide main file.
pub const SYSTEM_FILE: &str = "/etc/containers/registries.conf";
/// The system-wide drop-in directory.
pub const SYSTEM_DIR: &str = "/etc/containers/registries.conf.d";

/// The combined `[[registry]]` entries of one or more files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistriesConf {
    /// In file order (a later file's entry replaced an earlier one in place).
    pub registries: Vec<RegistryEntry>,
}

/// One `[[registry]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryEntry {
    /// `host[:port][/namespace...]`, or `*.domain` (matches its subdomains).
    pub prefix: String,
    /// Where names under `prefix` are pulled from (`prefix` itself when absent).
    pub location: String,
    /// Plain HTTP (or TLS without verification) to `location`.
    pub insecure: bool,
    /// Refuse to pull anything under `prefix`.
    pub blocked: bool,
    /// Tried in order before `location`.
    pub mirrors: Vec<Mirror>,
    /// The file and line it was read from, for messages.
    pub source: String,
}

/// One `[[registry.mirror]]` table.
#[derive(Debug, Clone, PartialEq)]
pub struct Mirror {
    /// `host[:port][/namespace...]`: the name's part after the prefix is appended.
    pub location: String,
    /// Plain HTTP (or TLS without verification) to this mirror.
    pub insecure: bool,
    /// Which pulls may use it.
    pub pull_from_mirror: PullFromMirror,
}

/// `pull-from-mirror`: which pulls a mirror serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullFromMirror {
    /// Every pull (the default).
    #[default]
    All,
    /// Only pulls by digest (`name@sha256:...`): a tag on a mirror may be stale.
    DigestOnly,
    /// Only pulls by tag.
    TagOnly,
}

/// Where to pull one image from, in the order to try.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// The image's name at this endpoint (same tag and digest).
    pub image: ImageRef,
    /// Plain HTTP (or TLS without verification).
    pub insecure: bool,
    /// A mirror (its failure falls back to the next endpoint), not the
    /// registry itself.
    pub mirror: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawFile {
    #[serde(default)]
    registry: Vec<toml::Spanned<RawRegistry>>,
    /// Version 1's `[registries.search]`, `[registries.insecure]`, `[registries.block]`.
    registries: Option<toml::Value>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawRegistry {
    prefix: Option<String>,
    location: Option<String>,
    insecure: Option<bool>,
    blocked: Option<bool>,
    mirror_by_digest_only: Option<bool>,
    #[serde(default)]
    mirror: Vec<toml::Spanned<RawMirror>>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawMirror {
    location: Option<String>,
    insecure: Option<bool>,
    pull_from_mirror: Option<String>,
    #[serde(flatten)]
    other: BTreeMap<String, toml::Value>,
}

/// Top-level keys of the containers tools that occystrap has no use for.
const IGNORED_KEYS: &[&str] = &[
    "unqualified-search-registries",
    "short-name-mode",
    "aliases",
    "credential-helpers",
];

impl RegistriesConf {
    /// The files the containers tools read, in order, for a user whose home
    /// is `home`: see the module documentation. Missing ones are left out.
    pub fn default_files(home: Option<&Path>) -> Vec<PathBuf> {
        let user_file = home.map(|h| h.join(".config/containers/registries.conf"));
        let mut files = Vec::new();
        match user_file {
            Some(f) if f.exists() => files.push(f),
            _ if Path::new(SYSTEM_FILE).exists() => files.push(PathBuf::from(SYSTEM_FILE)),
            _ => {}
        }
        let mut drop_ins: BTreeMap<std::ffi::OsString, PathBuf> = BTreeMap::new();
        let dirs = [
            Some(PathBuf::from(SYSTEM_DIR)),
            home.map(|h| h.join(".config/containers/registries.conf.d")),
        ];
        for dir in dirs.into_iter().flatten() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let path = entry.path();
                if path.extension().is_some_and(|e| e == "conf") && path.is_file() {
                    drop_ins.insert(entry.file_name(), path);
                }
            }
        }
        files.extend(drop_ins.into_values());
        files
    }

    /// What the containers tools would use for the user whose home is
    /// `home` (none: only the system files).
    pub fn load_default(home: Option<&Path>) -> Result<RegistriesConf> {
        RegistriesConf::load(&Self::default_files(home))
    }

    /// Read `files` in order; a later entry replaces an earlier one with
    /// the same prefix.
    pub fn load(files: &[PathBuf]) -> Result<RegistriesConf> {
        let mut conf = RegistriesConf::default();
        for path in files {
            let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
            conf.merge(RegistriesConf::parse(&text, &path.display().to_string())?);
        }
        Ok(conf)
    }

    /// Add `later`'s entries, replacing ours with the same prefix.
    pub fn merge(&mut self, later: RegistriesConf) {
        for entry in later.registries {
            match self
                .registries
                .iter_mut()
                .find(|e| e.prefix == entry.prefix)
            {
                Some(old) => *old = entry,
                None => self.registries.push(entry),
            }
        }
    }

    /// Parse one file's text; `name` (its path) is used in messages.
    pub fn parse(text: &str, name: &str) -> Result<RegistriesConf> {
        let bad = |line: Option<usize>, message: String| {
            let at = line.map_or(String::new(), |l| format!(":{l}"));
            Error::Usage(format!("{name}{at}: {message}"))
        };
        let line_of = |offset: usize| {
            text.as_bytes()[..offset.min(text.len())]
                .iter()
                .filter(|&&b| b == b'\n')
                .count()
                + 1
        };
        let raw: RawFile = toml::from_str(text).map_err(|e| bad(None, e.to_string()))?;
        if raw.registries.is_some() {
            tracing::warn!(
                "{name}: the version 1 tables [registries.*] are not supported and are ignored; use [[registry]]"
            );
        }
        for key in raw.other.keys() {
            if !IGNORED_KEYS.contains(&key.as_str()) {
                tracing::warn!("{name}: unknown key {key:?} ignored");
            }
        }
        let mut conf = RegistriesConf::default();
        for spanned in raw.registry {
            let line = line_of(spanned.span().start);
            let r = spanned.into_inner();
            let at = |msg: String| bad(Some(line), format!("[[registry]]: {msg}"));
            for key in r.other.keys() {
                tracing::warn!("{name}:{line}: [[registry]]: unknown key {key:?} ignored");
            }
            let prefix = match (&r.prefix, &r.location) {
                (Some(p), _) => p.trim_end_matches('/').to_string(),
                (None, Some(l)) => l.trim_end_matches('/').to_string(),
                (None, None) => return Err(at("needs a prefix or a location".into())),
            };
            validate_name(&prefix, true).map_err(|m| at(format!("prefix {prefix:?}: {m}")))?;
            let location = match &r.location {
                Some(l) if prefix.starts_with("*.") => {
                    return Err(at(format!(
                        "location {l:?} cannot be used with the wildcard prefix {prefix:?}"
                    )));
                }
                Some(l) => l.trim_end_matches('/').to_string(),
                None => prefix.clone(),
            };
            if !prefix.starts_with("*.") {
                validate_name(&location, false)
                    .map_err(|m| at(format!("location {location:?}: {m}")))?;
            }
            let digest_only = r.mirror_by_digest_only.unwrap_or(false);
            let mut mirrors = Vec::new();
            for spanned in r.mirror {
                let line = line_of(spanned.span().start);
                let m = spanned.into_inner();
                let at = |msg: String| bad(Some(line), format!("[[registry.mirror]]: {msg}"));
                for key in m.other.keys() {
                    tracing::warn!(
                        "{name}:{line}: [[registry.mirror]]: unknown key {key:?} ignored"
                    );
                }
                let location = m
                    .location
                    .ok_or_else(|| at("needs a location".into()))?
                    .trim_end_matches('/')
                    .to_string();
                validate_name(&location, false)
                    .map_err(|e| at(format!("location {location:?}: {e}")))?;
                let pull_from_mirror = match m.pull_from_mirror.as_deref() {
                    None if digest_only => PullFromMirror::DigestOnly,
                    None | Some("all") => PullFromMirror::All,
                    Some("digest-only") => PullFromMirror::DigestOnly,
                    Some("tag-only") => PullFromMirror::TagOnly,
                    Some(other) => {
                        return Err(at(format!(
                            "pull-from-mirror = {other:?}: expected \"all\", \"digest-only\" or \"tag-only\""
                        )));
                    }
                };
                if digest_only && pull_from_mirror != PullFromMirror::DigestOnly {
                    return Err(at(
                        "pull-from-mirror cannot be used with mirror-by-digest-only = true".into(),
                    ));
                }
                mirrors.push(Mirror {
                    location,
                    insecure: m.insecure.unwrap_or(false),
                    pull_from_mirror,
                });
            }
            if conf.registries.iter().any(|e| e.prefix == prefix) {
                return Err(at(format!("prefix {prefix:?} is defined more than once")));
            }
            conf.registries.push(RegistryEntry {
                prefix,
                location,
                insecure: r.insecure.unwrap_or(false),
                blocked: r.blocked.unwrap_or(false),
                mirrors,
                source: format!("{name}:{line}"),
            });
        }
        Ok(conf)
    }

    /// The entry for `image`: the longest prefix that matches its name.
    pub fn find(&self, image: &ImageRef) -> Option<&RegistryEntry> {
        let name = canonical_name(image);
        self.registries
            .iter()
            .filter(|e| prefix_matches(&e.prefix, &name))
            .max_by_key(|e| e.prefix.len())
    }

    /// Where to pull `image` from, in the order to try: the mirrors that
    /// serve this kind of pull (by digest or by tag), then the registry
    /// itself (its `location`). A blocked registry is an error.
    pub fn endpoints(&self, image: &ImageRef) -> Result<Vec<Endpoint>> {
        let Some(entry) = self.find(image) else {
            return Ok(vec![Endpoint {
                image: image.clone(),
                insecure: false,
                mirror: false,
            }]);
        };
        if entry.blocked {
            return Err(Error::Blocked {
                reference: image.to_string(),
                prefix: entry.prefix.clone(),
                source_file: entry.source.clone(),
            });
        }
        let name = canonical_name(image);
        // What follows the prefix: for a wildcard, what follows the host.
        let rest = if entry.prefix.starts_with("*.") {
            &name[name.find('/').unwrap_or(name.len())..]
        } else {
            &name[entry.prefix.len()..]
        };
        let by_digest = image.digest.is_some();
        let at = |location: &str| -> Result<ImageRef> {
            let rewritten = format!("{location}{rest}");
            endpoint_image(&rewritten, image).ok_or_else(|| {
                Error::Usage(format!(
                    "{}: [[registry]] prefix {:?}: {} rewrites to {rewritten:?}, which is not host/repository",
                    entry.source, entry.prefix, name
                ))
            })
        };
        let mut endpoints = Vec::new();
        for mirror in &entry.mirrors {
            let used = match mirror.pull_from_mirror {
                PullFromMirror::All => true,
                PullFromMirror::DigestOnly => by_digest,
                PullFromMirror::TagOnly => !by_digest,
            };
            if used {
                endpoints.push(Endpoint {
                    image: at(&mirror.location)?,
                    insecure: mirror.insecure,
                    mirror: true,
                });
            }
        }
        let upstream = if entry.prefix.starts_with("*.") {
            image.clone()
        } else {
            at(&entry.location)?
        };
        endpoints.push(Endpoint {
            image: upstream,
            insecure: entry.insecure,
            mirror: false,
        });
        Ok(endpoints)
    }
}

/// The name registries.conf prefixes are matched against:
/// `docker.io/library/busybox`, `127.0.0.1:5000/app`.
pub fn canonical_name(image: &ImageRef) -> String {
    let registry = if is_docker_hub(&image.registry) {
        "docker.io"
    } else {
        image.registry.as_str()
    };
    format!("{registry}/{}", image.repository)
}

fn is_docker_hub(host: &str) -> bool {
    ["docker.io", "index.docker.io", DOCKER_HUB_REGISTRY]
        .iter()
        .any(|h| h.eq_ignore_ascii_case(host))
}

/// `prefix` covers `name` at a path-component boundary; `*.example.com`
/// covers the hosts under example.com.
fn prefix_matches(prefix: &str, name: &str) -> bool {
    if let Some(domain) = prefix.strip_prefix('*') {
        let host = name.split('/').next().unwrap_or_default();
        return host.len() > domain.len() && host.ends_with(domain);
    }
    name == prefix
        || name
            .strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `host[:port][/path]` (or `*.domain` for a prefix): the shape, not the DNS.
fn validate_name(name: &str, wildcard_allowed: bool) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.contains("://") {
        return Err("must not have a scheme (write host[:port][/namespace])".into());
    }
    if let Some(domain) = name.strip_prefix("*.") {
        if !wildcard_allowed {
            return Err("a wildcard is only allowed in a prefix".into());
        }
        if domain.is_empty() || domain.contains(['/', '*']) {
            return Err("a wildcard prefix is *.domain, with no path".into());
        }
        return Ok(());
    }
    if name.contains(['*', '@', ' ']) || name.split('/').any(str::is_empty) {
        return Err("expected host[:port][/namespace]".into());
    }
    Ok(())
}

/// The image named `rewritten` (`host/repository`) with `original`'s tag
/// and digest.
fn endpoint_image(rewritten: &str, original: &ImageRef) -> Option<ImageRef> {
    let (host, repository) = rewritten.split_once('/')?;
    if repository.is_empty() {
        return None;
    }
    let (registry, repository) = if is_docker_hub(host) {
        let repository = if repository.contains('/') {
            repository.to_string()
        } else {
            format!("library/{repository}")
        };
        (DOCKER_HUB_REGISTRY.to_string(), repository)
    } else {
        (host.to_string(), repository.to_string())
    };
    Some(ImageRef {
        registry,
        repository,
        tag: original.tag.clone(),
        digest: original.digest.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn conf(text: &str) -> RegistriesConf {
        RegistriesConf::parse(text, "test.conf").unwrap()
    }

    fn image(s: &str) -> ImageRef {
        s.parse().unwrap()
    }

    fn names(endpoints: &[Endpoint]) -> Vec<String> {
        endpoints
            .iter()
            .map(|e| {
                format!(
                    "{}{}{}",
                    canonical_name(&e.image),
                    if e.insecure { " insecure" } else { "" },
                    if e.mirror { " mirror" } else { "" }
                )
            })
            .collect()
    }

    #[test]
    fn longest_prefix_wins_and_location_rewrites() {
        let c = conf(
            r#"
unqualified-search-registries = ["docker.io"]
[[registry]]
prefix = "example.com"
location = "a.internal"
[[registry]]
prefix = "example.com/team"
location = "b.internal:5000/mirror/team"
insecure = true
[[registry]]
location = "example.com/teamwork"
"#,
        );
        assert_eq!(
            names(&c.endpoints(&image("example.com/team/app:1")).unwrap()),
            ["b.internal:5000/mirror/team/app insecure"]
        );
        assert_eq!(
            names(&c.endpoints(&image("example.com/other/app")).unwrap()),
            ["a.internal/other/app"]
        );
        // "example.com/team" is not a prefix of "example.com/teamwork/x" (components).
        assert_eq!(
            names(&c.endpoints(&image("example.com/teamwork/x")).unwrap()),
            ["example.com/teamwork/x"]
        );
        assert_eq!(
            names(&c.endpoints(&image("elsewhere.org/x")).unwrap()),
            ["elsewhere.org/x"]
        );
        let e = c.endpoints(&image("example.com/team/app:1")).unwrap();
        assert_eq!(e[0].image.tag.as_deref(), Some("1"));
    }

    #[test]
    fn mirrors_in_order_then_upstream_by_kind_of_pull() {
        let c = conf(
            r#"
[[registry]]
prefix = "docker.io"
[[registry.mirror]]
location = "m1.local:5000"
insecure = true
[[registry.mirror]]
location = "m2.local/hub"
pull-from-mirror = "digest-only"
[[registry.mirror]]
location = "m3.local"
pull-from-mirror = "tag-only"
"#,
        );
        assert_eq!(
            names(&c.endpoints(&image("busybox")).unwrap()),
            [
                "m1.local:5000/library/busybox insecure mirror",
                "m3.local/library/busybox mirror",
                "docker.io/library/busybox"
            ]
        );
        assert_eq!(
            names(&c.endpoints(&image(&format!("busybox@{D}"))).unwrap()),
            [
                "m1.local:5000/library/busybox insecure mirror",
                "m2.local/hub/library/busybox mirror",
                "docker.io/library/busybox"
            ]
        );
    }

    #[test]
    fn blocked_and_wildcards() {
        let c = conf(
            r#"
[[registry]]
prefix = "*.bad.example"
blocked = true
[[registry]]
prefix = "ok.bad.example/x"
"#,
        );
        let err = c.endpoints(&image("a.bad.example/y")).unwrap_err();
        assert!(matches!(err, Error::Blocked { .. }), "{err}");
        assert!(err.to_string().contains("test.conf:2"), "{err}");
        // Longer (non-wildcard) prefix wins.
        assert!(c.endpoints(&image("ok.bad.example/x/y")).is_ok());
        assert!(c.endpoints(&image("bad.example/y")).is_ok());
    }

    #[test]
    fn later_files_replace_same_prefix() {
        let mut c = conf("[[registry]]\nprefix = \"a.io\"\nblocked = true\n");
        c.merge(conf("[[registry]]\nprefix = \"a.io\"\ninsecure = true\n"));
        assert_eq!(c.registries.len(), 1);
        assert!(!c.registries[0].blocked);
        assert!(c.registries[0].insecure);
    }

    #[test]
    fn errors_name_file_and_line() {
        let err = |text: &str| {
            RegistriesConf::parse(text, "f.conf")
                .unwrap_err()
                .to_string()
        };
        let e = err("[[registry]]\ninsecure = true\n");
        assert!(
            e.contains("f.conf:1") && e.contains("prefix or a location"),
            "{e}"
        );
        let e = err(
            "\n[[registry]]\nprefix = \"a.io\"\n[[registry.mirror]]\nlocation = \"m\"\npull-from-mirror = \"sometimes\"\n",
        );
        assert!(e.contains("f.conf:4") && e.contains("sometimes"), "{e}");
        let e = err("[[registry]]\nprefix = \"https://a.io\"\n");
        assert!(e.contains("scheme"), "{e}");
        let e = err("[[registry]]\nprefix = \"a.io\"\n[[registry]]\nprefix = \"a.io\"\n");
        assert!(
            e.contains("f.conf:3") && e.contains("more than once"),
            "{e}"
        );
        let e = err("[[registry]\n");
        assert!(e.contains("f.conf") && e.contains("line 1"), "{e}");
        let e = err("[[registry]]\nprefix = \"*.a.io\"\nlocation = \"b.io\"\n");
        assert!(e.contains("wildcard"), "{e}");
        let e = err("[[registry]]\nprefix = \"a.io\"\ninsecure = \"yes\"\n");
        assert!(e.contains("f.conf"), "{e}");
    }

    #[test]
    fn a_location_without_repository_is_an_error() {
        let c = conf("[[registry]]\nprefix = \"a.io/app\"\nlocation = \"b.io\"\n");
        let e = c.endpoints(&image("a.io/app:1")).unwrap_err().to_string();
        assert!(e.contains("not host/repository"), "{e}");
    }
}
