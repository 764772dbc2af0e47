//! Replays the fuzz targets' checks over their seeds and over every input
//! a fuzzer found (fuzz/regressions/<target>/), so what was fixed stays
//! fixed without a fuzzer installed. The `tar` inputs are also read by
//! Go's archive/tar (tests/golang/tarlist.go), so this needs `go`.

mod common;

#[path = "../fuzz/checks.rs"]
mod checks;

use std::path::Path;

fn replay(target: &str, mut check: impl FnMut(&[u8])) {
    let mut count = 0;
    for dir in ["fuzz/seeds", "fuzz/regressions"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(dir).join(target);
        for entry in std::fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            eprintln!("{}", path.display());
            check(&data);
            count += 1;
        }
    }
    assert!(count > 0, "no inputs for {target}");
}

#[test]
fn reference_inputs() {
    replay("reference", checks::reference);
}

#[test]
fn manifest_inputs() {
    replay("manifest", checks::manifest);
}

#[test]
fn layer_inputs() {
    replay("layer", checks::layer);
}

#[test]
fn gzip_inputs() {
    replay("gzip", checks::gzip);
}

#[test]
fn tar_inputs() {
    let mut go = checks::GoTarList::start(&common::golang::tarlist());
    replay("tar", |data| checks::tar_with(&mut go, data));
}
