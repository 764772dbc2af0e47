//! Image sources other than a registry: docker-archive (ours, skopeo's,
//! `docker save`'s, Docker 25's layout, a directory), OCI layouts and
//! oci-archive (skopeo's). Each bundles to the same tree as the registry
//! image it came from, keeps its image ID, and every broken kind is
//! refused with nothing left behind.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::busybox::busybox_image;
use common::cli::{docker, ensure_dockerd, fails_with, occystrap, ok, run, tar_entries};
use common::image::{Compression, Format, ImageSpec, LayerSpec, PlatformSpec};
use common::push::PushedImage;
use common::registry::Registry;
use common::tree::snapshot;
use serde_json::Value;

fn image() -> ImageSpec {
    busybox_image()
        .cmd(&["echo", "hello"])
        .layer(
            LayerSpec::new()
                .dir("data", 0o755)
                .file("data/a", b"a", 0o640)
                .owner(7, 8)
                .hardlink("data/a-link", "data/a")
                .file("data/gone", b"x", 0o644)
                .compression(Compression::Gzip),
        )
        .layer(
            LayerSpec::new()
                .whiteout("data/gone")
                .file("data/b", b"b", 0o600)
                .xattr("user.note", b"v"),
        )
        .format(Format::Oci)
}

fn skopeo_copy(reference: &str, dest: &str, all: bool) {
    let src = format!("docker://{reference}");
    let mut args = vec!["copy", "--src-tls-verify=false"];
    if all {
        args.push("--all");
    }
    args.extend([src.as_str(), dest]);
    run("skopeo", &args);
}

/// Bundle `name` into `dir` and return the image ID the JSON result gives.
fn bundle(name: &str, dir: &Path) -> String {
    let out = occystrap(&["--format", "json", "bundle", name, dir.to_str().unwrap()]);
    ok(&out);
    let result: Value = serde_json::from_slice(&out.stdout).unwrap();
    result["imageID"].as_str().unwrap().to_string()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

struct Fixture {
    registry: Registry,
    pushed: PushedImage,
    reference: String,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let registry = Registry::start();
        let pushed = registry.push_image("test/app", "v1", &image());
        let reference = registry.image_ref("test/app", "v1");
        Fixture {
            registry,
            pushed,
            reference,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Our export of the registry image: a classic docker-save tarball.
    fn export(&self, name: &str) -> PathBuf {
        let out = self.path(name);
        ok(&occystrap(&["export", &self.reference, s(&out)]));
        out
    }
}

#[test]
fn every_source_bundles_to_the_registrys_tree_with_its_image_id() {
    let f = Fixture::new();
    let expected = snapshot(&{
        let dir = f.path("from-registry");
        assert_eq!(bundle(&f.reference, &dir), f.pushed.config_digest);
        dir.join("rootfs")
    });
    assert_eq!(expected["data/b"].xattrs["user.note"], b"v");

    let ours = f.export("ours.tar");
    let extracted = f.path("extracted");
    ok(&occystrap(&["extract", &f.reference, s(&extracted)]));
    let layout = f.path("layout");
    skopeo_copy(&f.reference, &format!("oci:{}:v1", s(&layout)), false);
    let oci_archive = f.path("oci-archive.tar");
    skopeo_copy(
        &f.reference,
        &format!("oci-archive:{}:v1", s(&oci_archive)),
        false,
    );
    let skopeo_archive = f.path("skopeo-docker.tar");
    skopeo_copy(
        &f.reference,
        &format!("docker-archive:{}:app:v1", s(&skopeo_archive)),
        false,
    );
    let docker25 = docker25_archive(&f, &ours);

    let names = [
        format!("docker-archive:{}", s(&ours)),
        s(&ours).to_string(),
        format!("docker-archive:{}", s(&extracted)),
        format!("oci:{}:v1", s(&layout)),
        format!("oci:{}", s(&layout)),
        s(&layout).to_string(),
        format!("oci-archive:{}:v1", s(&oci_archive)),
        format!("docker-archive:{}:app:v1", s(&skopeo_archive)),
        format!("docker-archive:{}", s(&docker25)),
        s(&docker25).to_string(),
    ];
    let config = std::fs::read(f.path("from-registry/config.json")).unwrap();
    for (i, name) in names.iter().enumerate() {
        let dir = f.path(&format!("b{i}"));
        assert_eq!(bundle(name, &dir), f.pushed.config_digest, "{name}");
        let got = snapshot(&dir.join("rootfs"));
        assert!(got == expected, "{name}: a different tree");
        let got = std::fs::read(dir.join("config.json")).unwrap();
        assert!(got == config, "{name}: a different config.json");
    }
}

/// Docker 25's `docker save`: an OCI layout whose blobs manifest.json
/// names (`blobs/sha256/HEX`), made from our classic export.
fn docker25_archive(f: &Fixture, classic: &Path) -> PathBuf {
    let entries = tar_entries(std::fs::File::open(classic).unwrap());
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    let config_name = manifest[0]["Config"].as_str().unwrap();
    let mut blobs = vec![(
        config_name.trim_end_matches(".json").to_string(),
        entries[config_name].clone(),
    )];
    let mut layers = Vec::new();
    for layer in manifest[0]["Layers"].as_array().unwrap() {
        let bytes = entries[layer.as_str().unwrap()].clone();
        let hex = common::sha256_digest(&bytes)
            .trim_start_matches("sha256:")
            .to_string();
        layers.push(format!("blobs/sha256/{hex}"));
        blobs.push((hex, bytes));
    }
    let out = f.path("docker25.tar");
    let mut builder = tar::Builder::new(std::fs::File::create(&out).unwrap());
    let mut add = |name: &str, data: &[u8]| {
        let mut header = tar::Header::new_ustar();
        header.set_size(data.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, data).unwrap();
    };
    for (hex, bytes) in &blobs {
        add(&format!("blobs/sha256/{hex}"), bytes);
    }
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    add("index.json", br#"{"schemaVersion":2,"manifests":[]}"#);
    let docker_manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", blobs[0].0),
        "RepoTags": ["app:v1"],
        "Layers": layers,
    }]);
    add(
        "manifest.json",
        &serde_json::to_vec(&docker_manifest).unwrap(),
    );
    builder.into_inner().unwrap().flush().unwrap();
    out
}

