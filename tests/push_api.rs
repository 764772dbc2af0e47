//! The library's push primitives (`Registry::has_blob`, `mount_blob`,
//! `push_blob`, `push_manifest`) against a real registry: what is pushed
//! is read back with the harness's own GETs, byte for byte.

mod common;

use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::fake::{Canned, FakeServer};
use common::registry::Registry;
use common::sha256_digest;
use occystrap::digest::Digest;
use occystrap::error::ErrorKind;
use occystrap::registry::OCI_MANIFEST;
use occystrap::{Error, ImageRef, RegistryOptions};

/// A client for `reference` (`127.0.0.1:PORT/repo:tag`), quick to retry.
fn connect(reference: &str, credentials: Option<(&str, &str)>) -> occystrap::Registry {
    let image: ImageRef = reference.parse().expect("a valid reference");
    let options = RegistryOptions {
        credentials: credentials.map(|(u, p)| (u.to_string(), p.to_string())),
        retry_delay: Duration::from_millis(10),
        ..Default::default()
    };
    occystrap::Registry::connect(&image, &options).expect("connect")
}

/// Bytes that do not repeat for a while (several upload chunks' worth).
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.max(1);
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// An `open` for `push_blob` that serves `bytes` and counts its calls.
fn opener(
    bytes: Vec<u8>,
    calls: Arc<AtomicUsize>,
) -> impl Fn() -> occystrap::Result<Box<dyn Read + Send>> + Send + Sync + 'static {
    let bytes = Arc::new(bytes);
    move || {
        calls.fetch_add(1, Ordering::SeqCst);
        let reader: Box<dyn Read + Send> = Box::new(std::io::Cursor::new(bytes.to_vec()));
        Ok(reader)
    }
}

fn digest_of(bytes: &[u8]) -> Digest {
    Digest::sha256_of(bytes)
}

/// Push `bytes` as a blob; returns its digest.
async fn push(client: &occystrap::Registry, bytes: &[u8]) -> Digest {
    let digest = digest_of(bytes);
    client
        .push_blob(
            &digest,
            bytes.len() as u64,
            opener(bytes.to_vec(), Arc::default()),
        )
        .await
        .unwrap_or_else(|e| panic!("push {digest}: {e}"));
    digest
}

#[tokio::test]
async fn blobs_and_a_manifest_arrive_intact() {
    let registry = Registry::start();
    let client = connect(&registry.image_ref("test/push", "v1"), None);
    let config =
        br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}"#;
    // Larger than one upload chunk, and not a multiple of it.
    let big = noise(3 * 1024 * 1024 + 12_345, 7);
    let small = b"a small layer".to_vec();
    let blobs: [&[u8]; 3] = [config, &big, &small];

    for bytes in blobs {
        let digest = digest_of(bytes);
        assert!(!client.has_blob(&digest).await.unwrap(), "{digest} before");
        let calls = Arc::new(AtomicUsize::new(0));
        client
            .push_blob(
                &digest,
                bytes.len() as u64,
                opener(bytes.to_vec(), calls.clone()),
            )
            .await
            .unwrap_or_else(|e| panic!("push {digest}: {e}"));
        assert_eq!(calls.load(Ordering::SeqCst), 1, "opened once");
        assert!(client.has_blob(&digest).await.unwrap(), "{digest} after");
        let served = registry.get(&format!("/v2/test/push/blobs/{digest}"), None);
        assert_eq!(served.status, 200, "{digest}");
        assert_eq!(served.body, bytes, "{digest} comes back as pushed");
    }

    let descriptor = |media_type: &str, bytes: &[u8]| {
        serde_json::json!({
            "mediaType": media_type,
            "digest": sha256_digest(bytes),
            "size": bytes.len(),
        })
    };
    let manifest = serde_json::to_vec_pretty(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor("application/vnd.oci.image.config.v1+json", config),
        "layers": [
            descriptor("application/vnd.oci.image.layer.v1.tar", &big),
            descriptor("application/vnd.oci.image.layer.v1.tar", &small),
        ],
    }))
    .unwrap();
    let digest = client
        .push_manifest("v1", OCI_MANIFEST, &manifest)
        .await
        .unwrap();
    assert_eq!(digest.to_string(), sha256_digest(&manifest));
    for reference in ["v1".to_string(), digest.to_string()] {
        let served = registry.get(
            &format!("/v2/test/push/manifests/{reference}"),
            Some(OCI_MANIFEST),
        );
        assert_eq!(served.status, 200, "{reference}");
        assert_eq!(served.body, manifest, "{reference}: the exact bytes");
        assert_eq!(
            served.header("docker-content-digest"),
            Some(digest.to_string().as_str())
        );
    }
    // By digest too, and a digest that is not the bytes' is refused.
    let again = client
        .push_manifest(&digest.to_string(), OCI_MANIFEST, &manifest)
        .await
        .unwrap();
    assert_eq!(again, digest);
    let wrong = client
        .push_manifest(&sha256_digest(b"other"), OCI_MANIFEST, &manifest)
        .await
        .unwrap_err();
    assert_eq!(wrong.kind(), ErrorKind::Integrity, "{wrong}");
}

