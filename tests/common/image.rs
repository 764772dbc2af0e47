//! Images described in Rust: layers as lists of tar entries, plus the
//! config fields a Dockerfile would set. Bytes are deterministic (fixed
//! mtimes, fixed `created`), so digests are stable from run to run.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use tar::{EntryType, Header};

use super::sha256_digest;

/// The fixed `created` time of every image unless a test sets another.
pub const DEFAULT_CREATED: &str = "2024-01-01T00:00:00Z";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (level 1: fast, and the output is deterministic).
    Gzip,
    /// zstd (level 3).
    Zstd,
    /// A plain tar.
    None,
}

/// Which family of media types manifests, configs and layers use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Docker image manifest v2 schema 2 / manifest list.
    Docker,
    /// OCI image manifest / image index.
    Oci,
}

impl Format {
    /// Media type of an image manifest.
    pub fn manifest_media_type(self) -> &'static str {
        match self {
            Format::Docker => "application/vnd.docker.distribution.manifest.v2+json",
            Format::Oci => "application/vnd.oci.image.manifest.v1+json",
        }
    }

    /// Media type of a multi-platform index (manifest list).
    pub fn index_media_type(self) -> &'static str {
        match self {
            Format::Docker => "application/vnd.docker.distribution.manifest.list.v2+json",
            Format::Oci => "application/vnd.oci.image.index.v1+json",
        }
    }

    /// Media type of an image config blob.
    pub fn config_media_type(self) -> &'static str {
        match self {
            Format::Docker => "application/vnd.docker.container.image.v1+json",
            Format::Oci => "application/vnd.oci.image.config.v1+json",
        }
    }

    /// Media type of a layer blob (the Docker zstd one is containerd's).
    pub fn layer_media_type(self, compression: Compression) -> &'static str {
        match (self, compression) {
            (Format::Docker, Compression::Gzip) => {
                "application/vnd.docker.image.rootfs.diff.tar.gzip"
            }
            (Format::Docker, Compression::Zstd) => {
                "application/vnd.docker.image.rootfs.diff.tar.zstd"
            }
            (Format::Docker, Compression::None) => "application/vnd.docker.image.rootfs.diff.tar",
            (Format::Oci, Compression::Gzip) => "application/vnd.oci.image.layer.v1.tar+gzip",
            (Format::Oci, Compression::Zstd) => "application/vnd.oci.image.layer.v1.tar+zstd",
            (Format::Oci, Compression::None) => "application/vnd.oci.image.layer.v1.tar",
        }
    }
}

/// An image's platform, as in a config and in an index entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    /// e.g. `linux`.
    pub os: String,
    /// e.g. `amd64`, `arm64`, `arm`.
    pub architecture: String,
    /// e.g. `v7`, `v8`.
    pub variant: Option<String>,
    /// e.g. `10.0.17763.1879` (Windows).
    pub os_version: Option<String>,
}

impl PlatformSpec {
    /// Parses `os/arch` or `os/arch/variant`; panics on anything else.
    pub fn parse(s: &str) -> PlatformSpec {
        let parts: Vec<&str> = s.split('/').collect();
        assert!(
            (2..=3).contains(&parts.len()),
            "platform must be os/arch[/variant]: {s}"
        );
        PlatformSpec {
            os: parts[0].to_string(),
            architecture: parts[1].to_string(),
            variant: parts.get(2).map(|v| v.to_string()),
            os_version: None,
        }
    }

    /// The `platform` object of an index entry.
    pub fn to_json(&self) -> Value {
        let mut platform = json!({ "architecture": self.architecture, "os": self.os });
        if let Some(variant) = &self.variant {
            platform["variant"] = json!(variant);
        }
        if let Some(version) = &self.os_version {
            platform["os.version"] = json!(version);
        }
        platform
    }
}

#[derive(Debug, Clone)]
enum Body {
    File(Vec<u8>),
    Dir,
    Symlink(String),
    Hardlink(String),
    Fifo,
    CharDevice(u32, u32),
    /// Bytes spliced into the tar stream as they are.
    Raw(Vec<u8>),
}

#[derive(Debug, Clone)]
struct Entry {
    path: String,
    body: Body,
    mode: u32,
    uid: u64,
    gid: u64,
    mtime: u64,
    xattrs: Vec<(String, Vec<u8>)>,
}

