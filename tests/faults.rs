//! Hostile registries and broken networks: a fault-injecting server
//! ([`common::fake`]) in front of a real registry fails, cuts, stalls,
//! corrupts, redirects and demands tokens. Each test checks the outcome and
//! that a failed `export` or `bundle` leaves nothing behind.

mod common;

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use common::cli::{assert_empty, fails_with, noise, occystrap, ok, stderr};
use common::fake::{Canned, FakeServer, base64};
use common::image::{Compression, ImageSpec, LayerSpec};
use common::push::PushedImage;
use common::registry::Registry;
use common::sha256_digest;
use serde_json::Value;

/// Three layers (gzip with 300 KB of noise, zstd, uncompressed), so that
/// faults can hit a body in its middle.
fn test_image() -> ImageSpec {
    ImageSpec::new()
        .entrypoint(&["/bin/true"])
        .layer(
            LayerSpec::new()
                .dir("data", 0o755)
                .file("data/noise", noise(300_000, 1), 0o644),
        )
        .layer(
            LayerSpec::new()
                .file("data/zstd", noise(50_000, 2), 0o644)
                .compression(Compression::Zstd),
        )
        .layer(
            LayerSpec::new()
                .file("data/plain", b"plain\n", 0o644)
                .compression(Compression::None),
        )
}

/// A registry holding [`test_image`] as `test/app:v1`, and a fake in front.
fn setup() -> (Registry, PushedImage, FakeServer) {
    let registry = Registry::start();
    let pushed = registry.push_image("test/app", "v1", &test_image());
    let fake = FakeServer::in_front_of(&registry);
    (registry, pushed, fake)
}

fn blob_path(digest: &str) -> String {
    format!("/v2/test/app/blobs/{digest}")
}

const MANIFEST_PATH: &str = "/v2/test/app/manifests/v1";

/// The tarball holds exactly the pushed config and uncompressed layers,
/// and each layer hashes to its diff_id.
fn assert_export(path: &Path, pushed: &PushedImage) {
    let file = std::fs::File::open(path).unwrap();
    let mut archive = tar::Archive::new(file);
    let mut entries = std::collections::BTreeMap::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let name = entry.path().unwrap().to_string_lossy().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
        entries.insert(name, data);
    }
    let manifest: Value = serde_json::from_slice(&entries["manifest.json"]).unwrap();
    let config = manifest[0]["Config"].as_str().unwrap();
    assert_eq!(entries[config], pushed.config_bytes);
    let layers = manifest[0]["Layers"].as_array().unwrap();
    assert_eq!(layers.len(), pushed.diff_ids.len());
    for (layer, diff_id) in layers.iter().zip(&pushed.diff_ids) {
        let tar = &entries[layer.as_str().unwrap()];
        assert_eq!(&sha256_digest(tar), diff_id, "layer {layer}");
    }
}

/// The bundle has its config and the files of every layer.
fn assert_bundle(dir: &Path) {
    assert!(dir.join("config.json").is_file());
    let rootfs = dir.join("rootfs");
    assert_eq!(
        std::fs::read(rootfs.join("data/noise")).unwrap(),
        noise(300_000, 1)
    );
    assert_eq!(
        std::fs::read(rootfs.join("data/zstd")).unwrap(),
        noise(50_000, 2)
    );
    assert_eq!(
        std::fs::read(rootfs.join("data/plain")).unwrap(),
        b"plain\n"
    );
}

fn export(reference: &str, out: &Path, extra: &[&str]) -> Output {
    let mut args = extra.to_vec();
    args.extend(["export", reference, out.to_str().unwrap()]);
    occystrap(&args)
}

fn bundle(reference: &str, dir: &Path, extra: &[&str]) -> Output {
    let mut args = extra.to_vec();
    args.extend(["bundle", reference, dir.to_str().unwrap()]);
    occystrap(&args)
}

