//! `extract` / `fetch-to-extracted` / `recreate-image` against a real
//! registry: plain directories equal the docker-save tarball and load in a
//! real Docker engine; shared directories store each layer once, survive
//! tampering and concurrent writers; `--expand` builds the bundle's rootfs.
//! Needs root and Debian's docker.io; dockerd is started if not running.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::busybox::busybox_image;
use common::cli::{docker_load_and_run, ensure_dockerd, fails_with, occystrap, ok, tar_entries};
use common::fake::FakeServer;
use common::image::{Compression, ImageSpec, LayerSpec};
use common::registry::Registry;
use common::sha256_digest;
use common::tree::snapshot;
use nix::fcntl::{Flock, FlockArg};
use serde_json::Value;

fn s(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn hex(digest: &str) -> &str {
    digest.trim_start_matches("sha256:")
}

/// An app image: the shared busybox layer plus one zstd layer of its own.
fn app(name: &str) -> ImageSpec {
    busybox_image()
        .layer(
            LayerSpec::new()
                .file("etc/app", format!("{name}\n"), 0o644)
                .compression(Compression::Zstd),
        )
        .cmd(&["cat", "/etc/app"])
}

/// `export` of `reference`: the reference tarball every directory must match.
fn exported(reference: &str, dir: &Path) -> Vec<u8> {
    let path = dir.join(format!(
        "export-{}.tar",
        sha256_digest(reference.as_bytes())
    ));
    ok(&occystrap(&["export", reference, s(&path)]));
    fs::read(path).unwrap()
}

/// A directory in the same form as [`tar_entries`].
fn dir_entries(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                out.insert(format!("{name}/"), Vec::new());
                pending.push(path);
            } else {
                out.insert(name, fs::read(&path).unwrap());
            }
        }
    }
    out
}

/// Names under `dir` that look like occystrap's temporaries (not
/// following symlinks, not reading files: expanded trees hold FIFOs).
fn temporaries(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for entry in fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains("occystrap") {
                found.push(entry.path());
            }
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            }
        }
    }
    found
}

fn catalog(dir: &Path) -> Value {
    serde_json::from_slice(&fs::read(dir.join("catalog.json")).unwrap()).unwrap()
}

fn manifest_stem(reference_repo: &str, tag: &str) -> String {
    format!("manifest-{}-{tag}", reference_repo.replace('/', "_"))
}

// --- Docker --------------------------------------------------------------

// --- Plain directories ---------------------------------------------------

#[test]
fn plain_directory_is_the_docker_save_tarball_and_loads() {
    ensure_dockerd();
    let registry = Registry::start();
    let image = app("plain").layer(
        LayerSpec::new()
            .file("etc/raw", b"uncompressed\n", 0o600)
            .compression(Compression::None),
    );
    let pushed = registry.push_image("test/plain", "v1", &image);
    let reference = registry.image_ref("test/plain", "v1");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("plain");
    ok(&occystrap(&[
        "fetch-to-extracted",
        &registry.addr,
        "test/plain",
        "v1",
        s(&dir),
    ]));

    // Exactly the tarball's entries, byte for byte.
    let expected = tar_entries(&exported(&reference, tmp.path())[..]);
    assert_eq!(dir_entries(&dir), expected);
    assert!(
        dir.join(format!("{}.json", hex(&pushed.config_digest)))
            .is_file()
    );

    // Tarred as the issue shows, it loads with the registry's image ID.
    let tarball = tmp.path().join("plain.tar");
    let tarred = Command::new("sh")
        .arg("-c")
        .arg("tar -cf ../plain.tar *")
        .current_dir(&dir)
        .status()
        .unwrap();
    assert!(tarred.success());
    docker_load_and_run(&tarball, &reference, &pushed.config_digest, "plain\n");

    // The modern form writes the same thing; an existing DIR is refused
    // unless --force, which replaces it whole.
    let modern = tmp.path().join("modern");
    ok(&occystrap(&["extract", &reference, s(&modern)]));
    assert_eq!(dir_entries(&modern), expected);
    fs::write(modern.join("stale"), b"x").unwrap();
    fails_with(
        &occystrap(&["extract", &reference, s(&modern)]),
        2,
        "already exists",
    );
    assert!(modern.join("stale").exists(), "refused means untouched");
    ok(&occystrap(&["extract", "--force", &reference, s(&modern)]));
    assert_eq!(dir_entries(&modern), expected);

    // A failure leaves nothing behind.
    let missing = tmp.path().join("missing");
    fails_with(
        &occystrap(&[
            "extract",
            &registry.image_ref("test/plain", "nope"),
            s(&missing),
        ]),
        3,
        "not found",
    );
    assert!(!missing.exists());
    assert!(
        temporaries(tmp.path()).is_empty(),
        "{:?}",
        temporaries(tmp.path())
    );
}

