//! The blob cache: a second pull of the same image makes no blob requests
//! and gives the same output; a damaged cached blob is detected and fetched
//! again; a layer's diff_id is hashed once, and remembered only once it
//! checked out; processes share one cache safely; `cache prune` bounds it.

mod common;

use std::path::Path;

use common::busybox::busybox_image;
use common::cli::{fails_with, noise, occystrap, occystrap_cached, ok, stderr};
use common::fake::FakeServer;
use common::image::{Compression, LayerSpec};
use common::registry::Registry;

fn blob_gets(fake: &FakeServer) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.contains("/blobs/"))
        .count()
}

fn image() -> common::image::ImageSpec {
    busybox_image()
        .layer(LayerSpec::new().file("data/noise", noise(300_000, 7), 0o644))
        .layer(
            LayerSpec::new()
                .file("etc/motd", b"zstd\n", 0o644)
                .compression(Compression::Zstd),
        )
}

fn cached_blobs(cache: &Path) -> Vec<std::path::PathBuf> {
    let mut out: Vec<_> = std::fs::read_dir(cache.join("blobs/sha256"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    out.sort();
    out
}

/// `image()` in a real registry behind a fault server that counts
/// requests, and a temporary directory with a cache path in it.
struct Pulled {
    /// Kept alive (bound, not `..`) for as long as the test runs.
    _registry: Registry,
    pushed: common::push::PushedImage,
    fake: FakeServer,
    reference: String,
    dir: tempfile::TempDir,
    cache: std::path::PathBuf,
}

fn pulled_through_fake() -> Pulled {
    let registry = Registry::start();
    let pushed = registry.push_image("test/cached", "v1", &image());
    let fake = FakeServer::in_front_of(&registry);
    let reference = fake.image_ref("test/cached", "v1");
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    Pulled {
        _registry: registry,
        pushed,
        fake,
        reference,
        dir,
        cache,
    }
}

/// `occystrap --cache CACHE export REFERENCE OUT`.
fn export_cached(cache: &Path, reference: &str, out: &Path) -> std::process::Output {
    occystrap_cached(cache, &["export", reference, out.to_str().unwrap()])
}

#[test]
fn warm_cache_makes_no_blob_requests() {
    let Pulled {
        pushed,
        fake,
        reference,
        dir,
        cache,
        _registry,
    } = pulled_through_fake();
    let cold = dir.path().join("cold.tar");
    ok(&export_cached(&cache, &reference, &cold));
    // The config and every layer were fetched once and cached.
    assert_eq!(blob_gets(&fake), 1 + pushed.layer_digests.len());
    assert_eq!(cached_blobs(&cache).len(), 1 + pushed.layer_digests.len());

    let warm = dir.path().join("warm.tar");
    ok(&export_cached(&cache, &reference, &warm));
    let bundle = dir.path().join("bundle");
    ok(&occystrap_cached(
        &cache,
        &["bundle", &reference, bundle.to_str().unwrap()],
    ));
    assert_eq!(
        blob_gets(&fake),
        1 + pushed.layer_digests.len(),
        "warm runs fetched blobs"
    );
    assert_eq!(std::fs::read(&cold).unwrap(), std::fs::read(&warm).unwrap());
    assert_eq!(
        std::fs::read(bundle.join("rootfs/etc/motd")).unwrap(),
        b"zstd\n"
    );

    // --no-cache (the default in these tests' environment) goes to the registry.
    let uncached = dir.path().join("uncached.tar");
    ok(&occystrap(&[
        "export",
        &reference,
        uncached.to_str().unwrap(),
    ]));
    assert_eq!(blob_gets(&fake), 2 * (1 + pushed.layer_digests.len()));
}

#[test]
fn damaged_cache_entries_are_fetched_again() {
    let Pulled {
        pushed,
        fake,
        reference,
        dir,
        cache,
        _registry,
    } = pulled_through_fake();
    let first = dir.path().join("first.tar");
    ok(&export_cached(&cache, &reference, &first));
    let before = blob_gets(&fake);

    // Flip a byte of one layer, truncate another.
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    let flipped = cache
        .join("blobs/sha256")
        .join(hex(&pushed.layer_digests[1]));
    let mut bytes = std::fs::read(&flipped).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&flipped, bytes).unwrap();
    let cut = cache
        .join("blobs/sha256")
        .join(hex(&pushed.layer_digests[2]));
    let len = std::fs::metadata(&cut).unwrap().len();
    std::fs::File::options()
        .write(true)
        .open(&cut)
        .unwrap()
        .set_len(len / 2)
        .unwrap();

    let second = dir.path().join("second.tar");
    let out = export_cached(&cache, &reference, &second);
    ok(&out);
    assert!(common::cli::stderr(&out).contains("damaged"));
    assert_eq!(
        blob_gets(&fake),
        before + 2,
        "exactly the two damaged blobs again"
    );
    assert_eq!(
        std::fs::read(&first).unwrap(),
        std::fs::read(&second).unwrap()
    );
    // And the cache holds good copies again.
    let third = dir.path().join("third.tar");
    ok(&export_cached(&cache, &reference, &third));
    assert_eq!(blob_gets(&fake), before + 2);
}

/// How many layers a `-vv` run took the diff_id of from the cache.
fn diff_ids_recalled(out: &std::process::Output) -> usize {
    stderr(out).matches("diff_id known from the cache").count()
}

#[test]
fn diff_ids_are_remembered_only_once_checked() {
    let registry = Registry::start();
    let good = registry.push_image("test/good", "v1", &image());
    // The same layers, but the config's second diff_id is wrong.
    let wrong = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    registry.push_image(
        "test/bad",
        "v1",
        &image().edit_config(|config| config["rootfs"]["diff_ids"][1] = wrong.into()),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let run = |repo: &str, out: &str| {
        let out = dir.path().join(out);
        occystrap_cached(
            &cache,
            &[
                "-vv",
                "export",
                &registry.image_ref(repo, "v1"),
                out.to_str().unwrap(),
            ],
        )
    };
    let records = || std::fs::read_dir(cache.join("diff_ids/sha256")).map_or(0, |d| d.count());

    // The bad image fails at its second layer; only the first, which
    // checked out, is remembered.
    let first = run("test/bad", "bad.tar");
    fails_with(&first, 4, wrong);
    assert_eq!((diff_ids_recalled(&first), records()), (0, 1));

    // The good image shares the first layer's record and leaves the rest.
    let cold = run("test/good", "cold.tar");
    ok(&cold);
    assert_eq!(diff_ids_recalled(&cold), 1);
    assert_eq!(records(), good.layer_digests.len());

    // Every layer's diff_id is now known, and the output is the same.
    let warm = run("test/good", "warm.tar");
    ok(&warm);
    assert_eq!(diff_ids_recalled(&warm), good.layer_digests.len());
    assert_eq!(
        std::fs::read(dir.path().join("cold.tar")).unwrap(),
        std::fs::read(dir.path().join("warm.tar")).unwrap()
    );

    // The record of the real diff_id does not vouch for the wrong one: the
    // bad image is hashed and refused again.
    let again = run("test/bad", "again.tar");
    fails_with(&again, 4, wrong);
    assert!(!dir.path().join("again.tar").exists());

    // Pruning a blob forgets its record.
    ok(&occystrap_cached(
        &cache,
        &["cache", "prune", "--max-size", "0"],
    ));
    assert_eq!(records(), 0);
}

#[test]
fn concurrent_processes_share_a_cache_and_prune_bounds_it() {
    let registry = Registry::start();
    registry.push_image("test/a", "v1", &image());
    registry.push_image("test/b", "v1", &busybox_image());
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let runs: Vec<_> = (0..4)
        .map(|i| {
            let reference = registry.image_ref(if i % 2 == 0 { "test/a" } else { "test/b" }, "v1");
            let out = dir.path().join(format!("{i}.tar"));
            let cache = cache.clone();
            std::thread::spawn(move || export_cached(&cache, &reference, &out))
        })
        .collect();
    for run in runs {
        ok(&run.join().unwrap());
    }
    assert_eq!(
        std::fs::read(dir.path().join("0.tar")).unwrap(),
        std::fs::read(dir.path().join("2.tar")).unwrap()
    );
    assert_eq!(
        std::fs::read_dir(cache.join("tmp")).unwrap().count(),
        0,
        "no temporaries left"
    );
    // a: config + 3 layers; b: its own config, the shared busybox layer.
    assert_eq!(cached_blobs(&cache).len(), 5);

    let cache_arg = cache.to_str().unwrap();
    let info = occystrap_cached(&cache, &["cache", "info"]);
    ok(&info);
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(
        info.contains(cache_arg) && info.contains(": 5 blobs, "),
        "{info}"
    );
    assert_eq!(cached_blobs(&cache).len(), 5, "info changes nothing");
    ok(&occystrap_cached(
        &cache,
        &["cache", "prune", "--max-size", "0"],
    ));
    assert!(cached_blobs(&cache).is_empty());
}
