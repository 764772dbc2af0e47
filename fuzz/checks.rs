//! The properties the fuzz targets check, shared with the regression test
//! (`tests/fuzz_regressions.rs`) that replays the seeds and every input
//! the fuzzers ever found.

use std::fs;
use std::io::Read;
use std::path::Path;

use occystrap::digest::Digest;
use occystrap::fsroot::RootDir;
use occystrap::unpack::{UnpackOptions, apply_layer};
use occystrap::{ImageRef, Platform};

/// References and platforms: no panic; what parses prints back to an
/// equal value.
pub fn reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = text.parse::<ImageRef>() {
        let again: ImageRef = reference
            .to_string()
            .parse()
            .expect("a printed reference parses");
        assert_eq!(again, reference);
        let _ = reference.familiar_tagged();
        let _ = reference.to_oci();
    }
    if let Some((a, b)) = text.split_once(' ') {
        let _ = ImageRef::from_parts(None, a, b);
    }
    if let Ok(platform) = text.parse::<Platform>() {
        let again: Platform = platform
            .to_string()
            .parse()
            .expect("a printed platform parses");
        assert_eq!(again.normalized(), platform.normalized());
        let _ = occystrap::platform::select(&platform, &[Some(Platform::host()), None]);
    }
}

/// Manifest, index and config parsing: errors, never panics. The input is
/// split at the first NUL into manifest bytes and config bytes.
pub fn manifest(data: &[u8]) {
    let (manifest, config) = match data.iter().position(|b| *b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &b"{}"[..]),
    };
    let md = Digest::sha256_of(manifest);
    let cd = Digest::sha256_of(config);
    let _ = occystrap::registry::manifest_media_type(manifest, &md.to_string());
    let _ = occystrap::image::config_of(manifest, &md);
    if let Ok((_, layers)) = occystrap::image::describe(manifest, &md, config, &cd) {
        for layer in layers {
            let _ = layer.digest.to_string();
        }
    }
}

fn listing(dir: &Path) -> Vec<(String, u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in fs::read_dir(&d).into_iter().flatten().flatten() {
            let md = e.path().symlink_metadata().expect("stat");
            if md.is_dir() {
                pending.push(e.path());
            }
            out.push((e.path().display().to_string(), md.len(), md.mode()));
        }
    }
    out.sort();
    out
}

/// Layer application on arbitrary tar bytes: nothing outside the root
/// changes. Two layers are applied (split at the first 512-byte boundary
/// after the middle) so symlinks planted by the first can be aimed at by
/// the second.
pub fn layer(data: &[u8]) {
    let sandbox = tempfile::tempdir().expect("tempdir");
    let root_path = sandbox.path().join("root");
    let outside = sandbox.path().join("outside");
    fs::create_dir(&root_path).expect("root");
    fs::create_dir(&outside).expect("outside");
    fs::write(outside.join("sentinel"), b"keep").expect("sentinel");
    let before = listing(&outside);

    let root = RootDir::open(&root_path).expect("open root");
    let split = (data.len() / 2).next_multiple_of(512).min(data.len());
    let opts = UnpackOptions::default();
    if apply_layer(&root, &data[..split], &opts).is_ok() {
        let _ = apply_layer(&root, &data[split..], &opts);
    }

    assert_eq!(
        listing(&outside),
        before,
        "something outside the root changed"
    );
    let top: Vec<_> = fs::read_dir(sandbox.path())
        .expect("sandbox")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(
        top.len(),
        2,
        "something was created beside the root: {top:?}"
    );
    assert_eq!(
        fs::read(outside.join("sentinel")).expect("sentinel"),
        b"keep"
    );
}

/// Gzip: no panic, and wherever flate2's own multi-member decoder (CRC
/// checks and all) accepts the input, ours gives the same bytes.
pub fn gzip(data: &[u8]) {
    // Enough for any input the fuzzer makes to show a difference, without
    // letting a small bomb take the fuzzer's memory.
    const CAP: u64 = 8 << 20;
    let read = |reader: &mut dyn Read| {
        let mut out = Vec::new();
        reader.take(CAP).read_to_end(&mut out).map(|_| out)
    };
    let ours = read(&mut occystrap::gzip::MultiGunzip::new(data));
    let theirs = read(&mut flate2::bufread::MultiGzDecoder::new(data));
    if let Ok(theirs) = theirs {
        match ours {
            Ok(ours) => assert!(ours == theirs, "different content"),
            Err(e) => assert!(data.is_empty(), "refused what flate2 accepts: {e}"),
        }
    }
}