/// One layer: tar entries in order, and how the blob is compressed.
///
/// Entry methods append an entry; `owner`, `mtime` and `xattr` change the
/// entry added last. Defaults: uid/gid 0, mtime 0, gzip.
#[derive(Debug, Clone)]
pub struct LayerSpec {
    entries: Vec<Entry>,
    verbatim: Option<Vec<u8>>,
    compression: Compression,
    multi_member: bool,
    media_type: Option<String>,
}

impl Default for LayerSpec {
    fn default() -> Self {
        Self::new()
    }
}

impl LayerSpec {
    /// An empty gzip layer.
    pub fn new() -> LayerSpec {
        LayerSpec {
            entries: Vec::new(),
            verbatim: None,
            compression: Compression::Gzip,
            multi_member: false,
            media_type: None,
        }
    }

    /// A layer whose uncompressed tar is exactly `tar` (hand-made, hostile,
    /// truncated, without end-of-archive blocks...).
    pub fn from_tar(tar: impl Into<Vec<u8>>) -> LayerSpec {
        LayerSpec {
            verbatim: Some(tar.into()),
            ..LayerSpec::new()
        }
    }

    /// A regular file.
    pub fn file(self, path: &str, contents: impl AsRef<[u8]>, mode: u32) -> Self {
        self.push(path, Body::File(contents.as_ref().to_vec()), mode)
    }

    /// A directory (written with a trailing slash, as Docker does).
    pub fn dir(self, path: &str, mode: u32) -> Self {
        self.push(path, Body::Dir, mode)
    }

    /// A symlink `path -> target` (target stored verbatim: absolute and `..` allowed).
    pub fn symlink(self, path: &str, target: &str) -> Self {
        self.push(path, Body::Symlink(target.to_string()), 0o777)
    }

    /// A hardlink `path` to the earlier (or lower-layer) entry `target`.
    pub fn hardlink(self, path: &str, target: &str) -> Self {
        self.push(path, Body::Hardlink(target.to_string()), 0o644)
    }

    /// A FIFO.
    pub fn fifo(self, path: &str, mode: u32) -> Self {
        self.push(path, Body::Fifo, mode)
    }

    /// A character device `major:minor`.
    pub fn char_device(self, path: &str, major: u32, minor: u32, mode: u32) -> Self {
        self.push(path, Body::CharDevice(major, minor), mode)
    }

    /// A whiteout for `path`: the empty file `dir/.wh.name`.
    pub fn whiteout(self, path: &str) -> Self {
        let path = path.trim_end_matches('/');
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
        let wh = join(dir, &format!(".wh.{name}"));
        self.push(&wh, Body::File(Vec::new()), 0o644)
    }

    /// An opaque-directory marker `dir/.wh..wh..opq` (`""` for the root).
    pub fn opaque(self, dir: &str) -> Self {
        let wh = join(dir.trim_end_matches('/'), ".wh..wh..opq");
        self.push(&wh, Body::File(Vec::new()), 0o644)
    }

    /// Bytes spliced into the tar stream at this point, unchecked; see
    /// [`raw_entry`] for a header with any name.
    pub fn raw(self, bytes: impl Into<Vec<u8>>) -> Self {
        self.push("", Body::Raw(bytes.into()), 0)
    }

    /// Owner of the entry added last.
    pub fn owner(mut self, uid: u64, gid: u64) -> Self {
        let entry = self.last();
        (entry.uid, entry.gid) = (uid, gid);
        self
    }

    /// Modification time (seconds since the epoch) of the entry added last.
    pub fn mtime(mut self, mtime: u64) -> Self {
        self.last().mtime = mtime;
        self
    }

    /// An extended attribute (a PAX `SCHILY.xattr.` record) on the entry
    /// added last, e.g. `xattr("security.capability", bytes)`.
    pub fn xattr(mut self, name: &str, value: impl AsRef<[u8]>) -> Self {
        let value = value.as_ref().to_vec();
        self.last().xattrs.push((name.to_string(), value));
        self
    }