#[tokio::test]
async fn a_blob_mounts_from_another_repository() {
    let registry = Registry::start();
    let source = connect(&registry.image_ref("team/a", "latest"), None);
    let target = connect(&registry.image_ref("team/b", "latest"), None);
    let bytes = noise(100_000, 3);
    let digest = push(&source, &bytes).await;

    assert!(!target.has_blob(&digest).await.unwrap());
    assert!(target.mount_blob(&digest, "team/a").await.unwrap());
    assert!(target.has_blob(&digest).await.unwrap());
    let served = registry.get(&format!("/v2/team/b/blobs/{digest}"), None);
    assert_eq!(served.body, bytes);

    // A blob the other repository lacks: the registry opens an upload
    // instead, which is cancelled, and the answer is "upload it".
    let absent = digest_of(b"absent");
    assert!(!target.mount_blob(&absent, "team/a").await.unwrap());
    assert!(!target.has_blob(&absent).await.unwrap());
    let bad = target.mount_blob(&digest, "team/a&x=1").await.unwrap_err();
    assert_eq!(bad.kind(), ErrorKind::Usage, "{bad}");
}

#[tokio::test]
async fn content_that_is_not_the_digest_is_refused() {
    let registry = Registry::start();
    let client = connect(&registry.image_ref("test/bad", "latest"), None);
    let right = b"the bytes the digest is of".to_vec();
    let wrong = b"the bytes that get uploaded".to_vec();
    assert_eq!(right.len(), wrong.len() - 1);
    let digest = digest_of(&right);

    // Same length, other bytes: the registry refuses (400 DIGEST_INVALID).
    let mut tampered = wrong.clone();
    tampered.truncate(right.len());
    let calls = Arc::new(AtomicUsize::new(0));
    let err = client
        .push_blob(&digest, right.len() as u64, opener(tampered, calls.clone()))
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains(&digest.to_string()), "{message}");
    assert!(message.contains("test/bad"), "{message}");
    assert!(message.contains("DIGEST_INVALID"), "{message}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "a 400 is not retried");
    assert!(!client.has_blob(&digest).await.unwrap());

    // A source longer than announced is caught before the registry is.
    let calls = Arc::new(AtomicUsize::new(0));
    let err = client
        .push_blob(&digest, right.len() as u64, opener(wrong, calls.clone()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    assert_eq!(calls.load(Ordering::SeqCst), 1, "not retried");
    assert!(!client.has_blob(&digest).await.unwrap());
}

#[tokio::test]
async fn pushes_need_credentials_where_the_registry_wants_them() {
    let registry = Registry::start_with_basic_auth("pusher", "s3cret");
    let reference = registry.image_ref("private/img", "latest");
    let bytes = b"private layer".to_vec();

    let anonymous = connect(&reference, None);
    let digest = digest_of(&bytes);
    let err = anonymous
        .push_blob(
            &digest,
            bytes.len() as u64,
            opener(bytes.clone(), Arc::default()),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Auth { .. }), "{err}");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("private/img"), "{err}");

    let client = connect(&reference, Some(("pusher", "s3cret")));
    let digest = push(&client, &bytes).await;
    assert!(client.has_blob(&digest).await.unwrap());
    let served = registry.get(&format!("/v2/private/img/blobs/{digest}"), None);
    assert_eq!(served.body, bytes);
}

