//! Platforms (`os/arch[/variant]`) and choosing an image index entry for
//! one, with containerd's normalisation: `x86_64` is `amd64`, `aarch64` is
//! `arm64`, `arm64/v8` is plain `arm64`, plain `arm` is `arm/v7`.
//!
//! Matching is strict on the variant the user asked for (no fallback from
//! `arm/v7` to `arm/v6`, nor from `amd64` to `386`); only a wanted `amd64`
//! without a variant accepts any `amd64` micro-architecture level,
//! preferring the baseline.

use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// An operating system, CPU architecture and optional CPU variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Platform {
    /// Operating system, e.g. `linux`.
    pub os: String,
    /// CPU architecture in Go's naming, e.g. `amd64`, `arm64`.
    pub architecture: String,
    /// CPU variant, e.g. `v7` for `arm`.
    pub variant: Option<String>,
}

impl FromStr for Platform {
    type Err = Error;

    /// Parses `os/arch[/variant]` and normalises it.
    fn from_str(s: &str) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidPlatform {
            platform: s.to_string(),
            reason,
        };
        let parts: Vec<&str> = s.split('/').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(invalid("expected os/arch or os/arch/variant".into()));
        }
        if let Some(bad) = parts.iter().find(|p| !is_specifier(p)) {
            return Err(invalid(format!(
                "component {bad:?} must be non-empty and hold only letters, digits, '_', '.' \
                 or '-'"
            )));
        }
        Ok(Platform::new(parts[0], parts[1], parts.get(2).copied()))
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(variant) = &self.variant {
            write!(f, "/{variant}")?;
        }
        Ok(())
    }
}

impl Platform {
    /// The platform this program runs on, normalised (e.g. `linux/amd64`).
    pub fn host() -> Platform {
        Platform::new(std::env::consts::OS, host_arch(), None)
    }

    /// A normalised platform from its parts.
    pub fn new(os: &str, architecture: &str, variant: Option<&str>) -> Platform {
        Platform {
            os: os.to_string(),
            architecture: architecture.to_string(),
            variant: variant.map(str::to_string),
        }
        .normalized()
    }

    /// The canonical spelling of this platform: lowercase, Go architecture
    /// names, default variants made explicit or dropped as containerd does.
    pub fn normalized(&self) -> Platform {
        let os = match self.os.to_ascii_lowercase().as_str() {
            "macos" => "darwin".to_string(),
            other => other.to_string(),
        };
        let variant = self.variant.as_deref().unwrap_or("").to_ascii_lowercase();
        let (architecture, variant) =
            normalize_arch(&self.architecture.to_ascii_lowercase(), &variant);
        Platform {
            os,
            architecture,
            variant: (!variant.is_empty()).then_some(variant),
        }
    }

    /// The platform the original occystrap's flags ask for: `--os`,
    /// `--architecture` and `--variant` each override that part of this
    /// machine's platform (a new architecture drops the host's variant
    /// unless one is given). `None`s give the host's.
    pub fn from_parts(
        os: Option<&str>,
        architecture: Option<&str>,
        variant: Option<&str>,
    ) -> Platform {
        let host = Platform::host();
        let variant = match (variant, architecture) {
            (Some(v), _) => Some(v),
            (None, Some(_)) => None,
            (None, None) => host.variant.as_deref(),
        };
        Platform::new(
            os.unwrap_or(&host.os),
            architecture.unwrap_or(&host.architecture),
            variant,
        )
    }

    /// Whether an index entry for `candidate` satisfies this (wanted)
    /// platform.
    pub fn matches(&self, candidate: &Platform) -> bool {
        rank(&self.normalized(), &candidate.normalized()).is_some()
    }
}

/// Index of the best entry for `wanted` among an index's entries (`None`
/// for entries without a platform), or `None` if none fits. An exact match
/// beats an accepted one; ties go to the earliest entry.
// Public only for the manifest fuzz target (fuzz/checks.rs).
#[doc(hidden)]
pub fn select(wanted: &Platform, candidates: &[Option<Platform>]) -> Option<usize> {
    let wanted = wanted.normalized();
    candidates
        .iter()
        .enumerate()
        .filter_map(|(i, c)| {
            let c = c.as_ref()?.normalized();
            rank(&wanted, &c).map(|r| (r, i))
        })
        .min()
        .map(|(_, i)| i)
}