    /// How the blob is compressed (default gzip).
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Writes the gzip blob as two concatenated gzip members (readers that
    /// stop after the first member lose the second half of the tar).
    pub fn multi_member_gzip(mut self) -> Self {
        self.compression = Compression::Gzip;
        self.multi_member = true;
        self
    }

    /// Overrides the layer's media type in the manifest.
    pub fn media_type(mut self, media_type: &str) -> Self {
        self.media_type = Some(media_type.to_string());
        self
    }

    /// The uncompressed tar, end-of-archive blocks included.
    pub fn tar(&self) -> Vec<u8> {
        if let Some(tar) = &self.verbatim {
            return tar.clone();
        }
        let mut builder = tar::Builder::new(Vec::new());
        for entry in &self.entries {
            append(&mut builder, entry);
        }
        builder.into_inner().expect("finish tar")
    }

    /// The tar, its blob and their digests. Results are cached for the
    /// process: tests push the same busybox layer again and again, and
    /// compressing and hashing it is slow in unoptimised builds.
    pub fn build(&self) -> Arc<BuiltLayer> {
        static CACHE: Mutex<Vec<(Compression, bool, Arc<BuiltLayer>)>> = Mutex::new(Vec::new());
        let tar = self.tar();
        let mut cache = CACHE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let key = (self.compression, self.multi_member);
        let hit = cache
            .iter()
            .find(|(c, m, b)| (*c, *m) == key && b.tar == tar);
        if let Some((_, _, built)) = hit {
            return built.clone();
        }
        let blob = self.compress(&tar);
        let built = Arc::new(BuiltLayer {
            diff_id: sha256_digest(&tar),
            digest: sha256_digest(&blob),
            tar,
            blob,
        });
        cache.push((key.0, key.1, built.clone()));
        built
    }

    fn compress(&self, tar: &[u8]) -> Vec<u8> {
        match self.compression {
            Compression::None => tar.to_vec(),
            Compression::Zstd => zstd::encode_all(tar, 3).expect("zstd"),
            Compression::Gzip if self.multi_member => {
                let (a, b) = tar.split_at(tar.len() / 2);
                [gzip(a), gzip(b)].concat()
            }
            Compression::Gzip => gzip(tar),
        }
    }

    /// The media type the manifest gives this layer.
    pub fn media_type_in(&self, format: Format) -> String {
        let default = format.layer_media_type(self.compression);
        self.media_type
            .clone()
            .unwrap_or_else(|| default.to_string())
    }

    fn push(mut self, path: &str, body: Body, mode: u32) -> Self {
        self.entries.push(Entry {
            path: path.to_string(),
            body,
            mode,
            uid: 0,
            gid: 0,
            mtime: 0,
            xattrs: Vec::new(),
        });
        self
    }

    fn last(&mut self) -> &mut Entry {
        self.entries
            .last_mut()
            .expect("owner/mtime/xattr need an entry before them")
    }
}

/// A layer as bytes: what [`LayerSpec::build`] returns.
#[derive(Debug)]
pub struct BuiltLayer {
    /// The uncompressed tar.
    pub tar: Vec<u8>,
    /// The blob as pushed (compressed as the spec says).
    pub blob: Vec<u8>,
    /// `sha256:` of `tar`.
    pub diff_id: String,
    /// `sha256:` of `blob`.
    pub digest: String,
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() || dir == "." {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).expect("gzip");
    enc.finish().expect("gzip")
}

fn append(builder: &mut tar::Builder<Vec<u8>>, entry: &Entry) {
    let failed = |e: std::io::Error| panic!("tar entry {:?}: {e}", entry.path);
    if let Body::Raw(bytes) = &entry.body {
        builder.get_mut().extend_from_slice(bytes);
        return;
    }
    if !entry.xattrs.is_empty() {
        append_pax(builder, entry);
    }
    let mut header = Header::new_gnu();
    header.set_mode(entry.mode);
    header.set_uid(entry.uid);
    header.set_gid(entry.gid);
    header.set_mtime(entry.mtime);
    header.set_size(0);
    let path = entry.path.as_str();
    match &entry.body {
        Body::File(data) => {
            header.set_entry_type(EntryType::Regular);
            header.set_size(data.len() as u64);
            builder
                .append_data(&mut header, path, data.as_slice())
                .unwrap_or_else(failed);
        }
        Body::Dir => {
            header.set_entry_type(EntryType::Directory);
            let path = format!("{}/", path.trim_end_matches('/'));
            builder
                .append_data(&mut header, path, std::io::empty())
                .unwrap_or_else(failed);
        }
        Body::Symlink(target) | Body::Hardlink(target) => {
            let kind = match entry.body {
                Body::Symlink(_) => EntryType::Symlink,
                _ => EntryType::Link,
            };
            header.set_entry_type(kind);
            builder
                .append_link(&mut header, path, target)
                .unwrap_or_else(failed);
        }
        Body::Fifo | Body::CharDevice(..) => {
            if let Body::CharDevice(major, minor) = entry.body {
                header.set_entry_type(EntryType::Char);
                header.set_device_major(major).unwrap_or_else(failed);
                header.set_device_minor(minor).unwrap_or_else(failed);
            } else {
                header.set_entry_type(EntryType::Fifo);
            }
            builder
                .append_data(&mut header, path, std::io::empty())
                .unwrap_or_else(failed);
        }
        Body::Raw(_) => unreachable!("handled above"),
    }
}

/// A PAX extended header carrying the entry's xattrs, as Go's archive/tar
/// (and so Docker) writes them.
fn append_pax(builder: &mut tar::Builder<Vec<u8>>, entry: &Entry) {
    let mut records = Vec::new();
    for (name, value) in &entry.xattrs {
        records.extend(pax_record(&format!("SCHILY.xattr.{name}"), value));
    }
    let mut header = Header::new_ustar();
    header.set_entry_type(EntryType::XHeader);
    header.set_mode(0o644);
    header.set_size(records.len() as u64);
    let name = format!(
        "PaxHeaders.0/{}",
        entry.path.rsplit('/').next().unwrap_or("")
    );
    header.set_path(&name).expect("pax header name");
    header.set_cksum();
    builder
        .append(&header, records.as_slice())
        .expect("pax header");
}

/// `"<len> key=value\n"` where len counts the whole record, itself included.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let rest = key.len() + value.len() + 3; // space, '=', newline
    let mut len = rest + 1;
    while len != rest + len.to_string().len() {
        len = rest + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

/// One hand-made ustar entry (header plus padded data) with any `name` and
/// `link` bytes, even `../x`, `/abs` or NULs that tar::Builder refuses.
/// Names and links longer than 100 bytes are cut. Feed it to
/// [`LayerSpec::raw`].
pub fn raw_entry(name: &[u8], kind: EntryType, link: &[u8], data: &[u8], mode: u32) -> Vec<u8> {
    let mut header = Header::new_ustar();
    header.set_entry_type(kind);
    header.set_mode(mode);
    header.set_size(data.len() as u64);
    header.set_mtime(0);
    let old = header.as_old_mut();
    let n = name.len().min(old.name.len());
    old.name[..n].copy_from_slice(&name[..n]);
    let l = link.len().min(old.linkname.len());
    old.linkname[..l].copy_from_slice(&link[..l]);
    header.set_cksum();
    let mut out = header.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

/// A closure that edits a JSON document before it is serialised.
pub type JsonEdit = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// An image: layers, format, platform and config fields.
///
/// Defaults: Docker format, `linux/amd64`, `created` = [`DEFAULT_CREATED`],
/// no layers, nothing else set.
#[derive(Clone)]
pub struct ImageSpec {
    /// Layers, lowest first.
    pub layers: Vec<LayerSpec>,
    /// Media type family.
    pub format: Format,
    /// Goes into the config (`os`, `architecture`, `variant`, `os.version`).
    pub platform: PlatformSpec,
    config: BTreeMap<&'static str, Value>,
    author: Option<String>,
    created: Option<String>,
    config_edits: Vec<JsonEdit>,
    manifest_edits: Vec<JsonEdit>,
}

impl Default for ImageSpec {
    fn default() -> Self {
        Self::new()
    }
}

impl ImageSpec {
    /// An empty Docker-format `linux/amd64` image.
    pub fn new() -> ImageSpec {
        ImageSpec {
            layers: Vec::new(),
            format: Format::Docker,
            platform: PlatformSpec::parse("linux/amd64"),
            config: BTreeMap::new(),
            author: None,
            created: Some(DEFAULT_CREATED.to_string()),
            config_edits: Vec::new(),
            manifest_edits: Vec::new(),
        }
    }

    /// Adds a layer on top.
    pub fn layer(mut self, layer: LayerSpec) -> Self {
        self.layers.push(layer);
        self
    }

    /// Docker or OCI media types.
    pub fn format(mut self, format: Format) -> Self {
        self.format = format;
        self
    }

    /// Sets the platform from `os/arch[/variant]`.
    pub fn platform(mut self, platform: &str) -> Self {
        self.platform = PlatformSpec::parse(platform);
        self
    }

    /// `config.Entrypoint`.
    pub fn entrypoint(self, args: &[&str]) -> Self {
        self.set("Entrypoint", json!(args))
    }

    /// `config.Cmd`.
    pub fn cmd(self, args: &[&str]) -> Self {
        self.set("Cmd", json!(args))
    }

    /// Appends `KEY=value` to `config.Env`.
    pub fn env(mut self, key_value: &str) -> Self {
        let env = self.config.entry("Env").or_insert_with(|| json!([]));
        env.as_array_mut()
            .expect("Env is a list")
            .push(json!(key_value));
        self
    }

    /// `config.WorkingDir`.
    pub fn working_dir(self, dir: &str) -> Self {
        self.set("WorkingDir", json!(dir))
    }

    /// `config.User`, in any of its forms (`app`, `1000:1000`, `app:grp`...).
    pub fn user(self, user: &str) -> Self {
        self.set("User", json!(user))
    }

    /// Adds `config.Labels[key] = value`.
    pub fn label(self, key: &str, value: &str) -> Self {
        self.set_in("Labels", key, json!(value))
    }

    /// Adds a `config.ExposedPorts` entry such as `80/tcp`.
    pub fn expose(self, port: &str) -> Self {
        self.set_in("ExposedPorts", port, json!({}))
    }

    /// Adds a `config.Volumes` entry.
    pub fn volume(self, path: &str) -> Self {
        self.set_in("Volumes", path, json!({}))
    }

    /// `config.StopSignal`.
    pub fn stop_signal(self, signal: &str) -> Self {
        self.set("StopSignal", json!(signal))
    }

    /// Top-level `author`.
    pub fn author(mut self, author: &str) -> Self {
        self.author = Some(author.to_string());
        self
    }

    /// Top-level `created` (RFC 3339); `None` leaves it out.
    pub fn created(mut self, created: Option<&str>) -> Self {
        self.created = created.map(str::to_string);
        self
    }

    /// Edits the config JSON just before it is serialised, for odd cases:
    /// `.edit_config(|c| c["rootfs"]["diff_ids"][0] = json!("sha256:00..."))`.
    pub fn edit_config(mut self, edit: impl Fn(&mut Value) + Send + Sync + 'static) -> Self {
        self.config_edits.push(Arc::new(edit));
        self
    }

    /// Edits the manifest JSON just before it is serialised and pushed.
    pub fn edit_manifest(mut self, edit: impl Fn(&mut Value) + Send + Sync + 'static) -> Self {
        self.manifest_edits.push(Arc::new(edit));
        self
    }

    /// The config JSON for layers with these `diff_ids`, edits applied.
    pub fn config_json(&self, diff_ids: &[String]) -> Value {
        let mut config = json!({
            "architecture": self.platform.architecture,
            "os": self.platform.os,
            "config": self.config,
            "rootfs": { "type": "layers", "diff_ids": diff_ids },
        });
        if let Some(variant) = &self.platform.variant {
            config["variant"] = json!(variant);
        }
        if let Some(version) = &self.platform.os_version {
            config["os.version"] = json!(version);
        }
        if let Some(author) = &self.author {
            config["author"] = json!(author);
        }
        if let Some(created) = &self.created {
            config["created"] = json!(created);
        }
        config["history"] = json!(self.history());
        for edit in &self.config_edits {
            edit(&mut config);
        }
        config
    }

    /// Applies the manifest edits.
    pub(crate) fn edit_manifest_json(&self, manifest: &mut Value) {
        for edit in &self.manifest_edits {
            edit(manifest);
        }
    }

    fn history(&self) -> Vec<Value> {
        (0..self.layers.len())
            .map(|i| {
                let mut entry = json!({ "created_by": format!("occystrap test layer {i}") });
                if let Some(created) = &self.created {
                    entry["created"] = json!(created);
                }
                entry
            })
            .collect()
    }

    fn set(mut self, key: &'static str, value: Value) -> Self {
        self.config.insert(key, value);
        self
    }

    fn set_in(mut self, key: &'static str, field: &str, value: Value) -> Self {
        let map = self.config.entry(key).or_insert_with(|| json!({}));
        map[field] = value;
        self
    }
}
