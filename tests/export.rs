//! `export` / `fetch-to-tarfile` against a real registry: the tarball holds
//! exactly the registry's config and verified, uncompressed layers.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::busybox::busybox_image;
use common::cli::{assert_empty, command, fails_with, occystrap, ok, tar_entries};
use common::fake::base64;
use common::image::{Compression, Format, ImageSpec, LayerSpec, PlatformSpec};
use common::push::PushedImage;
use common::registry::Registry;
use serde_json::Value;

/// Check a docker-save tarball against what was pushed.
fn assert_docker_save(path: &Path, pushed: &PushedImage, repo_tag: Option<&str>) {
    let entries = tar_entries(std::fs::File::open(path).unwrap());
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    let m = &manifest[0];
    let config_name = format!(
        "{}.json",
        pushed.config_digest.trim_start_matches("sha256:")
    );
    assert_eq!(m["Config"], config_name.as_str());
    assert_eq!(
        entries[&config_name], pushed.config_bytes,
        "config byte for byte"
    );
    let layers: Vec<&str> = m["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(layers.len(), pushed.layer_tars.len());
    for (name, (tar, diff_id)) in layers
        .iter()
        .zip(pushed.layer_tars.iter().zip(&pushed.diff_ids))
    {
        assert_eq!(
            *name,
            format!("{}/layer.tar", diff_id.trim_start_matches("sha256:"))
        );
        assert_eq!(&entries[*name], tar, "layer {name} is the uncompressed tar");
    }
    let tags: Vec<&str> = m["RepoTags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tags, repo_tag.into_iter().collect::<Vec<_>>());
}

fn mixed_image(format: Format) -> ImageSpec {
    busybox_image()
        .format(format)
        .layer(
            LayerSpec::new()
                .file("etc/zstd", b"zstd layer\n", 0o644)
                .compression(Compression::Zstd),
        )
        .layer(
            LayerSpec::new()
                .file("etc/plain", b"plain layer\n", 0o600)
                .compression(Compression::None),
        )
        .layer(
            LayerSpec::new()
                .file("etc/multi", vec![b'x'; 200_000], 0o644)
                .multi_member_gzip(),
        )
}

#[test]
fn exports_gzip_zstd_uncompressed_and_multi_member_layers() {
    let registry = Registry::start();
    for (format, repo) in [(Format::Docker, "test/docker"), (Format::Oci, "test/oci")] {
        let pushed = registry.push_image(repo, "v1", &mixed_image(format));
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("image.tar");
        let reference = registry.image_ref(repo, "v1");
        ok(&occystrap(&["export", &reference, out.to_str().unwrap()]));
        assert_docker_save(&out, &pushed, Some(&reference));
    }
}

#[test]
fn legacy_fetch_to_tarfile_with_and_without_registry() {
    let registry = Registry::start();
    let pushed = registry.push_image("team/app", "1.0", &busybox_image());
    let dir = tempfile::tempdir().unwrap();
    let with = dir.path().join("with.tar");
    ok(&occystrap(&[
        "fetch-to-tarfile",
        &registry.addr,
        "team/app",
        "1.0",
        with.to_str().unwrap(),
    ]));
    assert_docker_save(&with, &pushed, Some(&registry.image_ref("team/app", "1.0")));
    let without = dir.path().join("without.tar");
    let image = format!("{}/team/app", registry.addr);
    ok(&occystrap(&[
        "fetch-to-tarfile",
        &image,
        "1.0",
        without.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read(&with).unwrap(),
        std::fs::read(&without).unwrap()
    );
}

#[test]
fn digest_references_pin_the_manifest() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/pinned", "", &busybox_image());
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pinned.tar");
    let reference = registry.image_ref("test/pinned", &pushed.manifest_digest);
    ok(&occystrap(&["export", &reference, out.to_str().unwrap()]));
    // A digest reference has no tag to put in RepoTags.
    assert_docker_save(&out, &pushed, None);

    let missing = registry.image_ref(
        "test/pinned",
        "sha256:0000000000000000000000000000000000000000000000000000000000000000",
    );
    let out2 = dir.path().join("missing.tar");
    fails_with(
        &occystrap(&["export", &missing, out2.to_str().unwrap()]),
        3,
        "not found",
    );
    assert!(!out2.exists());
}

/// Five+ platforms in a Docker list and an OCI index, with an attestation.
/// arm64 is listed with its `v8` variant in the Docker list and without a
/// variant in the OCI index (both occur in the wild); the map is keyed by
/// the canonical name either way.
fn push_multi_arch(
    registry: &Registry,
    format: Format,
    repo: &str,
) -> BTreeMap<&'static str, PushedImage> {
    let platforms = [
        "linux/amd64",
        "linux/arm/v6",
        "linux/arm/v7",
        "linux/arm64/v8",
        "linux/386",
        "linux/ppc64le",
    ];
    let mut pushed = BTreeMap::new();
    let mut entries = Vec::new();
    let listed = |p: &'static str| match (p, format) {
        ("linux/arm64/v8", Format::Oci) => "linux/arm64",
        _ => p,
    };
    for p in platforms {
        let image = ImageSpec::new()
            .format(format)
            .platform(listed(p))
            .layer(LayerSpec::new().file("platform", p.as_bytes(), 0o644));
        let img = registry.push_image(repo, "", &image);
        pushed.insert(p, img);
    }
    let attestation = registry.push_attestation(repo, &pushed["linux/amd64"]);
    for p in platforms {
        entries.push((PlatformSpec::parse(listed(p)), &pushed[p]));
    }
    entries.push((PlatformSpec::parse("unknown/unknown"), &attestation));
    registry.push_index(repo, "multi", format, &entries);
    pushed
}

#[test]
fn multi_arch_selects_by_platform() {
    let registry = Registry::start();
    for (format, repo) in [(Format::Docker, "test/list"), (Format::Oci, "test/index")] {
        let pushed = push_multi_arch(&registry, format, repo);
        let reference = registry.image_ref(repo, "multi");
        let dir = tempfile::tempdir().unwrap();
        let cases: &[(&[&str], &str)] = &[
            (&[], "linux/amd64"),
            (&["--platform", "linux/arm/v6"], "linux/arm/v6"),
            (&["--platform", "linux/arm"], "linux/arm/v7"),
            (&["--platform", "linux/arm64"], "linux/arm64/v8"),
            (&["--platform", "linux/aarch64/v8"], "linux/arm64/v8"),
            (&["--platform", "linux/arm64/v8"], "linux/arm64/v8"),
            (
                &["--os", "linux", "--architecture", "arm", "--variant", "v7"],
                "linux/arm/v7",
            ),
            (&["--architecture", "arm64"], "linux/arm64/v8"),
            (&["--architecture", "i386"], "linux/386"),
            (&["--platform", "linux/ppc64le"], "linux/ppc64le"),
        ];
        for (i, (flags, expect)) in cases.iter().enumerate() {
            let out = dir.path().join(format!("{i}.tar"));
            let mut args = flags.to_vec();
            args.extend(["export", &reference, out.to_str().unwrap()]);
            ok(&occystrap(&args));
            assert_docker_save(&out, &pushed[expect], Some(&reference));
        }
        let out = dir.path().join("none.tar");
        let res = occystrap(&[
            "--platform",
            "linux/s390x",
            "export",
            &reference,
            out.to_str().unwrap(),
        ]);
        fails_with(&res, 3, "linux/arm/v6");
        assert!(!String::from_utf8_lossy(&res.stderr).contains("unknown/unknown"));
        assert!(!out.exists());
    }
}

#[test]
fn basic_auth_from_flags_env_and_docker_config() {
    let registry = Registry::start_with_basic_auth("alice", "s3cret");
    let pushed = registry.push_image("private/app", "v1", &busybox_image());
    let reference = registry.image_ref("private/app", "v1");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("a.tar");
    let target = out.to_str().unwrap();

    fails_with(
        &occystrap(&["export", &reference, target]),
        3,
        "authentication",
    );
    assert!(!out.exists());
    let wrong = occystrap(&[
        "--username",
        "alice",
        "--password",
        "nope",
        "export",
        &reference,
        target,
    ]);
    fails_with(&wrong, 3, "authentication");

    ok(&occystrap(&[
        "--username",
        "alice",
        "--password",
        "s3cret",
        "export",
        &reference,
        target,
    ]));
    assert_docker_save(&out, &pushed, Some(&reference));

    let env = common::cli::command()
        .args(["export", &reference, target])
        .env("OCCYSTRAP_USERNAME", "alice")
        .env("OCCYSTRAP_PASSWORD", "s3cret")
        .env("DOCKER_CONFIG", "/nonexistent-occystrap-test")
        .output()
        .unwrap();
    ok(&env);

    let config_dir = tempfile::tempdir().unwrap();
    let auth = base64(b"alice:s3cret");
    std::fs::write(
        config_dir.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            registry.addr
        ),
    )
    .unwrap();
    let from_config = common::cli::command()
        .args(["export", &reference, target])
        .env_remove("OCCYSTRAP_USERNAME")
        .env_remove("OCCYSTRAP_PASSWORD")
        .env("DOCKER_CONFIG", config_dir.path())
        .output()
        .unwrap();
    ok(&from_config);
}