#[tokio::test]
async fn an_upload_that_fails_starts_again() {
    let registry = Registry::start();
    let fake = FakeServer::in_front_of(&registry);
    // The fake matches paths without their query: upload URLs are the
    // registry's own invention, so the first upload is sent to one of
    // the fake's, which fails; the second goes to the registry.
    fake.on(
        "POST",
        "/v2/test/retry/blobs/uploads/",
        vec![
            Canned::new(202, "").header("Location", "/v2/test/retry/blobs/uploads/doomed?_state=x"),
            Canned::forward(),
        ],
    );
    fake.on(
        "PUT",
        "/v2/test/retry/blobs/uploads/doomed",
        vec![Canned::new(503, "busy")],
    );
    let client = connect(&fake.image_ref("test/retry", "latest"), None);
    let bytes = noise(600_000, 11);
    let digest = digest_of(&bytes);
    let calls = Arc::new(AtomicUsize::new(0));
    client
        .push_blob(
            &digest,
            bytes.len() as u64,
            opener(bytes.clone(), calls.clone()),
        )
        .await
        .unwrap();
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "opened again for the retry"
    );
    let served = registry.get(&format!("/v2/test/retry/blobs/{digest}"), None);
    assert_eq!(served.body, bytes);

    let failed_put = fake
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("the first upload went through the fake");
    assert_eq!(
        failed_put.path,
        format!("/v2/test/retry/blobs/uploads/doomed?_state=x&digest={digest}")
    );
    assert_eq!(
        failed_put.header("content-length"),
        Some(bytes.len().to_string().as_str())
    );
}

#[tokio::test]
async fn pushes_ask_for_a_token_with_push_scope() {
    let registry = Registry::start();
    let fake = FakeServer::in_front_of(&registry);
    fake.require_bearer("t0k3n", Some(("bob", "hunter2")));
    let client = connect(
        &fake.image_ref("test/token", "latest"),
        Some(("bob", "hunter2")),
    );
    let bytes = b"behind a token".to_vec();
    let digest = push(&client, &bytes).await;
    assert!(client.has_blob(&digest).await.unwrap());
    let served = registry.get(&format!("/v2/test/token/blobs/{digest}"), None);
    assert_eq!(served.body, bytes);

    let requests = fake.requests();
    let token = requests
        .iter()
        .find(|r| r.path.starts_with("/token"))
        .expect("a token was asked for");
    assert!(
        token
            .path
            .contains("scope=repository%3Atest%2Ftoken%3Apull%2Cpush"),
        "{}",
        token.path
    );
    let upload = requests
        .iter()
        .find(|r| r.method == "POST")
        .expect("the upload was opened through the fake");
    assert_eq!(upload.header("authorization"), Some("Bearer t0k3n"));
}