/// `export`, `bundle` and `copy` to a layout all fail with `code` and `needle`, leaving
/// nothing. `script` (re)arms the faults before each run.
fn both_fail(reference: &str, extra: &[&str], code: i32, needle: &str, script: impl Fn()) {
    let dir = tempfile::tempdir().unwrap();
    script();
    fails_with(
        &export(reference, &dir.path().join("out.tar"), extra),
        code,
        needle,
    );
    assert_empty(dir.path());
    script();
    fails_with(
        &bundle(reference, &dir.path().join("bundle"), extra),
        code,
        needle,
    );
    assert_empty(dir.path());
    script();
    let layout = format!("oci:{}", dir.path().join("layout").display());
    let mut args = vec!["copy", reference, layout.as_str()];
    args.extend(extra);
    fails_with(&occystrap(&args), code, needle);
    assert_empty(dir.path());
}

/// Both `export` and `bundle` succeed with verified outputs.
fn both_succeed(reference: &str, pushed: &PushedImage, extra: &[&str], script: impl Fn()) {
    let dir = tempfile::tempdir().unwrap();
    script();
    let out = dir.path().join("out.tar");
    ok(&export(reference, &out, extra));
    assert_export(&out, pushed);
    script();
    let dir_out = dir.path().join("bundle");
    ok(&bundle(reference, &dir_out, extra));
    assert_bundle(&dir_out);
}

fn gets(fake: &FakeServer, path: &str) -> Vec<common::fake::Seen> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == "GET" && r.path == path)
        .collect()
}

#[test]
fn server_errors_and_rate_limits_are_retried() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let big = blob_path(&pushed.layer_digests[0]);
    let config = blob_path(&pushed.config_digest);
    both_succeed(&reference, &pushed, &[], || {
        fake.on(
            "GET",
            MANIFEST_PATH,
            vec![Canned::new(503, "busy"), Canned::forward()],
        );
        fake.on(
            "GET",
            &config,
            vec![
                Canned::new(429, "slow down").header("Retry-After", "1"),
                Canned::forward(),
            ],
        );
        fake.on(
            "GET",
            &big,
            vec![
                Canned::new(500, "oops"),
                Canned::new(502, "bad gateway"),
                Canned::new(408, "request timeout"),
                Canned::forward(),
            ],
        );
    });
    // Export and bundle: each blob asked for once per failure, plus once.
    assert_eq!(gets(&fake, &big).len(), 2 * 4);
    assert_eq!(gets(&fake, &config).len(), 2 * 2);
    assert_eq!(gets(&fake, MANIFEST_PATH).len(), 2 * 2);
}