#[test]
fn tampered_blob_in_storage_is_detected_and_nothing_is_left() {
    let registry = Registry::start();
    let image = busybox_image().layer(LayerSpec::new().file("etc/extra", vec![b'e'; 4096], 0o644));
    let pushed = registry.push_image("test/tampered", "v1", &image);
    // Flip one byte in the middle of the second layer's blob (same size).
    let blob = registry.blob_path(&pushed.layer_digests[1]);
    let mut bytes = std::fs::read(&blob).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&blob, bytes).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("t.tar");
    let res = occystrap(&[
        "export",
        &registry.image_ref("test/tampered", "v1"),
        out.to_str().unwrap(),
    ]);
    fails_with(&res, 4, &pushed.layer_digests[1]);
    assert_empty(dir.path());
}

#[test]
fn wrong_diff_id_is_detected() {
    let registry = Registry::start();
    let image = busybox_image().edit_config(|config| {
        config["rootfs"]["diff_ids"][0] =
            "sha256:1111111111111111111111111111111111111111111111111111111111111111".into();
    });
    registry.push_image("test/diffid", "v1", &image);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("d.tar");
    let res = occystrap(&[
        "export",
        &registry.image_ref("test/diffid", "v1"),
        out.to_str().unwrap(),
    ]);
    fails_with(
        &res,
        4,
        "sha256:1111111111111111111111111111111111111111111111111111111111111111",
    );
    assert_empty(dir.path());
}

