//! Proves the test harness (tests/common) against a real registry, so that
//! tests built on it mean what they say.

mod common;

use std::io::Read;

use common::busybox::busybox_image;
use common::fake::{Canned, FakeServer};
use common::http::Reply;
use common::image::{Compression, Format, ImageSpec, LayerSpec, PlatformSpec, raw_entry};
use common::registry::Registry;
use common::sha256_digest;
use serde_json::{Value, json};

const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A small image, quick to build in debug builds.
fn tiny_image() -> ImageSpec {
    ImageSpec::new().layer(LayerSpec::new().file("hello.txt", "hello\n", 0o644))
}

fn json_of(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).unwrap()
}

fn gunzip_all(blob: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(blob)
        .read_to_end(&mut out)
        .unwrap();
    out
}

/// (path, entry type, link target) of every entry of a tar.
fn tar_listing(tar: &[u8]) -> Vec<(String, tar::EntryType, Option<String>)> {
    let mut archive = tar::Archive::new(tar);
    archive
        .entries()
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let path = String::from_utf8(entry.path_bytes().into_owned()).unwrap();
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8(l.into_owned()).unwrap());
            (path, entry.header().entry_type(), link)
        })
        .collect()
}

#[test]
fn busybox_image_round_trips_through_the_registry() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/busybox", "latest", &busybox_image());

    let manifest = registry.get("/v2/test/busybox/manifests/latest", Some(DOCKER_MANIFEST));
    assert_eq!(manifest.status, 200);
    assert_eq!(manifest.body, pushed.manifest_bytes);
    assert_eq!(sha256_digest(&manifest.body), pushed.manifest_digest);
    assert_eq!(
        manifest.header("docker-content-digest"),
        Some(pushed.manifest_digest.as_str())
    );
    assert_eq!(manifest.header("content-type"), Some(DOCKER_MANIFEST));

    // Config: the bytes pushed, its diff_ids those of the uncompressed tar.
    let config = registry.get(
        &format!("/v2/test/busybox/blobs/{}", pushed.config_digest),
        None,
    );
    assert_eq!(config.body, pushed.config_bytes);
    let config = json_of(&config.body);
    assert_eq!(config["rootfs"]["diff_ids"], json!(pushed.diff_ids));
    assert_eq!(config["config"]["Cmd"], json!(["sh", "-c", "echo hello"]));
    assert_eq!(config["architecture"], "amd64");

    // Layer: gzip whose content is the tar, whose sha256 is the diff_id.
    let layer = registry.get(
        &format!("/v2/test/busybox/blobs/{}", pushed.layer_digests[0]),
        None,
    );
    assert_eq!(sha256_digest(&layer.body), pushed.layer_digests[0]);
    let tar = gunzip_all(&layer.body);
    assert_eq!(tar, pushed.layer_tars[0]);
    assert_eq!(sha256_digest(&tar), pushed.diff_ids[0]);
    let listing = tar_listing(&tar);
    let sh = (
        "bin/sh".to_string(),
        tar::EntryType::Symlink,
        Some("/bin/busybox".to_string()),
    );
    assert!(listing.contains(&sh), "{listing:?}");
    assert!(listing.iter().any(|(p, _, _)| p == "etc/passwd"));

    let manifest = json_of(&pushed.manifest_bytes);
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );
    assert_eq!(manifest["layers"][0]["size"], layer.body.len());
}

#[test]
fn same_spec_gives_same_digests() {
    let a = Registry::start();
    let b = Registry::start();
    let first = a.push_image("r", "t", &tiny_image());
    let second = b.push_image("r", "t", &tiny_image());
    assert_eq!(first.manifest_digest, second.manifest_digest);
    assert_ne!(a.addr, b.addr);
}

