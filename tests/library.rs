//! The library as an orchestrator embeds it: cancellation belongs to one
//! operation, and a cancelled one leaves nothing.

mod common;

use common::busybox::busybox_image;
use common::registry::Registry;
use occystrap::bundle::BundleOptions;
use occystrap::{Cancel, Error, ImageName, PullOptions};

fn options(cancel: Cancel) -> PullOptions {
    PullOptions {
        cancel,
        ..PullOptions::default()
    }
}

#[tokio::test]
async fn cancelling_one_operation_leaves_the_next_free() {
    let registry = Registry::start();
    let pushed = registry.push_image("test/cancel", "v1", &busybox_image());
    let name = ImageName::parse(&registry.image_ref("test/cancel", "v1")).unwrap();
    let dir = tempfile::tempdir().unwrap();

    let cancelled = Cancel::new();
    cancelled.cancel();
    let target = dir.path().join("cancelled");
    let result = occystrap::create_bundle(
        &name,
        &target,
        &BundleOptions::default(),
        &options(cancelled.clone()),
    )
    .await;
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    assert!(!target.exists());
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "nothing left"
    );

    // Another operation, with its own token, is not affected.
    let target = dir.path().join("fine");
    let image = occystrap::create_bundle(
        &name,
        &target,
        &BundleOptions::default(),
        &options(Cancel::new()),
    )
    .await
    .unwrap();
    assert_eq!(image.config_digest.to_string(), pushed.config_digest);
    assert!(target.join("rootfs/bin/busybox").exists());
}