/// `at` as an HTTP date (IMF-fixdate), the other form of `Retry-After`.
fn http_date(at: std::time::SystemTime) -> String {
    let secs = at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let out = std::process::Command::new("date")
        .env("LC_ALL", "C")
        .args([
            "-u",
            "-d",
            &format!("@{secs}"),
            "+%a, %d %b %Y %H:%M:%S GMT",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Time from the first request for `path` to the second.
fn wait_between(fake: &FakeServer, path: &str) -> Duration {
    let seen = gets(fake, path);
    assert_eq!(seen.len(), 2, "{path}: one refusal, one retry");
    seen[1].at - seen[0].at
}

#[test]
fn retry_after_is_honoured_in_seconds_and_as_a_date() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let config = blob_path(&pushed.config_digest);
    let big = blob_path(&pushed.layer_digests[0]);
    fake.on(
        "GET",
        &config,
        vec![
            Canned::new(429, "slow down").header("Retry-After", "2"),
            Canned::forward(),
        ],
    );
    let t0 = Instant::now();
    let soon = std::time::SystemTime::now() + Duration::from_secs(5);
    fake.on(
        "GET",
        &big,
        vec![
            Canned::new(503, "back soon").header("Retry-After", &http_date(soon)),
            Canned::forward(),
        ],
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.tar");
    // Our own backoff would retry after 10 ms: the registry's wish wins.
    ok(&export(&reference, &out, &["--retry-delay", "10"]));
    assert_export(&out, &pushed);
    let config_wait = wait_between(&fake, &config);
    assert!(
        config_wait >= Duration::from_millis(1900),
        "{config_wait:?}"
    );
    // Not retried before the date (which has whole seconds: 4 s at least).
    wait_between(&fake, &big);
    let retried = gets(&fake, &big)[1].at - t0;
    assert!(retried >= Duration::from_secs(4), "{retried:?}");
}

#[test]
fn a_refused_token_is_renewed_once() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let config = blob_path(&pushed.config_digest);
    let big = blob_path(&pushed.layer_digests[0]);
    let expired = r#"{"errors":[{"code":"UNAUTHORIZED","message":"token expired"}]}"#;
    fake.on(
        "GET",
        &config,
        vec![Canned::new(401, expired), Canned::forward()],
    );
    fake.on("GET", &big, vec![Canned::new(401, expired)]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.tar");
    // The config's 401 is followed by a new negotiation and a retry; the
    // layer's second 401 is final.
    fails_with(&export(&reference, &out, &[]), 3, "token expired");
    assert_empty(dir.path());
    assert_eq!(gets(&fake, &config).len(), 2);
    assert_eq!(gets(&fake, &big).len(), 2);
    assert_eq!(
        gets(&fake, "/v2/").len(),
        3,
        "negotiated at first use and after each 401"
    );
}

#[test]
fn a_retry_after_beyond_reason_fails_at_once() {
    let (_registry, _pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    fake.on(
        "GET",
        MANIFEST_PATH,
        vec![Canned::new(429, "come back tomorrow").header("Retry-After", "86400")],
    );
    let started = Instant::now();
    both_fail(&reference, &[], 5, "retry after 86400 s", || {});
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(gets(&fake, MANIFEST_PATH).len(), 3, "not retried");
}

#[test]
fn persistent_server_errors_give_up_after_the_retries() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let big = blob_path(&pushed.layer_digests[0]);
    fake.on("GET", &big, vec![Canned::new(503, "down for maintenance")]);
    both_fail(
        &reference,
        &["--retries", "2"],
        5,
        "down for maintenance",
        || {},
    );
    assert_eq!(gets(&fake, &big).len(), 3 * 3, "1 try + 2 retries, thrice");
    // --retries 0: one try only.
    let dir = tempfile::tempdir().unwrap();
    let before = gets(&fake, &big).len();
    let out = export(&reference, &dir.path().join("o.tar"), &["--retries", "0"]);
    fails_with(&out, 5, "503");
    assert_eq!(gets(&fake, &big).len(), before + 1);
    assert_empty(dir.path());
}

#[test]
fn client_errors_fail_at_once_with_the_registrys_message() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let big = blob_path(&pushed.layer_digests[0]);
    let denied = r#"{"errors":[{"code":"DENIED","message":"quota exceeded for this blob"}]}"#;
    fake.on(
        "GET",
        &big,
        vec![Canned::new(403, denied).header("Content-Type", "application/json")],
    );
    both_fail(&reference, &[], 3, "quota exceeded for this blob", || {});
    assert_eq!(gets(&fake, &big).len(), 3, "not retried");

    fake.on("GET", &big, vec![Canned::new(400, "your request is odd")]);
    both_fail(&reference, &[], 5, "your request is odd", || {});
    assert_eq!(gets(&fake, &big).len(), 6, "not retried");

    let before = gets(&fake, MANIFEST_PATH).len();
    fake.on(
        "GET",
        MANIFEST_PATH,
        vec![Canned::new(
            404,
            r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"no such tag here"}]}"#,
        )],
    );
    both_fail(&reference, &[], 3, "no such tag here", || {});
    assert_eq!(gets(&fake, MANIFEST_PATH).len(), before + 3, "not retried");
}