#[test]
fn layer_count_must_match_diff_ids() {
    let registry = Registry::start();
    let image = busybox_image().edit_config(|config| {
        config["rootfs"]["diff_ids"]
            .as_array_mut()
            .unwrap()
            .push("sha256:2222222222222222222222222222222222222222222222222222222222222222".into());
    });
    registry.push_image("test/count", "v1", &image);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("c.tar");
    let res = occystrap(&[
        "export",
        &registry.image_ref("test/count", "v1"),
        out.to_str().unwrap(),
    ]);
    fails_with(&res, 4, "diff_ids");
    assert_empty(dir.path());
}

#[test]
fn bad_references_are_usage_errors() {
    for bad in ["UPPER/case", "a//b", "busybox:", "busybox@sha256:abc", ""] {
        let res = occystrap(&["export", bad, "/tmp/never-written.tar"]);
        fails_with(&res, 2, "invalid image reference");
    }
}

/// The distribution server re-signs a stored schema1 manifest on the fly,
/// so its body no longer matches the digest it announces: refused as an
/// integrity failure. (A schema1 body served faithfully gets the explicit
/// "schema1 … not supported" error: see the registry module's unit tests.)
#[test]
fn schema1_manifests_are_refused() {
    let registry = Registry::start();
    let schema1 = br#"{"schemaVersion": 1, "name": "test/old", "tag": "v1", "architecture": "amd64", "fsLayers": [], "history": []}"#;
    registry.put_manifest_in_storage("test/old", "v1", schema1);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.tar");
    let res = occystrap(&[
        "export",
        &registry.image_ref("test/old", "v1"),
        out.to_str().unwrap(),
    ]);
    fails_with(&res, 4, "test/old");
    assert_empty(dir.path());
}