// --- Shared directories --------------------------------------------------

#[test]
fn shared_directory_stores_layers_once_and_recreates_each_image() {
    ensure_dockerd();
    let registry = Registry::start();
    let a1 = registry.push_image("test/a", "v1", &app("a"));
    let a2 = registry.push_image("test/a", "v2", &app("a"));
    let b1 = registry.push_image("team/b", "v1", &app("b"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("merged_images");
    let images = [
        ("test/a", "v1", &a1),
        ("test/a", "v2", &a2),
        ("team/b", "v1", &b1),
    ];
    for (i, (repo, tag, _)) in images.iter().enumerate() {
        // Both forms, both spellings of the flag.
        let out = if i % 2 == 0 {
            occystrap(&[
                "fetch-to-extracted",
                "--use-unique-names",
                &registry.addr,
                repo,
                tag,
                s(&dir),
            ])
        } else {
            occystrap(&[
                "extract",
                "--unique-names",
                &registry.image_ref(repo, tag),
                s(&dir),
            ])
        };
        ok(&out);
    }

    // Each layer and config stored once.
    let busybox = hex(&a1.diff_ids[0]);
    assert_eq!(
        busybox,
        hex(&b1.diff_ids[0]),
        "the images share a base layer"
    );
    let layer_dirs: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 64)
        .collect();
    assert_eq!(layer_dirs.len(), 3, "{layer_dirs:?}");
    for p in [&a1, &b1] {
        for d in &p.diff_ids {
            let tar = fs::read(dir.join(hex(d)).join("layer.tar")).unwrap();
            assert_eq!(sha256_digest(&tar), *d);
        }
    }
    let configs = fs::read_dir(&dir)
        .unwrap()
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.ends_with(".json") && n.len() == 69
        })
        .count();
    assert_eq!(configs, 2, "a:v1 and a:v2 share one config");

    // The catalog: image → tag → manifest file, config and layers.
    let cat = catalog(&dir);
    assert_eq!(cat.as_object().unwrap().len(), 2, "{cat:#}");
    for (repo, tag, pushed) in images {
        let name = format!("{}/{repo}", registry.addr);
        let entry = &cat[&name][tag];
        let manifest_file = format!("{}.json", manifest_stem(&name, tag));
        assert_eq!(entry["manifest"], manifest_file.as_str(), "{cat:#}");
        assert_eq!(
            entry["config"],
            format!("{}.json", hex(&pushed.config_digest)).as_str()
        );
        let layers: Vec<String> = pushed
            .diff_ids
            .iter()
            .map(|d| format!("{}/layer.tar", hex(d)))
            .collect();
        assert_eq!(entry["layers"], serde_json::json!(layers));
        assert_eq!(entry["manifest_digest"], pushed.manifest_digest.as_str());
        let manifest: Value =
            serde_json::from_slice(&fs::read(dir.join(&manifest_file)).unwrap()).unwrap();
        assert_eq!(
            manifest[0]["RepoTags"],
            serde_json::json!([registry.image_ref(repo, tag)])
        );
    }

    // Each image comes back as exactly its export, and loads.
    for (repo, tag, pushed) in images {
        let reference = registry.image_ref(repo, tag);
        let out = tmp
            .path()
            .join(format!("{}-{tag}.tar", repo.replace('/', "_")));
        let name = format!("{}/{repo}", registry.addr);
        ok(&occystrap(&[
            "recreate-image",
            s(&dir),
            &name,
            tag,
            s(&out),
        ]));
        assert_eq!(
            fs::read(&out).unwrap(),
            exported(&reference, tmp.path()),
            "{reference}"
        );
        let expect = if repo == "test/a" { "a\n" } else { "b\n" };
        docker_load_and_run(&out, &reference, &pushed.config_digest, expect);
    }

    // Unknown image or tag: exit 3, and the catalog's contents listed.
    let out = tmp.path().join("unknown.tar");
    let a = format!("{}/test/a", registry.addr);
    let unknown = occystrap(&["recreate-image", s(&dir), &a, "v9", s(&out)]);
    fails_with(&unknown, 3, &format!("{a}:v9: not in"));
    fails_with(
        &unknown,
        3,
        &format!("{}/team/b:v1, {a}:v1, {a}:v2", registry.addr),
    );
    fails_with(
        &occystrap(&["recreate-image", s(&dir), "nothing/here", "v1", s(&out)]),
        3,
        "it has:",
    );
    assert!(!out.exists());
    assert!(
        temporaries(tmp.path()).is_empty(),
        "{:?}",
        temporaries(tmp.path())
    );
}