#[test]
fn a_body_cut_short_resumes_with_range() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let big = blob_path(&pushed.layer_digests[0]);
    both_succeed(&reference, &pushed, &[], || {
        fake.on(
            "GET",
            &big,
            vec![
                Canned::forward().cut_after(100_000),
                Canned::forward().cut_after(1000),
                Canned::forward(),
            ],
        );
    });
    let seen = gets(&fake, &big);
    assert_eq!(seen.len(), 6);
    let ranges: Vec<_> = seen.iter().map(|r| r.header("range")).collect();
    assert_eq!(
        ranges[..3],
        [None, Some("bytes=100000-"), Some("bytes=101000-")],
        "each retry starts where the last body stopped"
    );
}

#[test]
fn a_registry_without_range_support_restarts_the_blob() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let big = blob_path(&pushed.layer_digests[0]);
    let zstd = blob_path(&pushed.layer_digests[1]);
    both_succeed(&reference, &pushed, &[], || {
        fake.on(
            "GET",
            &big,
            vec![
                Canned::forward().cut_after(150_000),
                // Answers 200 with the whole blob, and is cut earlier than
                // the last one: the restart must catch up before going on.
                Canned::forward_whole().cut_after(20_000),
                Canned::forward_whole(),
            ],
        );
        fake.on(
            "GET",
            &zstd,
            vec![Canned::forward().reset_after(5000), Canned::forward_whole()],
        );
    });
    assert_eq!(gets(&fake, &big).len(), 6);
}

#[test]
fn a_connection_reset_mid_body_is_retried() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let big = blob_path(&pushed.layer_digests[0]);
    let config = blob_path(&pushed.config_digest);
    both_succeed(&reference, &pushed, &[], || {
        fake.on(
            "GET",
            &big,
            vec![
                Canned::forward().reset_after(0),
                Canned::forward().reset_after(70_000),
                Canned::forward(),
            ],
        );
        fake.on(
            "GET",
            &config,
            vec![Canned::forward().reset_after(10), Canned::forward()],
        );
        fake.on(
            "GET",
            MANIFEST_PATH,
            vec![Canned::forward().reset_after(10), Canned::forward()],
        );
    });
}

#[test]
fn a_stalled_download_times_out_and_resumes() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let big = blob_path(&pushed.layer_digests[0]);
    let started = Instant::now();
    both_succeed(&reference, &pushed, &["--timeout", "1"], || {
        fake.on(
            "GET",
            &big,
            vec![
                Canned::forward().stall_after(50_000, Duration::from_secs(30)),
                Canned::forward(),
            ],
        );
        fake.on(
            "GET",
            MANIFEST_PATH,
            vec![
                Canned::forward().stall_after(0, Duration::from_secs(30)),
                Canned::forward(),
            ],
        );
    });
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(
        gets(&fake, &big)[1].header("range"),
        Some("bytes=50000-"),
        "resumed after the stall"
    );
}

#[test]
fn a_body_that_stays_short_is_a_size_error() {
    let (registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let digest = &pushed.layer_digests[0];
    let blob = registry.get(&blob_path(digest), None).body;
    // Announced and sent short: a clean end, every time.
    let short = Canned::new(200, &blob[..blob.len() - 10]);
    fake.on("GET", &blob_path(digest), vec![short]);
    both_fail(&reference, &["--retries", "1"], 4, digest, || {});
    // Announced in full but cut, every time: a failed download.
    fake.on(
        "GET",
        &blob_path(digest),
        vec![Canned::forward_whole().cut_after(blob.len() - 10)],
    );
    both_fail(
        &reference,
        &["--retries", "1"],
        5,
        "gave up after 1 retries",
        || {},
    );
}

#[test]
fn wrong_bytes_are_refused() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    for digest in [&pushed.layer_digests[0], &pushed.layer_digests[1]] {
        fake.on(
            "GET",
            &blob_path(digest),
            vec![Canned::forward().corrupt(4000)],
        );
        both_fail(&reference, &[], 4, digest, || {});
        fake.on("GET", &blob_path(digest), vec![Canned::forward()]);
    }
    let config = &pushed.config_digest;
    fake.on(
        "GET",
        &blob_path(config),
        vec![Canned::forward().corrupt(10)],
    );
    both_fail(&reference, &[], 4, config, || {});
}

