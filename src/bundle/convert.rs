//! Image config → OCI runtime `config.json`, following the image-spec's
//! conversion rules (`conversion.md`) on top of a runtime *profile*: a
//! complete runtime config (runc's defaults unless the user brings one)
//! that supplies everything the image does not describe (namespaces,
//! mounts, capabilities, ...).
//!
//! The output is a [`serde_json::Value`] rather than
//! `oci_spec::runtime::Spec`: the profile's fields pass through untouched
//! (even ones a typed model does not know), and object keys are sorted, so
//! the same inputs always give the same bytes.

use std::collections::BTreeMap;

use oci_spec::image::{Config, ImageConfiguration};
use serde_json::{Map, Value, json};

use super::users::{AccountFile, UserError, resolve_user};

/// runc's default config (`runc spec`): the base of a bundle run as root.
pub const DEFAULT_PROFILE: &str = include_str!("../../bundles/default.json");

/// runc's rootless config (`runc spec --rootless`), with host ids 0; see
/// [`rootless_profile`] for one mapped to the calling user.
pub const ROOTLESS_PROFILE: &str = include_str!("../../bundles/rootless.json");

/// What `docker run` gives a container (Docker's default capabilities,
/// seccomp profile, masked paths, sysctls, no rlimits of its own), for images
/// that need it; see `bundles/README.md`. Pair it with
/// [`ConvertOptions::hostname_env`] for Docker's environment too.
pub const DOCKER_PROFILE: &str = include_str!("../../bundles/docker.json");

/// `PATH` given to images that set none (the value Docker and runc use).
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Caller's choices layered over the image config. These are "externally
/// provided inputs" in the spec's terms: they may override anything.
#[derive(Debug, Clone, Default)]
pub struct ConvertOptions {
    /// `process.terminal`; off by default so `runc run` works without a tty.
    /// When on, `TERM=xterm` is added unless the image sets `TERM`.
    pub tty: bool,
    /// `hostname`; `None` keeps the profile's.
    pub hostname: Option<String>,
    /// Extra `NAME=value` entries; each replaces the image's entry of the
    /// same name or is appended.
    pub env: Vec<String>,
    /// `root.readonly`.
    pub read_only: bool,
    /// Replaces Entrypoint + Cmd entirely.
    pub args: Option<Vec<String>>,
    /// Replaces the image's `Config.User` (same syntax), e.g. `0` to run a
    /// non-root image in a rootless bundle that maps only root.
    pub user: Option<String>,
    /// Add `HOSTNAME=<the container's hostname>` unless the image or the
    /// caller sets it, as Docker does (for [`DOCKER_PROFILE`]).
    pub hostname_env: bool,
    /// Replaces the image's `WorkingDir`; must be absolute (as Docker's
    /// `-w`): a relative one would be resolved against nothing the caller
    /// can see.
    pub workdir: Option<String>,
}

/// Why an image config could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// The runtime profile is not a JSON object of the expected shape.
    #[error("invalid runtime profile: {reason}")]
    InvalidProfile {
        /// What is wrong with it.
        reason: String,
    },
    /// Neither Entrypoint, Cmd nor an override gives a command to run.
    #[error("the image has no Entrypoint or Cmd: give a command to run")]
    NoCommand,
    /// The user spec cannot be resolved in the image's passwd/group files.
    #[error("cannot resolve user {spec:?}: {source}")]
    User {
        /// The spec, as given by the image or the caller.
        spec: String,
        /// The precise failure, naming the user, group or id.
        #[source]
        source: UserError,
    },
    /// An environment entry without `=` or with an empty name.
    #[error("invalid environment variable {entry:?} from {origin}: expected NAME=value")]
    InvalidEnv {
        /// The entry.
        entry: String,
        /// Where it came from: the image or the caller.
        origin: &'static str,
    },
    /// A working directory override that is not an absolute path.
    #[error("the working directory {0:?} is not an absolute path")]
    RelativeWorkdir(String),
    /// The image is not a Linux image; runtime bundles here are for Linux.
    #[error("the image is for OS {os:?}; a runtime bundle needs a linux image")]
    UnsupportedOs {
        /// The image's `os`.
        os: String,
    },
    /// The profile maps user ids (a rootless profile) but not this one, so
    /// the runtime could not switch to it.
    #[error(
        "{kind} {id} is not mapped by the profile's linux.{kind}Mappings \
         (a rootless bundle maps only a few ids; run as a mapped user, e.g. user 0)"
    )]
    UnmappedId {
        /// `uid` or `gid`.
        kind: &'static str,
        /// The id the process would run as.
        id: u32,
    },
}