/// Blob GETs the fake server forwarded for `digest`.
fn blob_gets(fake: &FakeServer, digest: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with(&format!("/blobs/{digest}")))
        .count()
}

#[test]
fn tampered_shared_layers_are_detected_and_fetched_again() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/t", "v1", &app("t"));
    let fake = FakeServer::in_front_of(&registry);
    let reference = fake.image_ref("test/t", "v1");
    let name = format!("{}/test/t", fake.addr);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    let extract = || occystrap(&["extract", "--use-unique-names", &reference, s(&dir)]);
    ok(&extract());
    let fetches = |i: usize| blob_gets(&fake, &pushed.layer_digests[i]);
    assert_eq!((fetches(0), fetches(1)), (1, 1));

    // Intact layers are verified and reused, not downloaded again.
    ok(&extract());
    assert_eq!((fetches(0), fetches(1)), (1, 1));

    // Damage both layers (one flipped byte, one truncation) and the config.
    let base = dir.join(hex(&pushed.diff_ids[0])).join("layer.tar");
    let top = dir.join(hex(&pushed.diff_ids[1])).join("layer.tar");
    let mut bytes = fs::read(&top).unwrap();
    bytes[600] ^= 0x20;
    fs::write(&top, bytes).unwrap();
    let len = fs::metadata(&base).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&base)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let config = dir.join(format!("{}.json", hex(&pushed.config_digest)));
    fs::write(&config, b"{}").unwrap();

    // recreate-image refuses to copy damaged content.
    let out = tmp.path().join("t.tar");
    let refused = occystrap(&["recreate-image", s(&dir), &name, "v1", s(&out)]);
    fails_with(&refused, 4, "does not match");
    assert!(!out.exists());
    fs::write(&config, &pushed.config_bytes).unwrap();
    fails_with(
        &occystrap(&["recreate-image", s(&dir), &name, "v1", s(&out)]),
        4,
        hex(&pushed.diff_ids[0]),
    );
    fs::write(&config, b"{}").unwrap();

    // Extracting again replaces what is damaged, and only that.
    let repaired = extract();
    ok(&repaired);
    let stderr = String::from_utf8_lossy(&repaired.stderr);
    assert!(stderr.contains("fetching it again"), "{stderr}");
    assert_eq!((fetches(0), fetches(1)), (2, 2));
    assert_eq!(sha256_digest(&fs::read(&base).unwrap()), pushed.diff_ids[0]);
    assert_eq!(sha256_digest(&fs::read(&top).unwrap()), pushed.diff_ids[1]);
    assert_eq!(fs::read(&config).unwrap(), pushed.config_bytes);

    ok(&occystrap(&[
        "recreate-image",
        s(&dir),
        &name,
        "v1",
        s(&out),
    ]));
    assert_eq!(fs::read(&out).unwrap(), exported(&reference, tmp.path()));
    assert!(
        temporaries(tmp.path()).is_empty(),
        "{:?}",
        temporaries(tmp.path())
    );
}