#[test]
fn bytes_beyond_the_descriptor_size_are_refused() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let digest = &pushed.layer_digests[2];
    fake.on(
        "GET",
        &blob_path(digest),
        vec![Canned::forward().extra(vec![0u8; 1024])],
    );
    both_fail(&reference, &[], 4, "or more", || {});
}

/// The blob served by a second host that records what it receives.
fn storage_for(registry: &Registry, digest: &str) -> FakeServer {
    let storage = FakeServer::start();
    let blob = registry.get(&blob_path(digest), None).body;
    storage.on("GET", "/storage/blob", vec![Canned::new(200, blob)]);
    storage
}

fn redirect_to(storage: &FakeServer) -> Canned {
    let location = format!("{}/storage/blob?signature=abc", storage.url());
    Canned::new(307, "").header("Location", &location)
}

#[test]
fn redirects_are_followed_without_basic_credentials() {
    let registry = Registry::start_with_basic_auth("alice", "s3cret");
    let pushed = registry.push_image("test/app", "v1", &test_image());
    let fake = FakeServer::in_front_of(&registry);
    let digest = &pushed.layer_digests[0];
    let storage = storage_for(&registry, digest);
    fake.on("GET", &blob_path(digest), vec![redirect_to(&storage)]);
    let reference = fake.image_ref("test/app", "v1");
    let creds = ["--username", "alice", "--password", "s3cret"];
    both_succeed(&reference, &pushed, &creds, || {});

    let basic = format!("Basic {}", base64(b"alice:s3cret"));
    let to_registry = gets(&fake, &blob_path(digest));
    assert_eq!(to_registry.len(), 2);
    assert!(
        to_registry
            .iter()
            .all(|r| r.header("authorization") == Some(basic.as_str()))
    );
    let to_storage = storage.requests();
    assert_eq!(to_storage.len(), 2, "followed, once per run");
    for request in &to_storage {
        assert_eq!(request.path, "/storage/blob?signature=abc");
        assert_eq!(request.header("authorization"), None, "{request:?}");
    }
}

#[test]
fn bearer_tokens_are_fetched_used_and_not_sent_to_storage_hosts() {
    let (registry, pushed, fake) = setup();
    fake.require_bearer("t0k3n", Some(("bob", "hunter2")));
    let digest = &pushed.layer_digests[0];
    let storage = storage_for(&registry, digest);
    fake.on("GET", &blob_path(digest), vec![redirect_to(&storage)]);
    let reference = fake.image_ref("test/app", "v1");

    both_fail(&reference, &[], 3, "authentication failed", || {});
    let wrong = ["--username", "bob", "--password", "nope"];
    both_fail(&reference, &wrong, 3, "authentication failed", || {});

    let creds = ["--username", "bob", "--password", "hunter2"];
    both_succeed(&reference, &pushed, &creds, || {});
    let requests = fake.requests();
    let token_requests: Vec<_> = requests
        .iter()
        .filter(|r| r.path.starts_with("/token"))
        .collect();
    let granted = token_requests
        .iter()
        .find(|r| r.header("authorization") == Some(&format!("Basic {}", base64(b"bob:hunter2"))))
        .expect("the token endpoint got the credentials");
    assert!(
        granted
            .path
            .contains("scope=repository%3Atest%2Fapp%3Apull"),
        "{}",
        granted.path
    );
    assert!(
        granted.path.contains("service=fake-registry"),
        "{}",
        granted.path
    );
    assert!(
        requests
            .iter()
            .any(|r| r.path == MANIFEST_PATH && r.header("authorization") == Some("Bearer t0k3n"))
    );
    let to_storage = storage.requests();
    assert_eq!(to_storage.len(), 2);
    assert!(
        to_storage
            .iter()
            .all(|r| r.header("authorization").is_none())
    );
}