#[test]
fn a_device_or_fifo_at_the_output_path_is_refused_untouched() {
    use nix::sys::stat::{Mode, SFlag, makedev, mknod};
    use std::os::unix::fs::FileTypeExt;
    let registry = Registry::start();
    registry.push_image("test/devnull", "v1", &busybox_image());
    let reference = registry.image_ref("test/devnull", "v1");
    // Our own null device and FIFO in a scratch directory (never the real
    // /dev/null: if the check broke, the output would replace it).
    let dir = tempfile::tempdir().unwrap();
    let null = dir.path().join("null");
    mknod(
        &null,
        SFlag::S_IFCHR,
        Mode::from_bits_truncate(0o666),
        makedev(1, 3),
    )
    .unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).unwrap();
    for (target, kind) in [(&null, "device"), (&fifo, "FIFO")] {
        let res = occystrap(&["export", &reference, target.to_str().unwrap()]);
        fails_with(&res, 2, &format!("is a {kind}, not a file"));
    }
    let kind = |p: &Path| std::fs::symlink_metadata(p).unwrap().file_type();
    assert!(kind(&null).is_char_device() && kind(&fifo).is_fifo());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        2,
        "no temporaries"
    );
}

/// containers-auth.json(5): `--authfile` / `REGISTRY_AUTH_FILE`, then
/// `$XDG_RUNTIME_DIR/containers/auth.json`, then
/// `~/.config/containers/auth.json`, then Docker's config; in each, the
/// most specific `host/namespace` key.
#[test]
fn credentials_from_auth_json_files_in_order() {
    let registry = Registry::start_with_basic_auth("alice", "s3cret");
    registry.push_image("private/app", "v1", &busybox_image());
    let reference = registry.image_ref("private/app", "v1");
    let host = &registry.addr;
    let tmp = tempfile::tempdir().unwrap();
    let (home, runtime) = (tmp.path().join("home"), tmp.path().join("run"));
    let write = |path: &Path, json: String| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, json).unwrap();
    };
    let auths = |entries: &[(&str, &str)]| {
        let body: Vec<String> = entries
            .iter()
            .map(|(key, pair)| format!("{key:?}: {{\"auth\": {:?}}}", base64(pair.as_bytes())))
            .collect();
        format!("{{\"auths\": {{{}}}}}", body.join(", "))
    };
    let good = auths(&[(host, "alice:s3cret")]);
    let bad = auths(&[(host, "alice:wrong")]);
    let user_file = home.join(".config/containers/auth.json");
    let runtime_file = runtime.join("containers/auth.json");
    let authfile = tmp.path().join("given.json");
    let run = |extra: &[&str], env: &[(&str, &Path)]| {
        let out = tmp.path().join("out.tar");
        let _ = std::fs::remove_file(&out);
        let mut cmd = command();
        cmd.env("HOME", &home);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.args(extra)
            .args(["export", &reference, out.to_str().unwrap()])
            .output()
            .unwrap()
    };
    let runtime_env: &[(&str, &Path)] = &[("XDG_RUNTIME_DIR", &runtime)];

    write(&user_file, good.clone());
    ok(&run(&[], &[]));
    write(&runtime_file, bad.clone());
    fails_with(&run(&[], runtime_env), 3, "authentication");
    write(&runtime_file, good.clone());
    write(&user_file, bad.clone());
    ok(&run(&[], runtime_env));
    write(&authfile, bad.clone());
    fails_with(
        &run(&["--authfile", authfile.to_str().unwrap()], runtime_env),
        3,
        "authentication",
    );
    fails_with(
        &run(
            &[],
            &[
                ("XDG_RUNTIME_DIR", &runtime),
                ("REGISTRY_AUTH_FILE", &authfile),
            ],
        ),
        3,
        "authentication",
    );
    // The namespace key beats the host key in the same file.
    let scoped = auths(&[
        (host, "alice:wrong"),
        (&format!("{host}/private"), "alice:s3cret"),
    ]);
    write(&authfile, scoped);
    ok(&run(&["--authfile", authfile.to_str().unwrap()], &[]));
}