#[test]
fn zstd_oci_image_has_oci_media_types() {
    let registry = Registry::start();
    let image = ImageSpec::new()
        .format(Format::Oci)
        .layer(
            LayerSpec::new()
                .file("a", "a", 0o644)
                .compression(Compression::Zstd),
        )
        .layer(
            LayerSpec::new()
                .file("b", "b", 0o644)
                .compression(Compression::None),
        );
    let pushed = registry.push_image("test/oci", "v1", &image);

    let reply = registry.get("/v2/test/oci/manifests/v1", Some(OCI_MANIFEST));
    assert_eq!(reply.body, pushed.manifest_bytes);
    // This registry hides OCI manifests from clients that do not accept them.
    let no_accept = registry.get("/v2/test/oci/manifests/v1", None);
    assert_eq!(no_accept.status, 404);
    let manifest = json_of(&reply.body);
    assert_eq!(manifest["mediaType"], OCI_MANIFEST);
    assert_eq!(
        manifest["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert_eq!(
        manifest["layers"][0]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar+zstd"
    );
    assert_eq!(
        manifest["layers"][1]["mediaType"],
        "application/vnd.oci.image.layer.v1.tar"
    );

    let zst = registry.get(
        &format!("/v2/test/oci/blobs/{}", pushed.layer_digests[0]),
        None,
    );
    assert_eq!(
        zstd::decode_all(zst.body.as_slice()).unwrap(),
        pushed.layer_tars[0]
    );
    let plain = registry.get(
        &format!("/v2/test/oci/blobs/{}", pushed.layer_digests[1]),
        None,
    );
    assert_eq!(plain.body, pushed.layer_tars[1]);
}

#[test]
fn index_covers_arm_variants_and_an_attestation() {
    let registry = Registry::start();
    let platforms = [
        "linux/amd64",
        "linux/arm/v6",
        "linux/arm/v7",
        "linux/arm64/v8",
        "linux/arm64",
    ];
    let mut pushed = Vec::new();
    for platform in platforms {
        let image = tiny_image().format(Format::Oci).platform(platform);
        pushed.push((
            PlatformSpec::parse(platform),
            registry.push_image("multi", "", &image),
        ));
    }
    let attestation = registry.push_attestation("multi", &pushed[0].1);
    pushed.push((PlatformSpec::parse("unknown/unknown"), attestation));
    let entries: Vec<_> = pushed.iter().map(|(p, img)| (p.clone(), img)).collect();
    let digest = registry.push_index("multi", "latest", Format::Oci, &entries);

    let reply = registry.get("/v2/multi/manifests/latest", Some(OCI_INDEX));
    assert_eq!(reply.status, 200);
    assert_eq!(sha256_digest(&reply.body), digest);
    let index = json_of(&reply.body);
    assert_eq!(index["mediaType"], OCI_INDEX);
    let found: Vec<(String, Option<String>)> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            let name = format!(
                "{}/{}",
                p["os"].as_str().unwrap(),
                p["architecture"].as_str().unwrap()
            );
            (name, p["variant"].as_str().map(str::to_string))
        })
        .collect();
    let want = [
        ("linux/amd64", None),
        ("linux/arm", Some("v6")),
        ("linux/arm", Some("v7")),
        ("linux/arm64", Some("v8")),
        ("linux/arm64", None),
        ("unknown/unknown", None),
    ];
    let want: Vec<_> = want
        .iter()
        .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
        .collect();
    assert_eq!(found, want);

    // Each entry resolves to its own manifest, whose config has that platform.
    for (i, (platform, image)) in pushed.iter().enumerate().take(5) {
        let entry = &index["manifests"][i];
        assert_eq!(entry["digest"], image.manifest_digest.as_str());
        let config = json_of(&image.config_bytes);
        assert_eq!(config["architecture"], platform.architecture.as_str());
        assert_eq!(config["variant"].as_str(), platform.variant.as_deref());
        let path = format!("/v2/multi/manifests/{}", image.manifest_digest);
        assert_eq!(
            registry.get(&path, Some(OCI_MANIFEST)).body,
            image.manifest_bytes
        );
    }
    let attestation = &index["manifests"][5];
    assert_eq!(
        attestation["annotations"]["vnd.docker.reference.type"],
        "attestation-manifest"
    );
    assert_eq!(
        attestation["annotations"]["vnd.docker.reference.digest"],
        pushed[0].1.manifest_digest.as_str()
    );
}