#[test]
fn concurrent_writers_share_one_directory_safely() {
    let registry = Registry::start();
    let count = 8;
    let mut images = Vec::new();
    for i in 0..count {
        let repo = format!("test/c{i}");
        registry.push_image(&repo, "v1", &app(&format!("c{i}")));
        images.push(registry.image_ref(&repo, "v1"));
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    // Two writers at once, several images each; one also expands.
    let writers: Vec<_> = [(0, false), (1, true)]
        .into_iter()
        .map(|(parity, expand)| {
            let mine: Vec<String> = images.iter().skip(parity).step_by(2).cloned().collect();
            let dir = dir.clone();
            std::thread::spawn(move || {
                for reference in mine {
                    let mut args = vec!["extract", "--use-unique-names"];
                    if expand {
                        args.push("--expand");
                    }
                    args.extend([reference.as_str(), s(&dir)]);
                    ok(&occystrap(&args));
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }

    let cat = catalog(&dir);
    let names: Vec<String> = cat.as_object().unwrap().keys().cloned().collect();
    assert_eq!(
        names.len(),
        count,
        "every image is in the catalog: {names:?}"
    );
    for (i, reference) in images.iter().enumerate() {
        let name = format!("{}/test/c{i}", registry.addr);
        let out = tmp.path().join(format!("c{i}.tar"));
        ok(&occystrap(&[
            "recreate-image",
            s(&dir),
            &name,
            "v1",
            s(&out),
        ]));
        assert_eq!(fs::read(&out).unwrap(), exported(reference, tmp.path()));
        let merged = dir.join(manifest_stem(&name, "v1"));
        assert_eq!(merged.exists(), i % 2 == 1, "{}", merged.display());
        if i % 2 == 1 {
            assert_eq!(
                fs::read(merged.join("etc/app")).unwrap(),
                format!("c{i}\n").as_bytes()
            );
        }
    }
    assert!(temporaries(&dir).is_empty(), "{:?}", temporaries(&dir));

    // Writers serialise on the catalog lock: while it is held, a writer
    // fetches but cannot publish; once released, it completes.
    registry.push_image("test/late", "v1", &app("late"));
    let late = format!("{}/test/late", registry.addr);
    let lock = fs::File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("catalog.json.lock"))
        .unwrap();
    let held = Flock::lock(lock, FlockArg::LockExclusive).unwrap();
    let mut writer = common::cli::command()
        .args(["extract", "--use-unique-names"])
        .arg(registry.image_ref("test/late", "v1"))
        .arg(&dir)
        .env("DOCKER_CONFIG", "/nonexistent-occystrap-test")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    assert!(writer.try_wait().unwrap().is_none(), "the writer waits");
    assert!(catalog(&dir).get(&late).is_none());
    drop(held);
    assert!(writer.wait().unwrap().success());
    assert!(catalog(&dir).get(&late).is_some());
    assert_eq!(catalog(&dir).as_object().unwrap().len(), count + 1);
}

// --- Expanded directories ------------------------------------------------

/// Layers that exercise the engine: owners, modes, hardlinks (also to a
/// lower layer), symlinks, a FIFO, a device, whiteouts and an opaque dir.
fn layered_image() -> ImageSpec {
    busybox_image()
        .layer(
            LayerSpec::new()
                .dir("srv", 0o750)
                .owner(2000, 2001)
                .file("srv/keep", b"kept\n", 0o4755)
                .owner(2000, 2001)
                .hardlink("srv/keep-link", "srv/keep")
                .symlink("srv/abs", "/etc/passwd")
                .symlink("srv/rel", "../etc/group")
                .fifo("srv/fifo", 0o600)
                .char_device("srv/null", 1, 3, 0o666)
                .dir("data", 0o755)
                .file("data/old-a", b"a\n", 0o644)
                .file("data/old-b", b"b\n", 0o644)
                .dir("gone", 0o755)
                .file("gone/file", b"x\n", 0o644)
                .file("etc/motd", b"hello\n", 0o644)
                .mtime(1_600_000_000),
        )
        .layer(
            LayerSpec::new()
                .whiteout("gone")
                .opaque("data")
                .file("data/new", b"new\n", 0o640)
                .whiteout("bin/ls")
                .compression(Compression::Zstd),
        )
        .layer(LayerSpec::new().hardlink("etc/motd-link", "etc/motd"))
}

#[test]
fn expanded_directories_match_the_bundle_rootfs() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/layered", "v1", &layered_image());
    let reference = registry.image_ref("test/layered", "v1");
    let tmp = tempfile::tempdir().unwrap();
    let bundle = tmp.path().join("bundle");
    ok(&occystrap(&["bundle", &reference, s(&bundle)]));
    let rootfs = snapshot(&bundle.join("rootfs"));
    assert!(
        rootfs["srv/keep"].link_group.is_some(),
        "the image is as meant"
    );
    assert!(!rootfs.contains_key("gone"));

    // Plain: the merged tree at DIR/manifest/.
    let plain = tmp.path().join("centos-x");
    ok(&occystrap(&[
        "fetch-to-extracted",
        "--expand",
        &registry.addr,
        "test/layered",
        "v1",
        s(&plain),
    ]));
    assert_eq!(snapshot(&plain.join("manifest")), rootfs);
    assert_eq!(
        rootfs["etc/motd-link"].link_group,
        rootfs["etc/motd"].link_group
    );

    // Shared: at DIR/manifest-<image with / as _>-<tag>/.
    let shared = tmp.path().join("shared");
    for _ in 0..2 {
        // The second run reuses the layers and their trees.
        ok(&occystrap(&[
            "extract",
            "--use-unique-names",
            "--expand",
            &reference,
            s(&shared),
        ]));
        let name = format!("{}/test/layered", registry.addr);
        assert_eq!(snapshot(&shared.join(manifest_stem(&name, "v1"))), rootfs);
    }

    // Each layer expanded beside its layer.tar, whiteouts left visible.
    for dir in [&plain, &shared] {
        let base = dir.join(hex(&pushed.diff_ids[0]));
        assert!(base.join("layer.tar").is_file());
        assert!(base.join("layer/bin/busybox").is_file());
        let middle = snapshot(&dir.join(hex(&pushed.diff_ids[1])).join("layer"));
        assert_eq!(middle["gone/file"].content, common::sha256_digest(b"x\n"));
        assert_eq!(middle["srv/keep"].mode, 0o4755);
        let top = snapshot(&dir.join(hex(&pushed.diff_ids[2])).join("layer"));
        for wh in [".wh.gone", "data/.wh..wh..opq", "bin/.wh.ls"] {
            assert_eq!(top[wh].kind, "file", "{wh} visible");
        }
        assert_eq!(top["data/new"].content, common::sha256_digest(b"new\n"));
        assert!(!top.contains_key("bin/busybox"));
        // A hardlink to a lower layer's file cannot stand alone: that
        // layer's own tree is left out (the merged tree has it).
        assert!(!dir.join(hex(&pushed.diff_ids[3])).join("layer").exists());
        assert!(
            dir.join(hex(&pushed.diff_ids[3]))
                .join("layer.tar")
                .is_file()
        );
    }
    assert!(
        temporaries(tmp.path()).is_empty(),
        "{:?}",
        temporaries(tmp.path())
    );
}

/// The original occystrap's flow with a registry of our own:
/// `fetch-to-extracted --use-unique-names REGISTRY IMAGE TAG DIR`, then
/// `recreate-image DIR IMAGE TAG OUT` without the registry.
#[test]
fn recreate_finds_an_image_by_its_path_alone_unless_ambiguous() {
    let first = Registry::start();
    let second = Registry::start();
    first.push_image("team/app", "v1", &app("a"));
    second.push_image("team/app", "v1", &app("b"));
    second.push_image("team/other", "v1", &app("b"));
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("shared");
    for (registry, repo) in [(&first, "team/app"), (&second, "team/other")] {
        ok(&occystrap(&[
            "fetch-to-extracted",
            "--use-unique-names",
            &registry.addr,
            repo,
            "v1",
            s(&dir),
        ]));
    }
    let out = tmp.path().join("app.tar");
    ok(&occystrap(&[
        "recreate-image",
        s(&dir),
        "team/app",
        "v1",
        s(&out),
    ]));
    assert_eq!(
        fs::read(&out).unwrap(),
        exported(&first.image_ref("team/app", "v1"), tmp.path())
    );
    // A missing tag is still "not found".
    fails_with(
        &occystrap(&["recreate-image", s(&dir), "team/app", "v2", s(&out)]),
        3,
        "not in",
    );
    // The same path from two registries: name one.
    ok(&occystrap(&[
        "fetch-to-extracted",
        "--use-unique-names",
        &second.addr,
        "team/app",
        "v1",
        s(&dir),
    ]));
    let ambiguous = occystrap(&["recreate-image", s(&dir), "team/app", "v1", s(&out)]);
    fails_with(&ambiguous, 2, "matches several images");
    fails_with(&ambiguous, 2, &format!("{}/team/app:v1", first.addr));
    fails_with(&ambiguous, 2, &format!("{}/team/app:v1", second.addr));
}

#[test]
fn expanded_trees_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let registry = Registry::start();
    registry.push_image("test/app", "v1", &app("private"));
    let reference = registry.image_ref("test/app", "v1");
    let tmp = tempfile::tempdir().unwrap();
    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;

    // Plain: DIR, which holds every tree, is 0700 (without --expand, it
    // holds only tar files and keeps the usual mode).
    let plain = tmp.path().join("plain");
    ok(&occystrap(&["extract", "--expand", &reference, s(&plain)]));
    assert_eq!(mode(&plain), 0o700);
    let tars = tmp.path().join("tars");
    ok(&occystrap(&["extract", &reference, s(&tars)]));
    assert_eq!(mode(&tars), 0o755);

    // Shared: a new DIR is 0700, whether this run expands or a later one will.
    for (name, expand) in [("shared", true), ("store", false)] {
        let dir = tmp.path().join(name);
        let mut args = vec!["extract", "--use-unique-names"];
        if expand {
            args.push("--expand");
        }
        args.extend([reference.as_str(), s(&dir)]);
        ok(&occystrap(&args));
        assert_eq!(mode(&dir), 0o700, "{name}");
    }

    // An existing DIR other users can enter is not expanded into: its mode
    // is not ours to change, so the message says how.
    let open = tmp.path().join("open");
    fs::create_dir(&open).unwrap();
    fs::set_permissions(&open, fs::Permissions::from_mode(0o755)).unwrap();
    let out = occystrap(&[
        "extract",
        "--unique-names",
        "--expand",
        &reference,
        s(&open),
    ]);
    fails_with(&out, 2, "chmod 700");
    assert_eq!(fs::read_dir(&open).unwrap().count(), 0);
    assert_eq!(mode(&open), 0o755);
    // Without --expand it is used as it is; once private, expanding works.
    ok(&occystrap(&[
        "extract",
        "--unique-names",
        &reference,
        s(&open),
    ]));
    assert_eq!(mode(&open), 0o755);
    fs::set_permissions(&open, fs::Permissions::from_mode(0o700)).unwrap();
    ok(&occystrap(&[
        "extract",
        "--unique-names",
        "--expand",
        &reference,
        s(&open),
    ]));
}
