//! Proves the test harness (tests/common) against a real registry.

mod common;

use common::busybox::busybox_image;
use common::registry::Registry;

#[test]
fn registry_starts_and_serves_a_pushed_image() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/busybox", "latest", &busybox_image());
    let reply = registry.get(
        "/v2/test/busybox/manifests/latest",
        Some(&pushed.manifest_media_type),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, pushed.manifest_bytes);
}