#[test]
fn docker_manifest_list_is_served_with_its_media_type() {
    let registry = Registry::start();
    let amd = registry.push_image("list", "", &tiny_image());
    let arm = registry.push_image("list", "", &tiny_image().platform("linux/arm64/v8"));
    let entries = [
        (PlatformSpec::parse("linux/amd64"), &amd),
        (PlatformSpec::parse("linux/arm64/v8"), &arm),
    ];
    let digest = registry.push_index("list", "latest", Format::Docker, &entries);
    let media_type = Format::Docker.index_media_type();
    let reply = registry.get("/v2/list/manifests/latest", Some(media_type));
    assert_eq!(reply.header("content-type"), Some(media_type));
    assert_eq!(sha256_digest(&reply.body), digest);
    assert_eq!(
        json_of(&reply.body)["manifests"][1]["mediaType"],
        DOCKER_MANIFEST
    );
    // Without the list type in Accept, the amd64 entry comes back as schema1.
    let no_accept = registry.get("/v2/list/manifests/latest", None);
    assert_eq!(no_accept.status, 200);
    assert_eq!(json_of(&no_accept.body)["schemaVersion"], 1);
    assert_eq!(json_of(&no_accept.body)["architecture"], "amd64");
}

#[test]
fn basic_auth_registry_refuses_anonymous_and_accepts_credentials() {
    let registry = Registry::start_with_basic_auth("alice", "s3cret");
    let anonymous = registry.get_as("/v2/", None, None);
    assert_eq!(anonymous.status, 401);
    let challenge = anonymous.header("www-authenticate").unwrap();
    assert!(challenge.starts_with("Basic "), "{challenge}");
    assert_eq!(
        registry
            .get_as("/v2/", None, Some(("alice", "wrong")))
            .status,
        401
    );
    assert_eq!(registry.get("/v2/", None).status, 200);

    // The harness pushes with the credentials; pulls need them too.
    let pushed = registry.push_image("private/img", "v1", &tiny_image());
    let path = "/v2/private/img/manifests/v1";
    assert_eq!(
        registry.get_as(path, Some(DOCKER_MANIFEST), None).status,
        401
    );
    let reply = registry.get(path, Some(DOCKER_MANIFEST));
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, pushed.manifest_bytes);
}

/// The registry does not verify stored blobs: it serves whatever is on
/// disk, with the original digest in `Docker-Content-Digest`, so integrity
/// tests of the client are meaningful.
#[test]
fn tampered_blob_is_served_as_tampered() {
    let registry = Registry::start();
    let pushed = registry.push_image("tamper", "v1", &tiny_image());
    let digest = &pushed.layer_digests[0];
    let path = registry.blob_path(digest);
    let mut bytes = std::fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff; // same size, last byte flipped
    std::fs::write(&path, &bytes).unwrap();

    let reply = registry.get(&format!("/v2/tamper/blobs/{digest}"), None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, bytes);
    assert_ne!(sha256_digest(&reply.body), *digest);
    assert_eq!(reply.header("docker-content-digest"), Some(digest.as_str()));

    // A longer file is served whole: sizes are not checked either.
    bytes.extend_from_slice(b"trailing junk");
    std::fs::write(&path, &bytes).unwrap();
    let reply = registry.get(&format!("/v2/tamper/blobs/{digest}"), None);
    assert_eq!(reply.body, bytes);
}

#[test]
fn multi_member_gzip_needs_a_multi_member_reader() {
    let registry = Registry::start();
    let layer = LayerSpec::new()
        .file("first", vec![b'a'; 3000], 0o644)
        .file("second", vec![b'b'; 3000], 0o644)
        .multi_member_gzip();
    let pushed = registry.push_image("gz", "v1", &ImageSpec::new().layer(layer));
    let blob = registry
        .get(&format!("/v2/gz/blobs/{}", pushed.layer_digests[0]), None)
        .body;

    let mut first_member = Vec::new();
    flate2::read::GzDecoder::new(blob.as_slice())
        .read_to_end(&mut first_member)
        .unwrap();
    assert!(first_member.len() < pushed.layer_tars[0].len());
    assert_eq!(gunzip_all(&blob), pushed.layer_tars[0]);
}