/// Build a bundle's `config.json` from an image config and a profile.
///
/// `image` is the parsed image config; `profile` a runtime config as JSON
/// ([`DEFAULT_PROFILE`], [`rootless_profile`] or the user's);
/// `passwd`/`group` the rootfs's `/etc/passwd` and `/etc/group`, read by
/// the caller confined to the rootfs.
///
/// The profile's `process.args`, `env`, `cwd`, `terminal` and the ids of
/// `process.user` are replaced; everything else in it is kept. Volumes are
/// deliberately not turned into mounts: see [`volumes`].
pub fn convert(
    image: &ImageConfiguration,
    profile: &str,
    passwd: AccountFile<'_>,
    group: AccountFile<'_>,
    opts: &ConvertOptions,
) -> Result<Value, ConvertError> {
    let os = image.os().to_string();
    if os != "linux" {
        return Err(ConvertError::UnsupportedOs { os });
    }
    let mut spec: Value =
        serde_json::from_str(profile).map_err(|e| ConvertError::InvalidProfile {
            reason: e.to_string(),
        })?;
    let cfg = image.config().as_ref();

    let args = process_args(cfg, opts)?;
    let user_spec = opts
        .user
        .as_deref()
        .or_else(|| cfg.and_then(|c| c.user().as_deref()))
        .unwrap_or_default();
    let user = resolve_user(user_spec, passwd, group).map_err(|source| ConvertError::User {
        spec: user_spec.to_owned(),
        source,
    })?;
    let hostname = opts.hostname.clone().or_else(|| {
        spec.get("hostname")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let env = process_env(cfg, user.home.as_deref(), hostname.as_deref(), opts)?;
    check_mapped(&spec, "uid", user.uid)?;
    check_mapped(&spec, "gid", user.gid)?;
    let additional_gids = supplementary(&spec, user.gid, user.additional_gids)?;

    let root = as_object(&mut spec, "the profile")?;
    let process = object_at(root, "process")?;
    process.insert("args".into(), json!(args));
    process.insert("env".into(), json!(env));
    let cwd = match &opts.workdir {
        Some(dir) if dir.starts_with('/') => dir.clone(),
        Some(dir) => return Err(ConvertError::RelativeWorkdir(dir.clone())),
        None => working_dir(cfg),
    };
    process.insert("cwd".into(), json!(cwd));
    process.insert("terminal".into(), json!(opts.tty));
    let proc_user = object_at(process, "user")?;
    proc_user.insert("uid".into(), json!(user.uid));
    proc_user.insert("gid".into(), json!(user.gid));
    if additional_gids.is_empty() {
        proc_user.remove("additionalGids");
    } else {
        proc_user.insert("additionalGids".into(), json!(additional_gids));
    }

    let rootfs = object_at(root, "root")?;
    rootfs.insert("path".into(), json!("rootfs"));
    rootfs.insert("readonly".into(), json!(opts.read_only));
    if let Some(hostname) = &opts.hostname {
        root.insert("hostname".into(), json!(hostname));
    }
    let annotations = object_at(root, "annotations")?;
    for (key, value) in image_annotations(image) {
        annotations.insert(key, json!(value));
    }
    Ok(spec)
}

/// The image's `Config.Volumes`, sorted.
///
/// They are not turned into mounts in `config.json`: a mount needs a
/// source, and which host directory (or tmpfs, or nothing) should back a
/// volume is the caller's decision when it runs the container. A bundle
/// that invented host paths would write data somewhere the user never
/// chose. The CLI prints these so the user can add the mounts they want.
pub fn volumes(image: &ImageConfiguration) -> Vec<String> {
    let mut vols = image
        .config()
        .as_ref()
        .and_then(|c| c.volumes().clone())
        .unwrap_or_default();
    vols.sort();
    vols.dedup();
    vols
}

/// Check that `profile` is a runtime config (a JSON object) before any
/// work is done for a bundle.
pub fn check_profile(profile: &str) -> Result<(), ConvertError> {
    match serde_json::from_str::<Value>(profile) {
        Ok(Value::Object(_)) => Ok(()),
        Ok(_) => Err(ConvertError::InvalidProfile {
            reason: "not a JSON object".into(),
        }),
        Err(e) => Err(ConvertError::InvalidProfile {
            reason: e.to_string(),
        }),
    }
}

/// The runtime profile a bundle is made from, by the name `--profile`
/// takes: `default` ([`DEFAULT_PROFILE`]: `runc spec`'s), `rootless`
/// ([`rootless_profile`] for this process's ids), `docker`
/// ([`DOCKER_PROFILE`]), `auto` (`rootless` when not root, or root of a
/// user namespace of one id, so that this user's runc can start the
/// bundle, else `default`), or the path of a
/// profile file.
pub fn profile(choice: &str) -> crate::Result<String> {
    let euid = nix::unistd::geteuid();
    let rootless = || rootless_profile(euid.as_raw(), nix::unistd::getegid().as_raw());
    Ok(match choice {
        "default" => DEFAULT_PROFILE.to_string(),
        DOCKER => DOCKER_PROFILE.to_string(),
        "auto" if crate::userns::privileged() => DEFAULT_PROFILE.to_string(),
        "rootless" | "auto" => rootless()?,
        path => std::fs::read_to_string(path).map_err(|e| crate::Error::io(path, e))?,
    })
}

/// The name [`profile`] knows [`DOCKER_PROFILE`] by; a caller choosing it
/// should also set [`ConvertOptions::hostname_env`], as Docker's
/// environment carries `HOSTNAME`.
pub const DOCKER: &str = "docker";

/// [`ROOTLESS_PROFILE`] with its id mappings pointed at the given host ids,
/// as `runc spec --rootless` would write it for that user (pass the
/// caller's effective uid and gid).
pub fn rootless_profile(host_uid: u32, host_gid: u32) -> Result<String, ConvertError> {
    let invalid = |reason: String| ConvertError::InvalidProfile { reason };
    let mut spec: Value =
        serde_json::from_str(ROOTLESS_PROFILE).map_err(|e| invalid(e.to_string()))?;
    let linux = object_at(as_object(&mut spec, "the profile")?, "linux")?;
    for (key, host_id) in [("uidMappings", host_uid), ("gidMappings", host_gid)] {
        let mappings = linux
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .ok_or_else(|| invalid(format!("linux.{key} is missing")))?;
        for mapping in mappings.iter_mut().filter_map(Value::as_object_mut) {
            mapping.insert("hostID".into(), json!(host_id));
        }
    }
    serde_json::to_string_pretty(&spec).map_err(|e| invalid(e.to_string()))
}

/// Entrypoint + Cmd (or the override); never empty.
fn process_args(cfg: Option<&Config>, opts: &ConvertOptions) -> Result<Vec<String>, ConvertError> {
    let args = match &opts.args {
        Some(args) => args.clone(),
        None => {
            let entrypoint = cfg
                .and_then(|c| c.entrypoint().as_deref())
                .unwrap_or_default();
            let cmd = cfg.and_then(|c| c.cmd().as_deref()).unwrap_or_default();
            [entrypoint, cmd].concat()
        }
    };
    if args.is_empty() {
        return Err(ConvertError::NoCommand);
    }
    Ok(args)
}

/// `process.cwd`: WorkingDir, made absolute (runtimes refuse a relative
/// cwd; Docker resolves a relative WorkingDir against `/`), else `/`.
fn working_dir(cfg: Option<&Config>) -> String {
    match cfg.and_then(|c| c.working_dir().as_deref()) {
        None | Some("") => "/".to_owned(),
        Some(dir) if dir.starts_with('/') => dir.to_owned(),
        Some(dir) => format!("/{dir}"),
    }
}

/// An environment list that keeps first-seen order and one entry per name.
struct EnvList(Vec<String>);

impl EnvList {
    /// The name of a valid `NAME=value` entry.
    fn name(entry: &str) -> Option<&str> {
        entry
            .split_once('=')
            .map(|(n, _)| n)
            .filter(|n| !n.is_empty())
    }

    fn has(&self, name: &str) -> bool {
        self.0.iter().any(|e| Self::name(e) == Some(name))
    }

    /// Replace the entry of the same name in place, or append.
    fn set(&mut self, entry: &str, origin: &'static str) -> Result<(), ConvertError> {
        let name = Self::name(entry).ok_or_else(|| ConvertError::InvalidEnv {
            entry: entry.to_owned(),
            origin,
        })?;
        match self.0.iter_mut().find(|e| Self::name(e) == Some(name)) {
            Some(slot) => entry.clone_into(slot),
            None => self.0.push(entry.to_owned()),
        }
        Ok(())
    }

    fn set_default(&mut self, name: &str, entry: String) {
        if !self.has(name) {
            self.0.push(entry);
        }
    }
}

/// Image Env, then defaults for what it lacks (PATH, HOME, HOSTNAME if
/// asked, TERM with a tty), then the caller's entries; the profile's env is
/// not used, since implementation defaults must not change what the image
/// sets. `hostname` is the container's, when it has one.
fn process_env(
    cfg: Option<&Config>,
    home: Option<&str>,
    hostname: Option<&str>,
    opts: &ConvertOptions,
) -> Result<Vec<String>, ConvertError> {
    let mut env = EnvList(Vec::new());
    for entry in cfg.and_then(|c| c.env().as_deref()).unwrap_or_default() {
        env.set(entry, "the image")?;
    }
    env.set_default("PATH", DEFAULT_PATH.to_owned());
    env.set_default("HOME", format!("HOME={}", home.unwrap_or("/")));
    if let (true, Some(hostname)) = (opts.hostname_env, hostname) {
        env.set_default("HOSTNAME", format!("HOSTNAME={hostname}"));
    }
    if opts.tty {
        env.set_default("TERM", "TERM=xterm".to_owned());
    }
    for entry in &opts.env {
        env.set(entry, "the options")?;
    }
    Ok(env.0)
}

/// Annotations the image implies, then its labels, which win on conflict.
fn image_annotations(image: &ImageConfiguration) -> BTreeMap<String, String> {
    const PREFIX: &str = "org.opencontainers.image.";
    let cfg = image.config().as_ref();
    let ports = cfg.and_then(|c| c.exposed_ports().clone()).map(|mut p| {
        p.sort();
        p.dedup();
        p.join(",")
    });
    let generated = [
        ("os", Some(image.os().to_string())),
        ("architecture", Some(image.architecture().to_string())),
        ("variant", image.variant().clone()),
        ("os.version", image.os_version().clone()),
        (
            "os.features",
            image.os_features().as_ref().map(|f| f.join(",")),
        ),
        ("author", image.author().clone()),
        ("created", image.created().clone()),
        ("stopSignal", cfg.and_then(|c| c.stop_signal().clone())),
        ("exposedPorts", ports),
    ];
    let mut out: BTreeMap<String, String> = generated
        .into_iter()
        .filter_map(|(key, value)| Some((format!("{PREFIX}{key}"), value?)))
        .filter(|(_, value)| !value.is_empty())
        .collect();
    if let Some(labels) = cfg.and_then(|c| c.labels().as_ref()) {
        out.extend(labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

/// Refuse an id outside the profile's `linux.<kind>Mappings`, when it has
/// any: the runtime could not switch to it and would fail obscurely.
fn check_mapped(spec: &Value, kind: &'static str, id: u32) -> Result<(), ConvertError> {
    match is_mapped(spec, kind, id)? {
        Some(false) => Err(ConvertError::UnmappedId { kind, id }),
        Some(true) | None => Ok(()),
    }
}

/// Whether the profile's `linux.<kind>Mappings` cover `id`; `None` when
/// the profile maps no ids (no user namespace).
fn is_mapped(spec: &Value, kind: &'static str, id: u32) -> Result<Option<bool>, ConvertError> {
    let key = format!("{kind}Mappings");
    let Some(mappings) = spec
        .pointer(&format!("/linux/{key}"))
        .and_then(Value::as_array)
    else {
        return Ok(None);
    };
    if mappings.is_empty() {
        return Ok(None);
    }
    let covers = |m: &Value| -> Result<bool, ConvertError> {
        let field = |name: &str| {
            m.get(name)
                .and_then(Value::as_u64)
                .ok_or_else(|| ConvertError::InvalidProfile {
                    reason: format!("linux.{key}: an entry lacks a numeric {name}"),
                })
        };
        let (start, size) = (field("containerID")?, field("size")?);
        Ok(u64::from(id) >= start && u64::from(id) - start < size)
    };
    for mapping in mappings {
        if covers(mapping)? {
            return Ok(Some(true));
        }
    }
    Ok(Some(false))
}

/// The supplementary groups to write. In a profile with a user namespace,
/// groups from `/etc/group` that the mappings do not cover are dropped, and
/// so is the primary gid (the process has it anyway): runc, resolving the
/// same files itself, silently skips groups it cannot set there, whereas an
/// explicit `additionalGids` it cannot set (any at all, for an unprivileged
/// runc) makes the container fail to start.
fn supplementary(spec: &Value, gid: u32, gids: Vec<u32>) -> Result<Vec<u32>, ConvertError> {
    let mut kept = Vec::with_capacity(gids.len());
    for g in gids {
        match is_mapped(spec, "gid", g)? {
            None => kept.push(g),
            Some(true) if g != gid => kept.push(g),
            Some(_) => {}
        }
    }
    Ok(kept)
}

/// `value` as an object, or an error naming `what`.
fn as_object<'a>(
    value: &'a mut Value,
    what: &str,
) -> Result<&'a mut Map<String, Value>, ConvertError> {
    value
        .as_object_mut()
        .ok_or_else(|| ConvertError::InvalidProfile {
            reason: format!("{what} is not a JSON object"),
        })
}

/// The object at `key`, created empty when absent.
fn object_at<'a>(
    parent: &'a mut Map<String, Value>,
    key: &str,
) -> Result<&'a mut Map<String, Value>, ConvertError> {
    let value = parent.entry(key).or_insert_with(|| json!({}));
    as_object(value, &format!("{key:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n";
    const GROUP: &str = "root:x:0:\napp:x:1000:\nwheel:x:10:app\nstaff:x:50:app\n";

    /// An image config from the `config` object (and top-level extras).
    fn image(config: &str, extra: &str) -> ImageConfiguration {
        let json = format!(
            r#"{{"architecture":"amd64","os":"linux",{extra}"config":{config},
               "rootfs":{{"type":"layers","diff_ids":[]}}}}"#
        );
        serde_json::from_str(&json).unwrap()
    }

    fn run(image: &ImageConfiguration, opts: &ConvertOptions) -> Result<Value, ConvertError> {
        convert(
            image,
            DEFAULT_PROFILE,
            AccountFile::Read(PASSWD.as_bytes()),
            AccountFile::Read(GROUP.as_bytes()),
            opts,
        )
    }

    fn ok(config: &str) -> Value {
        run(&image(config, ""), &ConvertOptions::default()).unwrap()
    }

    fn strings(v: &Value) -> Vec<&str> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap())
            .collect()
    }

    #[test]
    fn profiles_are_runc_defaults() {
        for profile in [DEFAULT_PROFILE, ROOTLESS_PROFILE] {
            let v: Value = serde_json::from_str(profile).unwrap();
            assert_eq!(v["hostname"], "runc");
            assert_eq!(v["process"]["noNewPrivileges"], true);
            assert_eq!(v["root"]["path"], "rootfs");
        }
        let rootless: Value = serde_json::from_str(ROOTLESS_PROFILE).unwrap();
        assert!(rootless["linux"]["uidMappings"].is_array());
    }

    #[test]
    fn docker_profile_is_dockers_defaults() {
        let v: Value = serde_json::from_str(&profile("docker").unwrap()).unwrap();
        assert_eq!(v, serde_json::from_str::<Value>(DOCKER_PROFILE).unwrap());
        let docker_caps = [
            "CAP_CHOWN",
            "CAP_DAC_OVERRIDE",
            "CAP_FSETID",
            "CAP_FOWNER",
            "CAP_MKNOD",
            "CAP_NET_RAW",
            "CAP_SETGID",
            "CAP_SETUID",
            "CAP_SETFCAP",
            "CAP_SETPCAP",
            "CAP_NET_BIND_SERVICE",
            "CAP_SYS_CHROOT",
            "CAP_KILL",
            "CAP_AUDIT_WRITE",
        ];
        let caps = &v["process"]["capabilities"];
        for set in ["bounding", "effective", "permitted"] {
            assert_eq!(strings(&caps[set]), docker_caps, "{set}");
        }
        // Docker 20.10.14+ (CVE-2022-24769) sets no inheritable capabilities,
        // and never ambient ones.
        let sets: Vec<&String> = caps.as_object().unwrap().keys().collect();
        assert_eq!(sets, ["bounding", "effective", "permitted"]);
        assert_eq!(v["process"]["noNewPrivileges"], false);
        // Docker sets no rlimits: a container inherits the daemon's, as a
        // bundle inherits those of whoever runs runc.
        assert!(v["process"].get("rlimits").is_none());
        let seccomp = &v["linux"]["seccomp"];
        assert_eq!(seccomp["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(seccomp["defaultErrnoRet"], 1);
        assert_eq!(
            strings(&seccomp["architectures"]),
            [
                "SCMP_ARCH_X86_64",
                "SCMP_ARCH_X86",
                "SCMP_ARCH_X32",
                "SCMP_ARCH_AARCH64",
                "SCMP_ARCH_ARM"
            ]
        );
        let allowed: Vec<&str> = seccomp["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["action"] == "SCMP_ACT_ALLOW" && r.get("args").is_none())
            .flat_map(|r| strings(&r["names"]))
            .collect();
        for call in [
            "read",
            "execve",
            "chown",
            "setuid",
            "bind",
            "chroot",
            "arch_prctl",
        ] {
            assert!(allowed.contains(&call), "{call} is allowed");
        }
        // What needs CAP_SYS_ADMIN and friends stays out (EPERM by default).
        for call in [
            "mount", "unshare", "setns", "reboot", "bpf", "clone", "socket",
        ] {
            assert!(!allowed.contains(&call), "{call} is not unconditional");
        }
        let masked = strings(&v["linux"]["maskedPaths"]);
        assert!(masked.contains(&"/sys/devices/virtual/powercap"));
        let shm = v["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["destination"] == "/dev/shm")
            .unwrap();
        assert!(strings(&shm["options"]).contains(&"size=65536k"));
        assert_eq!(
            v["linux"]["sysctl"]["net.ipv4.ip_unprivileged_port_start"],
            "0"
        );
        assert_eq!(v["process"]["terminal"], false);
    }

    #[test]
    fn hostname_env() {
        let convert_with = |config: &str, opts: &ConvertOptions| {
            convert(
                &image(config, ""),
                DOCKER_PROFILE,
                AccountFile::Read(PASSWD.as_bytes()),
                AccountFile::Read(GROUP.as_bytes()),
                opts,
            )
            .unwrap()
        };
        let docker = ConvertOptions {
            hostname_env: true,
            ..Default::default()
        };
        // The profile's hostname, or the one asked for.
        let got = convert_with(r#"{"Cmd":["sh"]}"#, &docker);
        assert_eq!(
            strings(&got["process"]["env"]),
            [DEFAULT_PATH, "HOME=/root", "HOSTNAME=runc"]
        );
        let opts = ConvertOptions {
            hostname: Some("box".into()),
            tty: true,
            ..docker.clone()
        };
        let got = convert_with(r#"{"Cmd":["sh"]}"#, &opts);
        assert_eq!(
            strings(&got["process"]["env"]),
            [DEFAULT_PATH, "HOME=/root", "HOSTNAME=box", "TERM=xterm"]
        );
        // The image's and the caller's win, as in Docker.
        let got = convert_with(r#"{"Cmd":["sh"],"Env":["HOSTNAME=img"]}"#, &docker);
        assert!(strings(&got["process"]["env"]).contains(&"HOSTNAME=img"));
        let opts = ConvertOptions {
            env: vec!["HOSTNAME=me".into()],
            ..docker.clone()
        };
        let got = convert_with(r#"{"Cmd":["sh"]}"#, &opts);
        assert!(strings(&got["process"]["env"]).contains(&"HOSTNAME=me"));
        // Off unless asked.
        let got = convert_with(r#"{"Cmd":["sh"]}"#, &ConvertOptions::default());
        assert_eq!(
            strings(&got["process"]["env"]),
            [DEFAULT_PATH, "HOME=/root"]
        );
    }

    #[test]
    fn args() {
        // (config, args override, expected args)
        type Case = (
            &'static str,
            Option<&'static [&'static str]>,
            &'static [&'static str],
        );
        let cases: &[Case] = &[
            (
                r#"{"Entrypoint":["/ep","-x"],"Cmd":["a","b"]}"#,
                None,
                &["/ep", "-x", "a", "b"],
            ),
            (r#"{"Cmd":["sh","-c","true"]}"#, None, &["sh", "-c", "true"]),
            (r#"{"Entrypoint":["/ep"]}"#, None, &["/ep"]),
            (
                r#"{"Entrypoint":["/ep"],"Cmd":["a"]}"#,
                Some(&["x", "y"]),
                &["x", "y"],
            ),
            (r#"{}"#, Some(&["/bin/true"]), &["/bin/true"]),
        ];
        for (config, over, want) in cases {
            let opts = ConvertOptions {
                args: over.map(|a| a.iter().map(|s| s.to_string()).collect()),
                ..Default::default()
            };
            let got = run(&image(config, ""), &opts).unwrap();
            assert_eq!(strings(&got["process"]["args"]), *want, "{config}");
        }
        for config in [r#"{}"#, r#"{"Entrypoint":[],"Cmd":[]}"#, "null"] {
            let err = run(&image(config, ""), &ConvertOptions::default()).unwrap_err();
            assert!(matches!(err, ConvertError::NoCommand), "{config}: {err}");
        }
        let opts = ConvertOptions {
            args: Some(vec![]),
            ..Default::default()
        };
        let err = run(&image(r#"{"Cmd":["sh"]}"#, ""), &opts).unwrap_err();
        assert!(matches!(err, ConvertError::NoCommand));
    }

    #[test]
    fn env() {
        const PATH: &str = DEFAULT_PATH;
        let cases: &[(&str, bool, &[&str], &[&str])] = &[
            // Defaults added after the image's entries; HOME from passwd.
            (
                r#"{"Cmd":["sh"],"Env":["A=1"]}"#,
                false,
                &[],
                &["A=1", PATH, "HOME=/root"],
            ),
            // The image's PATH/HOME/TERM are never replaced by defaults.
            (
                r#"{"Cmd":["sh"],"Env":["PATH=/x","HOME=/h","TERM=vt100"]}"#,
                true,
                &[],
                &["PATH=/x", "HOME=/h", "TERM=vt100"],
            ),
            // TERM only with a tty; the user's HOME from passwd.
            (
                r#"{"Cmd":["sh"],"User":"app"}"#,
                true,
                &[],
                &[PATH, "HOME=/home/app", "TERM=xterm"],
            ),
            // Unknown uid: HOME falls back to "/".
            (
                r#"{"Cmd":["sh"],"User":"4242"}"#,
                false,
                &[],
                &[PATH, "HOME=/"],
            ),
            // Options override in place, new ones append; image dups merge.
            (
                r#"{"Cmd":["sh"],"Env":["A=1","B=2","A=3","C=a=b"]}"#,
                false,
                &["B=x", "D=", "HOME=/opt"],
                &["A=3", "B=x", "C=a=b", PATH, "HOME=/opt", "D="],
            ),
        ];
        for (config, tty, extra, want) in cases {
            let opts = ConvertOptions {
                tty: *tty,
                env: extra.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            };
            let got = run(&image(config, ""), &opts).unwrap();
            assert_eq!(strings(&got["process"]["env"]), *want, "{config}");
            assert_eq!(got["process"]["terminal"], *tty);
        }
        let err = run(
            &image(r#"{"Cmd":["sh"],"Env":["NOEQUALS"]}"#, ""),
            &Default::default(),
        );
        assert!(
            matches!(err, Err(ConvertError::InvalidEnv { ref entry, .. }) if entry == "NOEQUALS")
        );
        let opts = ConvertOptions {
            env: vec!["=v".into()],
            ..Default::default()
        };
        let err = run(&image(r#"{"Cmd":["sh"]}"#, ""), &opts);
        assert!(matches!(err, Err(ConvertError::InvalidEnv { ref entry, .. }) if entry == "=v"));
    }

    #[test]
    fn cwd_root_hostname() {
        let cases = [
            (r#"{"Cmd":["sh"]}"#, "/"),
            (r#"{"Cmd":["sh"],"WorkingDir":""}"#, "/"),
            (r#"{"Cmd":["sh"],"WorkingDir":"/srv/app"}"#, "/srv/app"),
            (r#"{"Cmd":["sh"],"WorkingDir":"srv"}"#, "/srv"),
        ];
        for (config, want) in cases {
            assert_eq!(ok(config)["process"]["cwd"], want, "{config}");
        }
        let got = ok(r#"{"Cmd":["sh"]}"#);
        assert_eq!(got["root"], json!({"path": "rootfs", "readonly": false}));
        assert_eq!(got["hostname"], "runc");
        let opts = ConvertOptions {
            read_only: true,
            hostname: Some("box".into()),
            ..Default::default()
        };
        let got = run(&image(r#"{"Cmd":["sh"]}"#, ""), &opts).unwrap();
        assert_eq!(got["root"]["readonly"], true);
        assert_eq!(got["hostname"], "box");
        // The rest of the profile is kept.
        let profile: Value = serde_json::from_str(DEFAULT_PROFILE).unwrap();
        assert_eq!(got["linux"], profile["linux"]);
        assert_eq!(got["mounts"], profile["mounts"]);
        assert_eq!(
            got["process"]["capabilities"],
            profile["process"]["capabilities"]
        );
    }

    #[test]
    fn user() {
        let cases: &[(&str, Value)] = &[
            ("", json!({"uid": 0, "gid": 0})),
            (
                "app",
                json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 50]}),
            ),
            // A uid gets the groups of its passwd entry's name, as in runc.
            (
                "1000",
                json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 50]}),
            ),
            ("app:wheel", json!({"uid": 1000, "gid": 10})),
            ("1000:50", json!({"uid": 1000, "gid": 50})),
            ("4242:wheel", json!({"uid": 4242, "gid": 10})),
            ("app:7", json!({"uid": 1000, "gid": 7})),
        ];
        for (user, want) in cases {
            let got = ok(&format!(r#"{{"Cmd":["sh"],"User":"{user}"}}"#));
            assert_eq!(&got["process"]["user"], want, "user {user:?}");
        }
        // The caller's user replaces the image's.
        let opts = ConvertOptions {
            user: Some("0".into()),
            ..Default::default()
        };
        let got = run(&image(r#"{"Cmd":["sh"],"User":"nobody"}"#, ""), &opts).unwrap();
        assert_eq!(got["process"]["user"], json!({"uid": 0, "gid": 0}));
        // ... and is resolved the same way, groups included.
        let opts = ConvertOptions {
            user: Some("1000".into()),
            ..Default::default()
        };
        let got = run(&image(r#"{"Cmd":["sh"]}"#, ""), &opts).unwrap();
        assert_eq!(
            got["process"]["user"],
            json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 50]})
        );

        for (user, culprit) in [("nobody", "nobody"), ("app:nogroup", "nogroup")] {
            let err = ok_err(&format!(r#"{{"Cmd":["sh"],"User":"{user}"}}"#));
            assert!(matches!(err, ConvertError::User { ref spec, .. } if spec == user));
            assert!(err.to_string().contains(&format!("{culprit:?}")), "{err}");
        }
        let err = ok_err(r#"{"Cmd":["sh"],"User":"4294967296"}"#);
        assert!(err.to_string().contains("out of range"), "{err}");
    }

    fn ok_err(config: &str) -> ConvertError {
        run(&image(config, ""), &ConvertOptions::default()).unwrap_err()
    }

    #[test]
    fn rootless_mappings() {
        let profile = rootless_profile(1234, 5678).unwrap();
        let v: Value = serde_json::from_str(&profile).unwrap();
        assert_eq!(v["linux"]["uidMappings"][0]["hostID"], 1234);
        assert_eq!(v["linux"]["gidMappings"][0]["hostID"], 5678);
        let convert_as = |user: &str| {
            let img = image(&format!(r#"{{"Cmd":["sh"],"User":"{user}"}}"#), "");
            convert(
                &img,
                &profile,
                AccountFile::Read(PASSWD.as_bytes()),
                AccountFile::Absent,
                &Default::default(),
            )
        };
        assert!(convert_as("0").is_ok());
        // Root's groups from /etc/group: none can be set by an unprivileged
        // runc, so none are written (0 is mapped but is the primary gid).
        let group = b"root:x:0:root\nwheel:x:10:root\n";
        for user in ["", "0", "root"] {
            let img = image(&format!(r#"{{"Cmd":["sh"],"User":"{user}"}}"#), "");
            let got = convert(
                &img,
                &profile,
                AccountFile::Read(PASSWD.as_bytes()),
                AccountFile::Read(group),
                &Default::default(),
            )
            .unwrap();
            assert_eq!(
                got["process"]["user"],
                json!({"uid": 0, "gid": 0}),
                "{user:?}"
            );
            // Without a user namespace, all of them.
            let got = convert(
                &img,
                DEFAULT_PROFILE,
                AccountFile::Read(PASSWD.as_bytes()),
                AccountFile::Read(group),
                &Default::default(),
            )
            .unwrap();
            let want = json!({"uid": 0, "gid": 0, "additionalGids": [0, 10]});
            assert_eq!(got["process"]["user"], want, "{user:?}");
        }
        let err = convert_as("app").unwrap_err();
        assert!(
            matches!(
                err,
                ConvertError::UnmappedId {
                    kind: "uid",
                    id: 1000
                }
            ),
            "{err}"
        );
        let err = convert_as("0:1").unwrap_err();
        assert!(
            matches!(err, ConvertError::UnmappedId { kind: "gid", id: 1 }),
            "{err}"
        );
    }

    #[test]
    fn annotations() {
        let extra = r#""variant":"v8","os.version":"6.1","os.features":["f1","f2"],
            "author":"me","created":"2024-01-02T03:04:05Z","#;
        let config = r#"{"Cmd":["sh"],"StopSignal":"SIGTERM",
            "ExposedPorts":{"8080/tcp":{},"53/udp":{},"443/tcp":{}},
            "Labels":{"org.opencontainers.image.author":"label wins","x":"y"}}"#;
        let got = run(&image(config, extra), &ConvertOptions::default()).unwrap();
        let p = "org.opencontainers.image.";
        let want: Value = serde_json::from_str(&format!(
            r#"{{"{p}os":"linux","{p}architecture":"amd64","{p}variant":"v8",
            "{p}os.version":"6.1","{p}os.features":"f1,f2","{p}author":"label wins",
            "{p}created":"2024-01-02T03:04:05Z","{p}stopSignal":"SIGTERM",
            "{p}exposedPorts":"443/tcp,53/udp,8080/tcp","x":"y"}}"#
        ))
        .unwrap();
        assert_eq!(got["annotations"], want);

        // Minimal image: only os and architecture.
        let got = ok(r#"{"Cmd":["sh"]}"#);
        assert_eq!(
            got["annotations"],
            json!({format!("{p}os"): "linux", format!("{p}architecture"): "amd64"})
        );

        // Profile annotations are kept unless the image sets the same key.
        let mut profile: Value = serde_json::from_str(DEFAULT_PROFILE).unwrap();
        profile["annotations"] = json!({"keep": "me", "x": "profile"});
        let got = convert(
            &image(config, ""),
            &profile.to_string(),
            AccountFile::Absent,
            AccountFile::Absent,
            &Default::default(),
        )
        .unwrap();
        assert_eq!(got["annotations"]["keep"], "me");
        assert_eq!(got["annotations"]["x"], "y");
    }

    #[test]
    fn volumes_are_listed_not_mounted() {
        let img = image(r#"{"Cmd":["sh"],"Volumes":{"/data":{},"/cache":{}}}"#, "");
        assert_eq!(volumes(&img), ["/cache", "/data"]);
        let got = run(&img, &ConvertOptions::default()).unwrap();
        let profile: Value = serde_json::from_str(DEFAULT_PROFILE).unwrap();
        assert_eq!(got["mounts"], profile["mounts"]);
        assert!(volumes(&image(r#"{"Cmd":["sh"]}"#, "")).is_empty());
    }

    #[test]
    fn bad_inputs() {
        let img = image(r#"{"Cmd":["sh"]}"#, "");
        for profile in ["not json", "[1]", r#"{"process":3}"#, r#"{"root":"x"}"#] {
            let err = convert(
                &img,
                profile,
                AccountFile::Absent,
                AccountFile::Absent,
                &Default::default(),
            )
            .unwrap_err();
            assert!(
                matches!(err, ConvertError::InvalidProfile { .. }),
                "{profile}: {err}"
            );
        }
        let win: ImageConfiguration = serde_json::from_str(
            r#"{"architecture":"amd64","os":"windows","config":{"Cmd":["cmd"]},
                "rootfs":{"type":"layers","diff_ids":[]}}"#,
        )
        .unwrap();
        let err = run(&win, &ConvertOptions::default()).unwrap_err();
        assert!(matches!(err, ConvertError::UnsupportedOs { ref os } if os == "windows"));
    }

    #[test]
    fn deterministic() {
        // Labels, ports and volumes are hash maps in oci-spec: each parse
        // gets a new hash seed, so a missing sort would show up here.
        let config = r#"{"Cmd":["sh"],"User":"app","Env":["Z=1","A=2"],
            "ExposedPorts":{"1/tcp":{},"2/tcp":{},"3/tcp":{},"4/tcp":{},"5/tcp":{}},
            "Labels":{"a":"1","b":"2","c":"3","d":"4","e":"5","f":"6","g":"7"}}"#;
        let bytes = || serde_json::to_vec_pretty(&ok(config)).unwrap();
        let first = bytes();
        for _ in 0..20 {
            assert_eq!(first, bytes());
        }
    }
}