#[test]
fn docker_save_output_bundles_and_an_archive_exports_with_its_tags() {
    ensure_dockerd();
    let f = Fixture::new();
    let ours = f.export("ours.tar");
    let tag = "occystrap-transports:v1";
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
    docker(&["load", "-i", s(&ours)]);
    docker(&["tag", &f.reference, tag]);
    let saved = f.path("saved.tar");
    docker(&["save", "-o", s(&saved), tag]);
    docker(&["rmi", "-f", tag, &f.reference]);

    let from_registry = f.path("from-registry");
    bundle(&f.reference, &from_registry);
    let from_save = f.path("from-save");
    assert_eq!(
        bundle(&format!("docker-archive:{}", s(&saved)), &from_save),
        f.pushed.config_digest
    );
    assert!(snapshot(&from_registry.join("rootfs")) == snapshot(&from_save.join("rootfs")));

    // Exported again, it keeps the archive's tag.
    let again = f.path("again.tar");
    ok(&occystrap(&[
        "export",
        &format!("docker-archive:{}", s(&saved)),
        s(&again),
    ]));
    let entries = tar_entries(std::fs::File::open(&again).unwrap());
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!([tag]));
}

#[test]
fn a_layout_index_is_resolved_by_platform() {
    let registry = Registry::start();
    let amd = registry.push_image("test/multi", "", &image().platform("linux/amd64"));
    let arm = registry.push_image(
        "test/multi",
        "",
        &image()
            .platform("linux/arm64/v8")
            .layer(LayerSpec::new().file("arm", b"arm", 0o644)),
    );
    registry.push_index(
        "test/multi",
        "v1",
        Format::Oci,
        &[
            (PlatformSpec::parse("linux/amd64"), &amd),
            (PlatformSpec::parse("linux/arm64/v8"), &arm),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    skopeo_copy(
        &registry.image_ref("test/multi", "v1"),
        &format!("oci:{}:multi", s(&layout)),
        true,
    );
    for (platform, pushed) in [("linux/amd64", &amd), ("linux/arm64", &arm)] {
        let out = occystrap(&[
            "--format",
            "json",
            "--platform",
            platform,
            "inspect",
            &format!("oci:{}:multi", s(&layout)),
        ]);
        ok(&out);
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            result["imageID"],
            pushed.config_digest.as_str(),
            "{platform}"
        );
    }
    let out = occystrap(&[
        "--platform",
        "linux/s390x",
        "inspect",
        &format!("oci:{}:multi", s(&layout)),
    ]);
    fails_with(&out, 3, "linux/amd64, linux/arm64");
}

#[test]
fn broken_archives_and_layouts_are_refused_with_nothing_left_behind() {
    let f = Fixture::new();
    let ours = f.export("ours.tar");
    let target = f.path("bundle");
    let refused = |name: &str, code: i32, needle: &str| {
        let out = occystrap(&["bundle", name, s(&target)]);
        fails_with(&out, code, needle);
        assert!(!target.exists(), "{name}: left {}", target.display());
        let out = occystrap(&["export", name, s(&target)]);
        fails_with(&out, code, needle);
        assert!(!target.exists(), "{name}: left {}", target.display());
    };

    // Cut short, inside the last layer.
    let bytes = std::fs::read(&ours).unwrap();
    let cut = f.path("cut.tar");
    std::fs::write(&cut, &bytes[..bytes.len() * 3 / 4]).unwrap();
    refused(&format!("docker-archive:{}", s(&cut)), 4, "truncated");

    // A directory archive whose manifest names a layer that is not there,
    // and one whose layer was changed.
    let extracted = f.path("extracted");
    ok(&occystrap(&["extract", &f.reference, s(&extracted)]));
    let manifest_path = extracted.join("manifest.json");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let mut m: Value = serde_json::from_str(&manifest).unwrap();
    let last = m[0]["Layers"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string();
    m[0]["Layers"][2] = Value::from("nothere/layer.tar");
    std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();
    refused(
        &format!("docker-archive:{}", s(&extracted)),
        4,
        "nothere/layer.tar",
    );
    std::fs::write(&manifest_path, &manifest).unwrap();
    let layer = extracted.join(&last);
    let mut data = std::fs::read(&layer).unwrap();
    let at = data.windows(1).position(|w| w == b"b").unwrap_or(600);
    data[at] ^= 0x20;
    std::fs::write(&layer, &data).unwrap();
    refused(
        &format!("docker-archive:{}", s(&extracted)),
        4,
        "does not match",
    );

    // Not an archive, not a layout, compressed, missing.
    let empty = f.path("empty");
    std::fs::create_dir(&empty).unwrap();
    refused(&format!("oci:{}", s(&empty)), 2, "not an OCI image layout");
    refused(
        &format!("docker-archive:{}", s(&empty)),
        2,
        "not a docker-archive",
    );
    refused(s(&empty), 2, "docker-archive:PATH");
    let gz = f.path("ours.tar.gz");
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&bytes).unwrap();
    std::fs::write(&gz, encoder.finish().unwrap()).unwrap();
    refused(
        &format!("docker-archive:{}", s(&gz)),
        2,
        "decompress it first",
    );
    refused(
        &format!("{}/nothing.tar", s(f.dir.path())),
        2,
        "no such file",
    );
}

#[test]
fn an_archive_of_several_images_needs_one_named() {
    let f = Fixture::new();
    let one = f.path("one");
    ok(&occystrap(&["extract", &f.reference, s(&one)]));
    // A second image in the same directory: the first with another tag.
    let manifest_path = one.join("manifest.json");
    let mut m: Value = serde_json::from_slice(&std::fs::read(&manifest_path).unwrap()).unwrap();
    let mut second = m[0].clone();
    second["RepoTags"] = serde_json::json!(["other/app:v2"]);
    m.as_array_mut().unwrap().push(second);
    std::fs::write(&manifest_path, serde_json::to_vec(&m).unwrap()).unwrap();

    let name = format!("docker-archive:{}", s(&one));
    let out = occystrap(&["inspect", &name]);
    fails_with(&out, 2, "@1 (other/app:v2)");
    for pick in [format!("{name}:@1"), format!("{name}:other/app:v2")] {
        let out = occystrap(&["--format", "json", "inspect", &pick]);
        ok(&out);
        let result: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(result["imageID"], f.pushed.config_digest.as_str(), "{pick}");
    }
    let out = occystrap(&["inspect", &format!("{name}:@2")]);
    fails_with(&out, 3, "has 2 images");
    let out = occystrap(&["inspect", &format!("{name}:nope:v1")]);
    fails_with(&out, 3, "no image of that name");
}

fn index_json(layout: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap()
}

fn blob_count(layout: &Path) -> usize {
    std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .count()
}

fn copy(from: &str, to: &str, extra: &[&str]) -> Value {
    let mut args = vec!["--format", "json", "copy"];
    args.extend(extra);
    args.extend([from, to]);
    let out = occystrap(&args);
    ok(&out);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn copy_into_a_layout_keeps_every_digest_and_adds_to_what_is_there() {
    let f = Fixture::new();
    let layout = f.path("layout");
    let to = format!("oci:{}:v1", s(&layout));
    let result = copy(&f.reference, &to, &[]);
    assert_eq!(result["manifestDigest"], f.pushed.manifest_digest.as_str());
    assert_eq!(result["blobsPresent"], 0);
    let index = index_json(&layout);
    assert_eq!(index["manifests"].as_array().unwrap().len(), 1);
    let entry = &index["manifests"][0];
    assert_eq!(entry["digest"], f.pushed.manifest_digest.as_str());
    assert_eq!(
        entry["annotations"]["org.opencontainers.image.ref.name"],
        "v1"
    );
    // Byte for byte, as another tool reads it.
    let raw = Command::new("skopeo")
        .args(["inspect", "--raw", &to])
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(raw.stdout, f.pushed.manifest_bytes);
    let from_registry = f.path("from-registry");
    bundle(&f.reference, &from_registry);
    let from_layout = f.path("from-layout");
    assert_eq!(bundle(&to, &from_layout), f.pushed.config_digest);
    assert!(snapshot(&from_registry.join("rootfs")) == snapshot(&from_layout.join("rootfs")));

    // A second image shares its blobs; the same name again replaces.
    let blobs = blob_count(&layout);
    let ours = f.export("ours.tar");
    let result = copy(
        &format!("docker-archive:{}", s(&ours)),
        &format!("oci:{}:v2", s(&layout)),
        &[],
    );
    assert_eq!(result["blobsPresent"], 1, "the config is shared: {result}");
    assert_eq!(
        index_json(&layout)["manifests"].as_array().unwrap().len(),
        2
    );
    let result = copy(&f.reference, &to, &[]);
    assert_eq!(result["blobsWritten"], 0, "{result}");
    assert_eq!(
        index_json(&layout)["manifests"].as_array().unwrap().len(),
        2
    );
    assert!(blob_count(&layout) > blobs);
    let from_v2 = f.path("from-v2");
    assert_eq!(
        bundle(&format!("oci:{}:v2", s(&layout)), &from_v2),
        f.pushed.config_digest
    );
    assert!(snapshot(&from_registry.join("rootfs")) == snapshot(&from_v2.join("rootfs")));

    // oci-archive and docker-archive destinations.
    let archive = f.path("app.tar");
    copy(&to, &format!("oci-archive:{}:v1", s(&archive)), &[]);
    let from_archive = f.path("from-archive");
    assert_eq!(
        bundle(&format!("oci-archive:{}:v1", s(&archive)), &from_archive),
        f.pushed.config_digest
    );
    let saved = f.path("saved.tar");
    copy(
        &to,
        &format!("docker-archive:{}:team/app:v9", s(&saved)),
        &[],
    );
    let entries = tar_entries(std::fs::File::open(&saved).unwrap());
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    assert_eq!(manifest[0]["RepoTags"], serde_json::json!(["team/app:v9"]));
}

#[test]
fn copy_all_keeps_an_index_whole() {
    let registry = Registry::start();
    let amd = registry.push_image("test/multi", "", &image().platform("linux/amd64"));
    let arm = registry.push_image("test/multi", "", &image().platform("linux/arm64/v8"));
    let index_digest = registry.push_index(
        "test/multi",
        "v1",
        Format::Oci,
        &[
            (PlatformSpec::parse("linux/amd64"), &amd),
            (PlatformSpec::parse("linux/arm64/v8"), &arm),
        ],
    );
    let reference = registry.image_ref("test/multi", "v1");
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let result = copy(&reference, &format!("oci:{}:multi", s(&layout)), &["--all"]);
    assert_eq!(result["manifestDigest"], index_digest.as_str());
    assert_eq!(result["images"], 2);
    for (platform, pushed) in [("linux/amd64", &amd), ("linux/arm64", &arm)] {
        let out = occystrap(&[
            "--format",
            "json",
            "--platform",
            platform,
            "inspect",
            &format!("oci:{}:multi", s(&layout)),
        ]);
        ok(&out);
        let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(inspected["indexDigest"], index_digest.as_str());
        assert_eq!(inspected["imageID"], pushed.config_digest.as_str());
    }
    // Recompressed: a new index over new manifests, the same images.
    let zstd = dir.path().join("zstd");
    let result = copy(
        &reference,
        &format!("oci:{}:multi", s(&zstd)),
        &["--all", "--dest-compress", "zstd"],
    );
    assert_ne!(result["manifestDigest"], index_digest.as_str());
    for (platform, pushed) in [("linux/amd64", &amd), ("linux/arm64", &arm)] {
        let out = occystrap(&[
            "--format",
            "json",
            "--platform",
            platform,
            "inspect",
            &format!("oci:{}:multi", s(&zstd)),
        ]);
        ok(&out);
        let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(inspected["indexDigest"], result["manifestDigest"]);
        assert_eq!(inspected["imageID"], pushed.config_digest.as_str());
        assert_eq!(
            inspected["layers"][0]["mediaType"],
            "application/vnd.oci.image.layer.v1.tar+zstd"
        );
    }
    // Without --all: the platform's image alone, its platform recorded.
    let single = dir.path().join("single");
    let result = copy(
        &reference,
        &format!("oci:{}", s(&single)),
        &["--platform", "linux/arm64"],
    );
    assert_eq!(result["manifestDigest"], arm.manifest_digest.as_str());
    let entry = &index_json(&single)["manifests"][0];
    assert_eq!(entry["platform"]["architecture"], "arm64");
}

#[test]
fn a_failed_copy_leaves_a_layout_as_it_was() {
    let f = Fixture::new();
    let layout = f.path("layout");
    copy(&f.reference, &format!("oci:{}:v1", s(&layout)), &[]);
    let before = std::fs::read(layout.join("index.json")).unwrap();
    let blobs = blob_count(&layout);
    // A source whose last layer was changed, copied in under another name.
    let extracted = f.path("extracted");
    ok(&occystrap(&["extract", &f.reference, s(&extracted)]));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(extracted.join("manifest.json")).unwrap()).unwrap();
    let last = extracted.join(manifest[0]["Layers"][2].as_str().unwrap());
    let mut data = std::fs::read(&last).unwrap();
    let at = data.len() - 1100;
    data[at] ^= 1;
    std::fs::write(&last, &data).unwrap();
    let from = format!("docker-archive:{}", s(&extracted));
    let out = occystrap(&["copy", &from, &format!("oci:{}:broken", s(&layout))]);
    fails_with(&out, 4, "does not match");
    assert_eq!(std::fs::read(layout.join("index.json")).unwrap(), before);
    assert_eq!(blob_count(&layout), blobs, "the blobs it added are gone");
    let fresh = f.path("fresh");
    let out = occystrap(&["copy", &from, &format!("oci:{}", s(&fresh))]);
    fails_with(&out, 4, "does not match");
    assert!(!fresh.exists());
    // Not a layout: refused, untouched.
    let out = occystrap(&["copy", &f.reference, &format!("oci:{}", s(&extracted))]);
    fails_with(&out, 2, "not an OCI image layout");
    let out = occystrap(&[
        "--retries",
        "0",
        "copy",
        &f.reference,
        "docker://localhost:1/x",
    ]);
    fails_with(&out, 5, "localhost:1/x");
}

#[test]
fn the_local_engine_is_a_source() {
    ensure_dockerd();
    let f = Fixture::new();
    let ours = f.export("ours.tar");
    let tag = "occystrap-daemon:v1";
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
    docker(&["load", "-i", s(&ours)]);
    docker(&["tag", &f.reference, tag]);
    let from_registry = f.path("from-registry");
    bundle(&f.reference, &from_registry);
    for name in [
        format!("docker-daemon:{tag}"),
        format!("docker-daemon:docker.io/library/{tag}"),
        format!("docker-daemon:{}", f.pushed.config_digest),
    ] {
        let dir = f.path(&format!("b-{}", name.len()));
        assert_eq!(bundle(&name, &dir), f.pushed.config_digest, "{name}");
        assert!(snapshot(&from_registry.join("rootfs")) == snapshot(&dir.join("rootfs")));
    }
    let out = occystrap(&["inspect", "docker-daemon:occystrap-daemon:absent"]);
    fails_with(&out, 3, "occystrap-daemon:absent");
    docker(&["rmi", "-f", tag, &f.reference]);

    let out = common::cli::command()
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .args(["inspect", "docker-daemon:busybox"])
        .output()
        .unwrap();
    fails_with(&out, 5, "/nonexistent/docker.sock");
    assert!(common::cli::stderr(&out).contains("is dockerd"));
}

#[test]
fn copy_into_the_engine_streams_a_load_and_loads_nothing_broken() {
    ensure_dockerd();
    let registry = Registry::start();
    // gzip and zstd layers: the engine takes the first as is; the second
    // is decompressed for engines that cannot.
    let image = image().layer(
        LayerSpec::new()
            .file("zstd-file", b"z", 0o644)
            .compression(Compression::Zstd),
    );
    let pushed = registry.push_image("test/load", "v1", &image);
    let reference = registry.image_ref("test/load", "v1");
    let tag = "occystrap-load:v1";
    let _ = Command::new("docker").args(["rmi", "-f", tag]).output();
    copy(&reference, &format!("docker-daemon:{tag}"), &[]);
    let id = docker(&["image", "inspect", "--format", "{{.Id}}", tag]);
    assert_eq!(id.trim(), pushed.config_digest, "the registry's image ID");
    let ran = docker(&[
        "run",
        "--rm",
        "--network",
        "none",
        tag,
        "cat",
        "/data/b",
        "/zstd-file",
    ]);
    assert_eq!(ran, "bz");
    docker(&["rmi", "-f", tag]);

    // A layer that fails its check half way: the engine gets no image.
    let dir = tempfile::tempdir().unwrap();
    let extracted = dir.path().join("extracted");
    ok(&occystrap(&["extract", &reference, s(&extracted)]));
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(extracted.join("manifest.json")).unwrap()).unwrap();
    let last = extracted.join(manifest[0]["Layers"][3].as_str().unwrap());
    let mut data = std::fs::read(&last).unwrap();
    let at = data.len() - 1100;
    data[at] ^= 1;
    std::fs::write(&last, &data).unwrap();
    let broken = "occystrap-load:broken";
    let out = occystrap(&[
        "copy",
        &format!("docker-archive:{}", s(&extracted)),
        &format!("docker-daemon:{broken}"),
    ]);
    fails_with(&out, 4, "does not match");
    let listed = docker(&["images", "-q", broken]);
    assert!(listed.trim().is_empty(), "loaded: {listed}");
    let out = occystrap(&[
        "copy",
        &reference,
        "docker-daemon:sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ]);
    fails_with(&out, 2, "docker-daemon:NAME:TAG");
}

#[test]
fn copy_pushes_to_a_registry_with_digests_kept_and_nothing_broken_tagged() {
    let f = Fixture::new();
    let mirror = Registry::start();

    // Registry to registry: the same manifest, byte for byte.
    let to = mirror.image_ref("mirror/app", "v1");
    let result = copy(&f.reference, &format!("docker://{to}"), &[]);
    assert_eq!(result["manifestDigest"], f.pushed.manifest_digest.as_str());
    let served = mirror.get(
        "/v2/mirror/app/manifests/v1",
        Some(&f.pushed.manifest_media_type),
    );
    assert_eq!(served.status, 200);
    assert_eq!(served.body, f.pushed.manifest_bytes);
    let again = copy(&f.reference, &format!("docker://{to}"), &[]);
    assert_eq!(again["blobsWritten"], 0, "the registry had them: {again}");
    let dir = f.path("from-mirror");
    assert_eq!(bundle(&to, &dir), f.pushed.config_digest);

    // Within one registry, blobs are mounted from the source repository.
    let sibling = f.reference.replace("test/app:v1", "test/sibling:v1");
    let mounted = copy(&f.reference, &sibling, &[]);
    assert_eq!(mounted["blobsWritten"], 0, "mounted: {mounted}");
    assert_eq!(bundle(&sibling, &f.path("sibling")), f.pushed.config_digest);

    // An archive carried in, pushed: it bundles from there as it was.
    let ours = f.export("ours.tar");
    let carried = mirror.image_ref("carried/app", "v1");
    copy(&format!("docker-archive:{}", s(&ours)), &carried, &[]);
    let from_carried = f.path("from-carried");
    assert_eq!(bundle(&carried, &from_carried), f.pushed.config_digest);
    assert!(snapshot(&dir.join("rootfs")) == snapshot(&from_carried.join("rootfs")));

    // A layer whose blob is sound but whose diff_id is not what the
    // config says: no tag, and not even the blob reaches the registry.
    let lying = image().edit_config(|c| {
        c["rootfs"]["diff_ids"][2] = Value::from(format!("sha256:{}", "0".repeat(64)));
    });
    let pushed = f.registry.push_image("test/lying", "v1", &lying);
    let broken = mirror.image_ref("broken/app", "v1");
    let out = occystrap(&["copy", &f.registry.image_ref("test/lying", "v1"), &broken]);
    fails_with(&out, 4, "diff_id");
    let tag = mirror.get(
        "/v2/broken/app/manifests/v1",
        Some(&pushed.manifest_media_type),
    );
    assert_eq!(tag.status, 404, "tagged anyway");
    let blob = mirror.get(
        &format!("/v2/broken/app/blobs/{}", pushed.layer_digests[2]),
        None,
    );
    assert_eq!(
        blob.status, 404,
        "the failed layer's blob reached the registry"
    );
    // The control: blobs did go up (the config, first), so the 404 above
    // is the held-back layer's.
    let sound = mirror.get(
        &format!("/v2/broken/app/blobs/{}", pushed.config_digest),
        None,
    );
    assert_eq!(sound.status, 200, "the control: the config did");
}

#[test]
fn copy_all_pushes_an_index_whole() {
    let registry = Registry::start();
    let amd = registry.push_image("test/multi", "", &image().platform("linux/amd64"));
    let arm = registry.push_image("test/multi", "", &image().platform("linux/arm64/v8"));
    let index_digest = registry.push_index(
        "test/multi",
        "v1",
        Format::Oci,
        &[
            (PlatformSpec::parse("linux/amd64"), &amd),
            (PlatformSpec::parse("linux/arm64/v8"), &arm),
        ],
    );
    let mirror = Registry::start();
    let to = mirror.image_ref("mirror/multi", "v1");
    let result = copy(&registry.image_ref("test/multi", "v1"), &to, &["--all"]);
    assert_eq!(result["manifestDigest"], index_digest.as_str());
    for (platform, pushed) in [("linux/amd64", &amd), ("linux/arm64", &arm)] {
        let out = occystrap(&["--format", "json", "--platform", platform, "inspect", &to]);
        ok(&out);
        let inspected: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(inspected["indexDigest"], index_digest.as_str());
        assert_eq!(inspected["manifestDigest"], pushed.manifest_digest.as_str());
    }
}

#[test]
fn copy_can_recompress_reproducibly_keeping_image_ids() {
    let f = Fixture::new();
    let from_registry = f.path("from-registry");
    bundle(&f.reference, &from_registry);
    let expected = snapshot(&from_registry.join("rootfs"));
    let mut digests = Vec::new();
    for run in ["a", "b"] {
        let layout = f.path(run);
        let to = format!("oci:{}:v1", s(&layout));
        let result = copy(&f.reference, &to, &["--dest-compress", "zstd"]);
        let digest = result["manifestDigest"].as_str().unwrap().to_string();
        assert_ne!(digest, f.pushed.manifest_digest, "a new manifest");
        let blob = layout
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        let manifest: Value = serde_json::from_slice(&std::fs::read(blob).unwrap()).unwrap();
        for layer in manifest["layers"].as_array().unwrap() {
            assert_eq!(
                layer["mediaType"],
                "application/vnd.oci.image.layer.v1.tar+zstd"
            );
        }
        assert_eq!(
            manifest["config"]["digest"],
            f.pushed.config_digest.as_str()
        );
        let dir = f.path(&format!("bundle-{run}"));
        assert_eq!(
            bundle(&to, &dir),
            f.pushed.config_digest,
            "the same image ID"
        );
        assert!(snapshot(&dir.join("rootfs")) == expected);
        digests.push(digest);
    }
    assert_eq!(digests[0], digests[1], "the same bytes twice");

    // Uncompressed, pushed to a registry.
    let mirror = Registry::start();
    let to = mirror.image_ref("plain/app", "v1");
    copy(&f.reference, &to, &["--dest-compress", "none"]);
    let dir = f.path("from-plain");
    assert_eq!(bundle(&to, &dir), f.pushed.config_digest);
    assert!(snapshot(&dir.join("rootfs")) == expected);

    // Docker's manifests have no zstd layers.
    let docker = f
        .registry
        .push_image("test/docker", "v1", &image().format(Format::Docker));
    let out = occystrap(&[
        "copy",
        "--dest-compress",
        "zstd",
        &f.registry.image_ref("test/docker", "v1"),
        &format!("oci:{}", s(&f.path("refused"))),
    ]);
    fails_with(&out, 2, "OCI manifests");
    assert!(!f.path("refused").exists());
    let gz = copy(
        &f.registry.image_ref("test/docker", "v1"),
        &format!("oci:{}", s(&f.path("docker-gzip"))),
        &["--dest-compress", "gzip"],
    );
    assert_eq!(
        gz["manifestDigest"],
        docker.manifest_digest.as_str(),
        "gzip already: unchanged"
    );
}

#[test]
fn umoci_reads_our_layouts_and_we_read_umocis() {
    let f = Fixture::new();
    // Ours, read by umoci: the same tree as our bundle.
    let layout = f.path("ours");
    copy(&f.reference, &format!("oci:{}:v1", s(&layout)), &[]);
    let theirs = f.path("umoci-unpacked");
    run(
        "umoci",
        &[
            "unpack",
            "--image",
            &format!("{}:v1", s(&layout)),
            s(&theirs),
        ],
    );
    let ours = f.path("ours-bundle");
    bundle(&format!("oci:{}:v1", s(&layout)), &ours);
    let (a, b) = (
        snapshot(&ours.join("rootfs")),
        snapshot(&theirs.join("rootfs")),
    );
    assert!(a == b, "umoci unpacked another tree from our layout");

    // Theirs, read by us: a layer umoci made (repack of a changed tree).
    let made = f.path("umoci-layout");
    run("umoci", &["init", "--layout", s(&made)]);
    run("umoci", &["new", "--image", &format!("{}:t", s(&made))]);
    let work = f.path("umoci-work");
    run(
        "umoci",
        &["unpack", "--image", &format!("{}:t", s(&made)), s(&work)],
    );
    std::fs::create_dir_all(work.join("rootfs/etc")).unwrap();
    std::fs::write(work.join("rootfs/etc/made-by"), b"umoci\n").unwrap();
    std::os::unix::fs::symlink("made-by", work.join("rootfs/etc/link")).unwrap();
    run(
        "umoci",
        &["repack", "--image", &format!("{}:t", s(&made)), s(&work)],
    );
    run(
        "umoci",
        &[
            "config",
            "--image",
            &format!("{}:t", s(&made)),
            "--config.cmd",
            "/etc/made-by",
        ],
    );
    let from_umoci = f.path("from-umoci");
    bundle(&format!("oci:{}:t", s(&made)), &from_umoci);
    let check = f.path("umoci-check");
    run(
        "umoci",
        &["unpack", "--image", &format!("{}:t", s(&made)), s(&check)],
    );
    let (a, b) = (
        snapshot(&from_umoci.join("rootfs")),
        snapshot(&check.join("rootfs")),
    );
    assert!(a == b, "we unpacked another tree from umoci's layout");
    assert_eq!(
        std::fs::read(from_umoci.join("rootfs/etc/made-by")).unwrap(),
        b"umoci\n"
    );
}

#[test]
fn skopeo_reads_what_we_push() {
    let f = Fixture::new();
    let mirror = Registry::start();
    let to = mirror.image_ref("mirror/app", "v1");
    copy(&f.reference, &to, &[]);
    let layout = f.path("skopeo-copy");
    skopeo_copy(&to, &format!("oci:{}:v1", s(&layout)), false);
    let dir = f.path("from-skopeo");
    assert_eq!(
        bundle(&format!("oci:{}:v1", s(&layout)), &dir),
        f.pushed.config_digest
    );
    let raw = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{to}"),
        ])
        .output()
        .unwrap();
    assert!(
        raw.status.success(),
        "{}",
        String::from_utf8_lossy(&raw.stderr)
    );
    assert_eq!(raw.stdout, f.pushed.manifest_bytes);
}