#[test]
fn layer_spec_writes_the_entries_asked_for() {
    let layer = LayerSpec::new()
        .dir("etc", 0o755)
        .file("etc/app.conf", "x=1\n", 0o600)
        .owner(1000, 100)
        .mtime(1_700_000_000)
        .xattr("security.capability", [1u8, 0, 0, 2])
        .hardlink("etc/link", "etc/app.conf")
        .symlink("etc/abs", "/etc/app.conf")
        .whiteout("usr/lib/old")
        .opaque("var")
        .opaque("")
        .fifo("run/fifo", 0o644)
        .char_device("dev/null", 1, 3, 0o666)
        .raw(raw_entry(
            b"../escape",
            tar::EntryType::Regular,
            b"",
            b"out",
            0o644,
        ))
        .file("last", "", 0o644);
    let tar = layer.tar();
    let listing = tar_listing(&tar);
    let paths: Vec<&str> = listing.iter().map(|(p, _, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        [
            "etc/",
            "etc/app.conf",
            "etc/link",
            "etc/abs",
            "usr/lib/.wh.old",
            "var/.wh..wh..opq",
            ".wh..wh..opq",
            "run/fifo",
            "dev/null",
            "../escape",
            "last",
        ]
    );
    assert_eq!(listing[2].1, tar::EntryType::Link);
    assert_eq!(listing[2].2.as_deref(), Some("etc/app.conf"));
    assert_eq!(listing[7].1, tar::EntryType::Fifo);
    assert_eq!(listing[8].1, tar::EntryType::Char);

    let mut archive = tar::Archive::new(tar.as_slice());
    let mut entry = archive.entries().unwrap().nth(1).unwrap().unwrap();
    let header = entry.header().clone();
    assert_eq!((header.uid().unwrap(), header.gid().unwrap()), (1000, 100));
    assert_eq!(header.mtime().unwrap(), 1_700_000_000);
    assert_eq!(header.mode().unwrap(), 0o600);
    let pax: Vec<(String, Vec<u8>)> = entry
        .pax_extensions()
        .unwrap()
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.key().unwrap().to_string(), e.value_bytes().to_vec())
        })
        .collect();
    assert_eq!(
        pax,
        [(
            "SCHILY.xattr.security.capability".to_string(),
            vec![1, 0, 0, 2]
        )]
    );
    let mut contents = String::new();
    entry.read_to_string(&mut contents).unwrap();
    assert_eq!(contents, "x=1\n");
}

#[test]
fn edited_config_keeps_the_true_diff_ids_in_pushed_image() {
    let registry = Registry::start();
    let wrong = format!("sha256:{}", "0".repeat(64));
    let wrong2 = wrong.clone();
    let image = tiny_image().edit_config(move |c| c["rootfs"]["diff_ids"][0] = json!(wrong2));
    let pushed = registry.push_image("edit", "v1", &image);
    let config = json_of(&pushed.config_bytes);
    assert_eq!(config["rootfs"]["diff_ids"][0], wrong.as_str());
    assert_eq!(pushed.diff_ids[0], sha256_digest(&pushed.layer_tars[0]));
    assert_ne!(pushed.diff_ids[0], wrong);
}

#[test]
fn raw_pushes_store_the_exact_bytes() {
    let registry = Registry::start();
    let blob = registry.push_blob("raw", b"{}");
    // An unknown layer media type is accepted by this registry.
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": { "mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob, "size": 2 },
        "layers": [{ "mediaType": "application/x-unknown", "digest": blob, "size": 2 }],
    });
    let bytes = serde_json::to_vec_pretty(&manifest).unwrap();
    let digest = registry.push_manifest_raw("raw", "odd", OCI_MANIFEST, &bytes);
    assert_eq!(
        registry
            .get("/v2/raw/manifests/odd", Some(OCI_MANIFEST))
            .body,
        bytes
    );
    assert_eq!(digest, sha256_digest(&bytes));
}

/// reqwest's blocking client panics inside a runtime; the harness must not.
#[tokio::test]
async fn harness_works_inside_a_tokio_runtime() {
    let registry = Registry::start();
    let pushed = registry.push_image("async", "v1", &tiny_image());
    let reply = registry.get("/v2/async/manifests/v1", Some(DOCKER_MANIFEST));
    assert_eq!(reply.body, pushed.manifest_bytes);
}

#[test]
fn schema1_is_refused_on_push_but_can_be_planted_in_storage() {
    let registry = Registry::start();
    let layer = registry.push_blob("old", b"layer");
    let schema1 = serde_json::to_vec(&json!({
        "schemaVersion": 1,
        "name": "old",
        "tag": "v1",
        "architecture": "amd64",
        "fsLayers": [{ "blobSum": layer }],
        "history": [{ "v1Compatibility": "{\"id\":\"0\"}" }],
    }))
    .unwrap();
    let v1 = "application/vnd.docker.distribution.manifest.v1+json";
    let refused = registry.try_push_manifest_raw("old", "v1", v1, &schema1);
    assert_eq!(refused.status, 400);

    registry.put_manifest_in_storage("old", "v1", &schema1);
    let reply = registry.get("/v2/old/manifests/v1", Some(v1));
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("application/vnd.docker.distribution.manifest.v1+prettyjws")
    );
    let served = json_of(&reply.body);
    assert_eq!(served["schemaVersion"], 1);
    assert_eq!(served["fsLayers"][0]["blobSum"], layer.as_str());
}