/// Push `pushed`'s manifest again as `tag`, with the config or layer `which`
/// replaced by a blob holding `bytes` (its true digest and size).
fn with_blob_swapped(
    registry: &Registry,
    pushed: &PushedImage,
    tag: &str,
    which: Option<usize>,
    bytes: &[u8],
) -> String {
    let digest = registry.push_blob("test/app", bytes);
    let mut manifest: Value = serde_json::from_slice(&pushed.manifest_bytes).unwrap();
    let descriptor = match which {
        Some(i) => &mut manifest["layers"][i],
        None => &mut manifest["config"],
    };
    descriptor["digest"] = digest.clone().into();
    descriptor["size"] = bytes.len().into();
    let body = serde_json::to_vec(&manifest).unwrap();
    registry.push_manifest_raw("test/app", tag, &pushed.manifest_media_type, &body);
    digest
}

#[test]
fn truncated_compressed_layers_are_refused() {
    let (registry, pushed, fake) = setup();
    let gzip = registry
        .get(&blob_path(&pushed.layer_digests[0]), None)
        .body;
    let zstd = registry
        .get(&blob_path(&pushed.layer_digests[1]), None)
        .body;
    for (i, blob, tag) in [(0, gzip, "gzip"), (1, zstd, "zstd")] {
        let digest = with_blob_swapped(&registry, &pushed, tag, Some(i), &blob[..blob.len() / 2]);
        let reference = fake.image_ref("test/app", tag);
        both_fail(&reference, &[], 4, &digest, || {});
    }
}

#[test]
fn malformed_json_is_refused() {
    let (registry, pushed, fake) = setup();
    let digest = with_blob_swapped(
        &registry,
        &pushed,
        "badconfig",
        None,
        b"{\"rootfs\": [not json",
    );
    let reference = fake.image_ref("test/app", "badconfig");
    both_fail(
        &reference,
        &[],
        4,
        &format!("config {digest}: malformed"),
        || {},
    );

    let reference = fake.image_ref("test/app", "v1");
    fake.on(
        "GET",
        MANIFEST_PATH,
        vec![
            Canned::new(200, "{\"schemaVersion\": 2, \"layers\": [")
                .header("Content-Type", &pushed.manifest_media_type),
        ],
    );
    both_fail(&reference, &[], 4, "manifest", || {});
}

#[test]
fn oversized_manifests_are_refused() {
    let (_registry, pushed, fake) = setup();
    let reference = fake.image_ref("test/app", "v1");
    let mut huge = br#"{"schemaVersion":2,"layers":[],"pad":""#.to_vec();
    huge.extend(vec![b'x'; 5 << 20]);
    let announced = Canned::new(200, [huge.as_slice(), b"\"}"].concat());
    // No length announced, and the body stalls past the cap: only a cap
    // applied while reading stops this before the timeout.
    let endless = Canned::new(200, huge)
        .unannounced()
        .stall_after((4 << 20) + 100, Duration::from_secs(60));
    for answer in [announced, endless] {
        let answer = answer.header("Content-Type", &pushed.manifest_media_type);
        fake.on("GET", MANIFEST_PATH, vec![answer]);
        let started = Instant::now();
        both_fail(&reference, &["--timeout", "50"], 4, "limit", || {});
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{:?}",
            started.elapsed()
        );
    }
}