#[tokio::test]
async fn pushes_go_to_the_registry_not_its_mirrors() {
    let registry = Registry::start();
    let mirror = FakeServer::start();
    let conf = occystrap::registry::RegistriesConf::parse(
        &format!(
            "[[registry]]\nprefix = \"{}\"\n[[registry.mirror]]\nlocation = \"{}\"\n",
            registry.addr, mirror.addr
        ),
        "test.conf",
    )
    .unwrap();
    let image: ImageRef = registry.image_ref("test/mirrored", "v1").parse().unwrap();
    let options = RegistryOptions {
        registries_conf: conf,
        ..Default::default()
    };
    let client = occystrap::Registry::connect(&image, &options).unwrap();
    let bytes = b"not for the mirror".to_vec();
    let digest = digest_of(&bytes);
    assert!(!client.has_blob(&digest).await.unwrap());
    push(&client, &bytes).await;
    assert!(client.has_blob(&digest).await.unwrap());
    let manifest = br#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"DIGEST","size":SIZE},"layers":[]}"#;
    let manifest = String::from_utf8_lossy(manifest)
        .replace("DIGEST", &digest.to_string())
        .replace("SIZE", &bytes.len().to_string());
    client
        .push_manifest("v1", OCI_MANIFEST, manifest.as_bytes())
        .await
        .unwrap();
    let served = registry.get("/v2/test/mirrored/manifests/v1", Some(OCI_MANIFEST));
    assert_eq!(served.body, manifest.as_bytes());
    let asked: Vec<_> = mirror
        .requests()
        .into_iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert!(asked.is_empty(), "the mirror was asked: {asked:?}");
}

/// `len` bytes of a repeatable pattern, made as they are read.
struct Pattern {
    left: u64,
    state: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        for byte in &mut buf[..n] {
            self.state = self
                .state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            *byte = (self.state >> 56) as u8;
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_large_blob_streams_in_little_memory() {
    const SIZE: u64 = 192 * 1024 * 1024;
    let registry = Registry::start();
    let client = connect(&registry.image_ref("test/large", "latest"), None);
    let mut hasher = occystrap::digest::Hasher::sha256();
    let mut pattern = Pattern {
        left: SIZE,
        state: 1,
    };
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = pattern.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let digest = hasher.finish();

    // Reset the peak (VmHWM) to the current resident size.
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = status_kib("VmRSS:");
    client
        .push_blob(&digest, SIZE, || {
            let reader: Box<dyn Read + Send> = Box::new(Pattern {
                left: SIZE,
                state: 1,
            });
            Ok(reader)
        })
        .await
        .unwrap();
    let grew = status_kib("VmHWM:").saturating_sub(before);
    assert!(
        grew < 64 * 1024,
        "pushing {SIZE} bytes raised the peak by {grew} KiB"
    );
    assert!(client.has_blob(&digest).await.unwrap());
    let stored = std::fs::metadata(registry.blob_path(&digest.to_string())).unwrap();
    assert_eq!(stored.len(), SIZE);
}

#[tokio::test]
async fn a_registry_that_states_another_digest_is_caught() {
    let fake = FakeServer::start();
    let other = format!("sha256:{}", "0".repeat(64));
    let liar = || Canned::new(201, "").header("Docker-Content-Digest", &other);
    fake.on(
        "POST",
        "/v2/test/liar/blobs/uploads/",
        vec![Canned::new(202, "").header("Location", "/v2/test/liar/blobs/uploads/u1")],
    );
    fake.on("PUT", "/v2/test/liar/blobs/uploads/u1", vec![liar()]);
    fake.on("PUT", "/v2/test/liar/manifests/v1", vec![liar()]);
    let client = connect(&fake.image_ref("test/liar", "v1"), None);

    let bytes = b"some blob".to_vec();
    let digest = digest_of(&bytes);
    let err = client
        .push_blob(&digest, bytes.len() as u64, opener(bytes, Arc::default()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains(&digest.to_string()), "{err}");
    assert!(err.to_string().contains(&other), "{err}");

    let err = client
        .push_manifest("v1", OCI_MANIFEST, b"{}")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Integrity, "{err}");
    assert!(err.to_string().contains(&sha256_digest(b"{}")), "{err}");
}

/// Requests of `method` the fake saw.
fn seen(fake: &FakeServer, method: &str) -> Vec<common::fake::Seen> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method == method)
        .collect()
}