/// How well a normalised `candidate` fits a normalised `wanted`: `None` if
/// not at all, lower is better.
fn rank(wanted: &Platform, candidate: &Platform) -> Option<u32> {
    // Attestation manifests use unknown/unknown; they are never runnable.
    if candidate.os == "unknown" || candidate.architecture == "unknown" {
        return None;
    }
    if wanted.os != candidate.os || wanted.architecture != candidate.architecture {
        return None;
    }
    match (&wanted.variant, &candidate.variant) {
        (w, c) if w == c => Some(0),
        // Any amd64 level will do, the lowest (most portable) first.
        (None, Some(level)) if wanted.architecture == "amd64" => {
            let n = level.strip_prefix('v').and_then(|n| n.parse::<u32>().ok());
            Some(n.map_or(u32::MAX, |n| n.saturating_add(1)))
        }
        _ => None,
    }
}

/// Normalises a lowercase architecture and variant (empty = none).
fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (arch, variant) = match (arch, variant) {
        ("i386" | "i686", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64" | "amd64", v) => ("amd64", v),
        ("aarch64" | "arm64", "8" | "v8") => ("arm64", ""),
        ("aarch64" | "arm64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "" | "7") => ("arm", "v7"),
        ("arm", "5") => ("arm", "v5"),
        ("arm", "6") => ("arm", "v6"),
        ("arm", "8") => ("arm", "v8"),
        (a, v) => (a, v),
    };
    (arch.to_string(), variant.to_string())
}

/// Rust's name for the host architecture, translated to Go's.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86" => "386",
        "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
        "powerpc64" => "ppc64",
        "powerpc" => "ppc",
        "loongarch64" => "loong64",
        "mips64" if cfg!(target_endian = "little") => "mips64le",
        "mips" if cfg!(target_endian = "little") => "mipsle",
        // x86_64, aarch64, arm, s390x, riscv64 are normalised by `new`.
        other => other,
    }
}