/// Clients must list the Docker schema2 type in `Accept`: without it this
/// registry converts a schema2 manifest fetched by tag to a signed schema1.
#[test]
fn docker_manifest_by_tag_needs_a_schema2_accept_header() {
    let registry = Registry::start();
    let pushed = registry.push_image("acc", "v1", &tiny_image());
    let schema1 = "application/vnd.docker.distribution.manifest.v1+prettyjws";
    for accept in [None, Some(OCI_MANIFEST), Some("*/*")] {
        let reply = registry.get("/v2/acc/manifests/v1", accept);
        assert_eq!(reply.status, 200);
        assert_eq!(
            reply.header("content-type"),
            Some(schema1),
            "Accept: {accept:?}"
        );
        assert_eq!(json_of(&reply.body)["schemaVersion"], 1);
    }
    let by_digest = format!("/v2/acc/manifests/{}", pushed.manifest_digest);
    // By digest it is served as stored, whatever the client accepts.
    let reply = registry.get(&by_digest, None);
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, pushed.manifest_bytes);
}

/// GET through a fake server.
fn get_via(server: &FakeServer, path: &str, accept: &str) -> Reply {
    common::http::get(&format!("{}{path}", server.url()), &[("Accept", accept)])
}

#[test]
fn fake_server_serves_scripts_and_forwards_the_rest() {
    let registry = Registry::start_with_basic_auth("bob", "pw");
    let pushed = registry.push_image("real", "v1", &tiny_image());
    let fake = FakeServer::in_front_of(&registry);
    let odd = "application/vnd.example.unknown+json";
    fake.on(
        "GET",
        "/v2/real/manifests/odd",
        vec![Canned::new(200, "{}").header("Content-Type", odd)],
    );
    let blob_path = format!("/v2/real/blobs/{}", pushed.layer_digests[0]);
    fake.on(
        "GET",
        &blob_path,
        vec![Canned::new(503, "busy"), Canned::forward()],
    );

    let reply = get_via(&fake, "/v2/real/manifests/odd", odd);
    assert_eq!(
        (reply.status, reply.header("content-type")),
        (200, Some(odd))
    );

    // Unscripted: forwarded, and the registry still wants credentials.
    let path = "/v2/real/manifests/v1";
    assert_eq!(get_via(&fake, path, DOCKER_MANIFEST).status, 401);
    let auth = common::http::get(
        &format!("{}{path}", fake.url()),
        &[
            ("Accept", DOCKER_MANIFEST),
            ("Authorization", "Basic Ym9iOnB3"),
        ],
    );
    assert_eq!(auth.status, 200);
    assert_eq!(auth.body, pushed.manifest_bytes);

    // Scripted sequence: one failure, then the real blob.
    let creds = ("Authorization", "Basic Ym9iOnB3");
    let url = format!("{}{blob_path}", fake.url());
    assert_eq!(common::http::get(&url, &[creds]).status, 503);
    let blob = common::http::get(&url, &[creds]);
    assert_eq!(blob.status, 200);
    assert_eq!(gunzip_all(&blob.body), pushed.layer_tars[0]);

    let seen = fake.requests();
    assert_eq!(seen.len(), 5);
    assert_eq!(seen[0].header("accept"), Some(odd));
    assert!(seen.iter().all(|r| r.method == "GET"));
}

#[test]
fn fake_server_can_cut_a_body_short() {
    let fake = FakeServer::start();
    fake.on(
        "GET",
        "/v2/x/blobs/sha256:abc",
        vec![Canned::new(200, vec![7u8; 1000]).content_length(5000)],
    );
    let url = format!("{}/v2/x/blobs/sha256:abc", fake.url());
    let reply = common::http::try_get(&url, &[]);
    assert!(reply.is_err(), "a short body must be an error: {reply:?}");
    assert_eq!(
        common::http::get(&format!("{}/v2/", fake.url()), &[]).status,
        200
    );
    assert_eq!(
        common::http::get(&format!("{}/v2/none", fake.url()), &[]).status,
        404
    );
}