#[tokio::test]
async fn a_broken_off_upload_resumes_where_the_registry_got_to() {
    // A scripted registry: the first PATCH breaks off, the upload's status
    // says 5 MB arrived, the second PATCH must carry only the rest.
    let fake = FakeServer::start();
    let uploads = "/v2/test/resume/blobs/uploads/";
    let session = format!("{uploads}u1");
    let bytes = noise(occystrap::registry::push::RESUMABLE as usize + 1_000_000, 5);
    let (size, got) = (bytes.len(), 5_000_000usize);
    let digest = digest_of(&bytes);
    fake.on(
        "POST",
        uploads,
        vec![Canned::new(202, "").header("Location", &format!("{session}?_state=a"))],
    );
    fake.on(
        "PATCH",
        &session,
        vec![
            Canned::new(503, "busy"),
            Canned::new(202, "").header("Location", &format!("{session}?_state=c")),
        ],
    );
    fake.on(
        "GET",
        &session,
        vec![
            Canned::new(204, "")
                .header("Range", &format!("0-{}", got - 1))
                .header("Location", &format!("{session}?_state=b")),
        ],
    );
    fake.on(
        "PUT",
        &session,
        vec![Canned::new(201, "").header("Docker-Content-Digest", &digest.to_string())],
    );
    let client = connect(&fake.image_ref("test/resume", "latest"), None);
    let calls = Arc::new(AtomicUsize::new(0));
    client
        .push_blob(&digest, size as u64, opener(bytes.clone(), calls.clone()))
        .await
        .unwrap();
    let patches = seen(&fake, "PATCH");
    assert_eq!(patches.len(), 2, "{patches:?}");
    assert_eq!(
        patches[0].header("content-range"),
        Some(format!("0-{}", size - 1).as_str())
    );
    assert_eq!(patches[0].body, sha256_digest(&bytes));
    assert!(patches[1].path.ends_with("_state=b"), "{}", patches[1].path);
    assert_eq!(
        patches[1].header("content-range"),
        Some(format!("{got}-{}", size - 1).as_str())
    );
    assert_eq!(
        patches[1].body,
        sha256_digest(&bytes[got..]),
        "only the rest"
    );
    let puts = seen(&fake, "PUT");
    assert_eq!(puts.len(), 1);
    assert_eq!(
        puts[0].path,
        format!("{session}?_state=c&digest={digest}"),
        "closed where the last PATCH said"
    );
    assert_eq!(puts[0].header("content-length"), Some("0"));
}

#[tokio::test]
async fn a_registry_refusing_patch_gets_the_blob_whole() {
    let fake = FakeServer::start();
    let uploads = "/v2/test/whole/blobs/uploads/";
    let bytes = noise(occystrap::registry::push::RESUMABLE as usize + 10, 6);
    let digest = digest_of(&bytes);
    fake.on(
        "POST",
        uploads,
        vec![
            Canned::new(202, "").header("Location", &format!("{uploads}a")),
            Canned::new(202, "").header("Location", &format!("{uploads}b")),
        ],
    );
    fake.on(
        "PATCH",
        &format!("{uploads}a"),
        vec![Canned::new(405, "no")],
    );
    fake.on(
        "PUT",
        &format!("{uploads}b"),
        vec![Canned::new(201, "").header("Docker-Content-Digest", &digest.to_string())],
    );
    let client = connect(&fake.image_ref("test/whole", "latest"), None);
    client
        .push_blob(
            &digest,
            bytes.len() as u64,
            opener(bytes.clone(), Arc::new(AtomicUsize::new(0))),
        )
        .await
        .unwrap();
    let puts = seen(&fake, "PUT");
    assert_eq!(puts.len(), 1);
    assert_eq!(
        puts[0].body,
        sha256_digest(&bytes),
        "the whole blob in the PUT"
    );
}