#[test]
fn decompression_bombs_are_stopped_by_the_limits() {
    let registry = Registry::start();
    let bomb = ImageSpec::new().entrypoint(&["/bin/true"]).layer(
        LayerSpec::new()
            .file("zeros", vec![0u8; 8 << 20], 0o644)
            .compression(Compression::Zstd),
    );
    let pushed = registry.push_image("test/bomb", "v1", &bomb);
    let reference = registry.image_ref("test/bomb", "v1");
    let digest = &pushed.layer_digests[0];
    both_fail(
        &reference,
        &["--max-layer-size", "1M"],
        4,
        &format!("uncompressed layer {digest}: larger than the 1048576-byte limit"),
        || {},
    );
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("o.tar");
    ok(&export(&reference, &out, &["--max-layer-size", "9M"]));

    let mut crowded = LayerSpec::new();
    for i in 0..100 {
        crowded = crowded.file(&format!("f{i}"), b"x", 0o644);
    }
    let pushed = registry.push_image("test/crowded", "v1", &ImageSpec::new().layer(crowded));
    let reference = registry.image_ref("test/crowded", "v1");
    both_fail(
        &reference,
        &["--max-entries", "99"],
        4,
        &format!(
            "layer {}: more than the limit of 99 tar entries",
            pushed.layer_digests[0]
        ),
        || {},
    );
    let out = dir.path().join("c.tar");
    ok(&export(&reference, &out, &["--max-entries", "100"]));
}

/// A layer Go's archive/tar refuses (a single zero block, then another
/// header) is refused by export as by bundle, naming the byte offset;
/// silently dropping the entries after the zero block would show a
/// scanner a tree the runtime does not get.
#[test]
fn layers_our_reader_refuses_are_refused_by_every_command() {
    let registry = Registry::start();
    let mut tar = Vec::new();
    for (name, gap) in [("a", false), ("b", true)] {
        if gap {
            tar.extend([0u8; 512]);
        }
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(0);
        h.set_mode(0o644);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
    }
    tar.extend([0u8; 1024]);
    let image = ImageSpec::new().layer(LayerSpec::from_tar(tar));
    registry.push_image("test/zero-block", "v1", &image);
    let reference = registry.image_ref("test/zero-block", "v1");
    both_fail(
        &reference,
        &[],
        4,
        "invalid tar header at byte 1024: a header after a single zero block",
        || {},
    );
}

/// 50 pulls through a server failing a fifth of its requests at random
/// (seeded): each either succeeds with a verified output or leaves nothing.
/// Odd runs may not retry, so that failures happen too.
#[test]
fn soak_fifty_pulls_through_random_faults() {
    let (_registry, pushed, fake) = setup();
    fake.chaos(0x5eed_1234, 20);
    let reference = fake.image_ref("test/app", "v1");
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let (mut retried_ok, mut unretried_failed) = (0, 0);
    for i in 0..50 {
        let retrying = i % 2 == 0;
        let flags = [
            "--retries",
            if retrying { "6" } else { "0" },
            "--retry-delay",
            "5",
        ];
        let as_bundle = i % 5 == 4;
        let out = dir.path().join(format!("run{i}"));
        let result = if as_bundle {
            bundle(&reference, &out, &flags)
        } else {
            export(&reference, &out, &flags)
        };
        if result.status.success() {
            retried_ok += usize::from(retrying);
            if as_bundle {
                assert_bundle(&out);
                std::fs::remove_dir_all(&out).unwrap();
            } else {
                assert_export(&out, &pushed);
                std::fs::remove_file(&out).unwrap();
            }
        } else {
            unretried_failed += usize::from(!retrying);
            let code = result.status.code();
            assert!(
                matches!(code, Some(3..=5)),
                "run {i}: {code:?}: {}",
                stderr(&result)
            );
        }
        assert_empty(dir.path());
    }
    let log = fake.chaos_log();
    eprintln!(
        "{retried_ok}/25 retrying runs succeeded, {unretried_failed}/25 others failed, in {:?}, {} faults injected",
        started.elapsed(),
        log.len()
    );
    assert!(log.len() >= 30, "faults were injected: {log:?}");
    for kind in ["500", "502", "503", "429", "reset", "cut"] {
        assert!(
            log.iter().any(|l| l.starts_with(kind)),
            "no {kind} in {log:?}"
        );
    }
    assert!(
        retried_ok >= 23,
        "only {retried_ok}/25 retrying runs succeeded"
    );
    assert!(
        unretried_failed >= 5,
        "failures were exercised: {unretried_failed}"
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