/// A platform component: non-empty, letters, digits, `_`, `.`, `-`.
fn is_specifier(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_original_flags_override_parts_of_the_host() {
        let host = Platform::host();
        assert_eq!(Platform::from_parts(None, None, None), host);
        let arm = Platform::from_parts(None, Some("arm64"), None);
        assert_eq!(
            (arm.os.as_str(), arm.architecture.as_str()),
            (host.os.as_str(), "arm64")
        );
        assert_eq!(
            arm.variant, None,
            "a new architecture drops the host's variant"
        );
        let v7 = Platform::from_parts(Some("linux"), Some("arm"), Some("v7"));
        assert_eq!(v7.to_string(), "linux/arm/v7");
    }
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    /// An index built from `os/arch[/variant]` strings; "-" is an entry
    /// without a platform.
    fn index(entries: &[&str]) -> Vec<Option<Platform>> {
        entries.iter().map(|e| (*e != "-").then(|| p(e))).collect()
    }

    #[test]
    fn parses_and_normalises() {
        let cases = [
            ("linux/amd64", "linux/amd64"),
            ("linux/x86_64", "linux/amd64"),
            ("linux/x86-64", "linux/amd64"),
            ("Linux/AMD64", "linux/amd64"),
            ("linux/amd64/v1", "linux/amd64"),
            ("linux/amd64/v3", "linux/amd64/v3"),
            ("linux/aarch64", "linux/arm64"),
            ("linux/arm64/v8", "linux/arm64"),
            ("linux/arm64/8", "linux/arm64"),
            ("linux/arm64/v8.2", "linux/arm64/v8.2"),
            ("linux/armhf", "linux/arm/v7"),
            ("linux/armel", "linux/arm/v6"),
            ("linux/arm", "linux/arm/v7"),
            ("linux/arm/7", "linux/arm/v7"),
            ("linux/arm/6", "linux/arm/v6"),
            ("linux/arm/V6", "linux/arm/v6"),
            ("linux/arm/v8", "linux/arm/v8"),
            ("linux/i386", "linux/386"),
            ("linux/i686", "linux/386"),
            ("linux/ppc64le", "linux/ppc64le"),
            ("linux/s390x", "linux/s390x"),
            ("macos/arm64", "darwin/arm64"),
            ("windows/amd64", "windows/amd64"),
        ];
        for (input, want) in cases {
            assert_eq!(p(input).to_string(), want, "{input}");
            // Normalising twice changes nothing.
            assert_eq!(p(input).normalized(), p(input), "{input}");
        }
    }

    #[test]
    fn rejects_malformed_platforms() {
        for input in [
            "",
            "linux",
            "amd64",
            "linux/",
            "/amd64",
            "linux//v7",
            "linux/arm/v7/x",
            "linux/amd 64",
            "linux(10)/amd64",
        ] {
            match input.parse::<Platform>() {
                Err(Error::InvalidPlatform { platform, .. }) => assert_eq!(platform, input),
                other => panic!("{input:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn host_is_normalised() {
        let host = Platform::host();
        assert_eq!(host, host.normalized());
        assert_eq!(host.os, std::env::consts::OS);
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            assert_eq!(host.to_string(), "linux/amd64");
        }
    }

    #[test]
    fn matching_pairs() {
        // (wanted, candidate, matches)
        let cases = [
            ("linux/amd64", "linux/amd64", true),
            ("linux/amd64", "linux/x86_64", true),
            ("linux/amd64", "linux/amd64/v1", true),
            ("linux/amd64", "linux/amd64/v3", true),
            ("linux/amd64/v3", "linux/amd64", false),
            ("linux/amd64/v2", "linux/amd64/v2", true),
            ("linux/amd64", "linux/386", false),
            ("linux/amd64", "windows/amd64", false),
            ("linux/arm64", "linux/arm64/v8", true),
            ("linux/arm64/v8", "linux/arm64", true),
            ("linux/aarch64", "linux/arm64", true),
            ("linux/arm64", "linux/arm64/v8.2", false),
            ("linux/arm64", "linux/arm/v7", false),
            ("linux/arm", "linux/arm/v7", true),
            ("linux/arm/v7", "linux/arm", true),
            ("linux/armhf", "linux/arm/v7", true),
            ("linux/arm", "linux/arm/v6", false),
            ("linux/arm/v6", "linux/arm/v7", false),
            ("linux/arm/v6", "linux/armel", true),
            ("linux/arm/v8", "linux/arm/v7", false),
            ("linux/386", "linux/i386", true),
            ("linux/ppc64le", "linux/ppc64le", true),
            ("linux/ppc64le", "linux/ppc64", false),
            ("unknown/unknown", "unknown/unknown", false),
            ("linux/amd64", "unknown/unknown", false),
        ];
        for (wanted, candidate, want) in cases {
            assert_eq!(
                p(wanted).matches(&p(candidate)),
                want,
                "{wanted} vs {candidate}"
            );
        }
    }

    /// (index, wanted platform, chosen entry)
    type Case<'a> = (&'a [Option<Platform>], &'a str, Option<usize>);

    #[test]
    fn selects_from_indexes() {
        let multi = index(&[
            "linux/amd64",
            "linux/arm/v6",
            "linux/arm/v7",
            "linux/arm64/v8",
            "linux/386",
            "linux/ppc64le",
            "linux/s390x",
            "unknown/unknown",
            "unknown/unknown",
        ]);
        let amd_levels = index(&[
            "linux/amd64/v3",
            "linux/amd64/v2",
            "linux/amd64",
            "linux/arm64",
        ]);
        let amd_only_levels = index(&["linux/amd64/v3", "linux/amd64/v2", "unknown/unknown"]);
        let arm64_plain_first = index(&["linux/arm64", "linux/arm64/v8", "linux/arm/v7"]);
        let duplicates = index(&["linux/arm/v7", "linux/amd64", "linux/amd64", "linux/arm/v7"]);
        let no_platform = index(&["-", "-", "linux/amd64"]);
        let attestation_only = index(&["unknown/unknown", "-"]);
        let arm_v6_only = index(&["linux/arm/v6", "linux/arm64/v8.2"]);
        let cases: Vec<Case> = vec![
            (&multi, "linux/amd64", Some(0)),
            (&multi, "linux/x86_64", Some(0)),
            (&multi, "linux/arm/v6", Some(1)),
            (&multi, "linux/arm", Some(2)),
            (&multi, "linux/arm/v7", Some(2)),
            (&multi, "linux/arm64", Some(3)),
            (&multi, "linux/aarch64", Some(3)),
            (&multi, "linux/arm64/v8", Some(3)),
            (&multi, "linux/386", Some(4)),
            (&multi, "linux/ppc64le", Some(5)),
            (&multi, "linux/s390x", Some(6)),
            (&multi, "linux/riscv64", None),
            (&multi, "linux/arm/v8", None),
            (&multi, "windows/amd64", None),
            (&multi, "unknown/unknown", None),
            (&amd_levels, "linux/amd64", Some(2)),
            (&amd_levels, "linux/amd64/v2", Some(1)),
            (&amd_levels, "linux/amd64/v4", None),
            (&amd_only_levels, "linux/amd64", Some(1)),
            (&arm64_plain_first, "linux/arm64/v8", Some(0)),
            (&arm64_plain_first, "linux/arm", Some(2)),
            (&duplicates, "linux/amd64", Some(1)),
            (&duplicates, "linux/arm", Some(0)),
            (&no_platform, "linux/amd64", Some(2)),
            (&attestation_only, "linux/amd64", None),
            (&arm_v6_only, "linux/arm", None),
            (&arm_v6_only, "linux/arm64", None),
            (&arm_v6_only, "linux/arm64/v8.2", Some(1)),
            (&[], "linux/amd64", None),
        ];
        for (candidates, wanted, want) in cases {
            assert_eq!(
                select(&p(wanted), candidates),
                want,
                "{wanted} in {candidates:?}"
            );
        }
    }
}
