//! Layers only our own tar reader reads right, applied into a temporary
//! root: GNU tar's sparse files in every format, PAX values holding any
//! byte, header-only entries with a size, unknown types, and limits that
//! count what a layer would really write. Runs as root (xattrs).

use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::process::Command;

use occystrap::fsroot::RootDir;
use occystrap::tar::{Limits, TarError};
use occystrap::unpack::{UnpackError, UnpackOptions, apply_layer};

fn apply(layer: &[u8], limits: Limits) -> (tempfile::TempDir, Result<(), UnpackError>) {
    let tmp = tempfile::tempdir().unwrap();
    let root = RootDir::open(tmp.path()).unwrap();
    let opts = UnpackOptions {
        limits,
        ..UnpackOptions::default()
    };
    let result = apply_layer(&root, layer, &opts).map(drop);
    (tmp, result)
}

fn gnu_tar(dir: &Path, args: &[&str], name: &str) -> Vec<u8> {
    let out = Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(args)
        .args(["-cf", "-", name])
        .output()
        .expect("GNU tar runs");
    assert!(out.status.success(), "tar {args:?}: {out:?}");
    out.stdout
}

#[test]
fn gnu_tar_sparse_files_keep_their_holes_in_every_format() {
    let src = tempfile::tempdir().unwrap();
    let path = src.path().join("disk.img");
    let file = fs::File::create(&path).unwrap();
    file.write_all_at(&[b'a'; 4096], 0).unwrap();
    file.write_all_at(&[b'b'; 8192], 32 << 20).unwrap();
    file.set_len(64 << 20).unwrap();
    drop(file);
    let want = fs::read(&path).unwrap();
    for args in [
        &["--format=gnu", "--sparse"][..],
        &["--format=oldgnu", "--sparse"],
        &["--format=posix", "--sparse"],
        &["--format=posix", "--sparse", "--sparse-version=0.0"],
        &["--format=posix", "--sparse", "--sparse-version=0.1"],
        &["--format=posix", "--sparse", "--sparse-version=1.0"],
    ] {
        let layer = gnu_tar(src.path(), args, "disk.img");
        assert!(layer.len() < 1 << 20, "{args:?}: tar wrote the holes");
        let (root, result) = apply(&layer, Limits::default());
        result.unwrap_or_else(|e| panic!("{args:?}: {e}"));
        let names: Vec<_> = fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["disk.img"], "{args:?}: the real name");
        let out = root.path().join("disk.img");
        let meta = fs::metadata(&out).unwrap();
        assert_eq!(meta.len(), 64 << 20, "{args:?}");
        assert!(
            meta.blocks() * 512 < 1 << 20,
            "{args:?}: {} blocks allocated, the holes were written",
            meta.blocks()
        );
        assert!(fs::read(&out).unwrap() == want, "{args:?}: content differs");
    }
}

fn getxattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let p = CString::new(path.as_os_str().as_bytes()).unwrap();
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 4096];
    // SAFETY: valid C strings and a buffer of the length given.
    let len =
        unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (len >= 0).then(|| {
        buf.truncate(len as usize);
        buf
    })
}

fn pax_layer(records: &[(&str, &[u8])], name: &str, data: &[u8]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.append_pax_extensions(records.iter().map(|(k, v)| (*k, *v)))
        .unwrap();
    let mut h = tar::Header::new_ustar();
    h.set_size(data.len() as u64);
    h.set_mode(0o755);
    h.set_mtime(1_600_000_000);
    b.append_data(&mut h, name, data).unwrap();
    b.into_inner().unwrap()
}

#[test]
fn pax_values_with_newlines_are_applied_exactly() {
    // setcap cap_dac_override,cap_fowner+ep: the bitmap holds 0x0a.
    let cap = b"\x01\x00\x00\x02\x0a\x00\x00\x00\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00";
    let layer = pax_layer(
        &[
            ("SCHILY.xattr.security.capability", cap),
            ("SCHILY.xattr.user.lines", b"one\ntwo\n\0three"),
            ("SCHILY.acl.access", b"user::rwx\ngroup::r-x\nother::r-x\n"),
            ("path", b"bin/new\nline"),
        ],
        "placeholder",
        b"#!/bin/sh\n",
    );
    let (root, result) = apply(&layer, Limits::default());
    result.unwrap();
    let file = root.path().join("bin/new\nline");
    assert_eq!(fs::read(&file).unwrap(), b"#!/bin/sh\n");
    assert_eq!(getxattr(&file, "security.capability").unwrap(), cap);
    assert_eq!(getxattr(&file, "user.lines").unwrap(), b"one\ntwo\n\0three");
}

/// A USTAR header with a valid checksum.
fn header(name: &str, flag: u8, size: u64) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.set_path(name).unwrap();
    h.set_size(size);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::new(flag));
    h.set_cksum();
    h.as_bytes().to_vec()
}

#[test]
fn header_only_entries_have_no_data_and_unknown_types_are_refused() {
    // Go (and so Docker) reads the next header right after a directory,
    // whatever its size field says: the files are not skipped.
    let mut layer = header("d/", b'5', 1024);
    layer.extend(header("d/a", b'0', 0));
    layer.extend(header("d/b", b'0', 0));
    layer.extend([0u8; 1024]);
    let (root, result) = apply(&layer, Limits::default());
    result.unwrap();
    assert!(root.path().join("d/a").is_file() && root.path().join("d/b").is_file());
    // Counted as Go counts them: three entries, not one.
    let few = Limits {
        max_entries: Some(2),
        max_size: None,
    };
    let (_, result) = apply(&layer, few);
    assert!(
        matches!(
            result,
            Err(UnpackError::Tar(TarError::TooManyEntries { limit: 2 }))
        ),
        "{result:?}"
    );

    let mut odd = header("z", b'Z', 0);
    odd.extend([0u8; 1024]);
    let (_, result) = apply(&odd, Limits::default());
    let err = result.unwrap_err().to_string();
    assert!(err.contains("unsupported entry type Z (0x5a)"), "{err}");
}

#[test]
fn a_sparse_file_counts_its_full_size_against_the_limit() {
    // 104 bytes of map and data that would become a 1 GiB file.
    let layer = pax_layer(
        &[
            ("GNU.sparse.major", b"0"),
            ("GNU.sparse.minor", b"1"),
            ("GNU.sparse.name", b"big"),
            ("GNU.sparse.size", b"1073741824"),
            ("GNU.sparse.numblocks", b"1"),
            ("GNU.sparse.map", b"1073741823,1"),
        ],
        "GNUSparseFile.1/big",
        b"x",
    );
    let limit = Limits {
        max_size: Some(16 << 20),
        max_entries: None,
    };
    let (root, result) = apply(&layer, limit);
    assert!(
        matches!(result, Err(UnpackError::Tar(TarError::TooLarge { .. }))),
        "{result:?}"
    );
    assert!(
        !root.path().join("big").exists(),
        "refused before it is written"
    );
    let (root, result) = apply(&layer, Limits::default());
    result.unwrap();
    let meta = fs::metadata(root.path().join("big")).unwrap();
    assert_eq!((meta.len(), meta.blocks() <= 64), (1 << 30, true));
}

#[test]
fn special_headers_are_capped_not_read_whole() {
    // A PAX header claiming 128 MiB: refused at its header, with a short
    // message, whatever the layer-size limit.
    let mut layer = header("PaxHeaders/x", b'x', 128 << 20);
    layer.extend(vec![b'9'; 128 << 10]);
    let (_, result) = apply(&layer, Limits::default());
    let err = result.unwrap_err();
    assert!(
        matches!(err, UnpackError::Tar(TarError::TooLong { .. })),
        "{err}"
    );
    assert!(err.to_string().len() < 200, "{err}");
    let _ = std::io::stderr().flush();
}

#[test]
fn pre_1970_times_are_kept_in_every_format_that_holds_them() {
    let src = tempfile::tempdir().unwrap();
    fs::write(src.path().join("old"), b"1960").unwrap();
    let touched = Command::new("touch")
        .args(["-d", "1960-01-01 00:00:00 UTC"])
        .arg(src.path().join("old"))
        .status()
        .unwrap();
    assert!(touched.success());
    // GNU: a negative base-256 field; PAX: a negative mtime record.
    for format in ["--format=gnu", "--format=oldgnu", "--format=posix"] {
        let layer = gnu_tar(src.path(), &[format], "old");
        let (root, result) = apply(&layer, Limits::default());
        result.unwrap_or_else(|e| panic!("{format}: {e}"));
        let meta = fs::metadata(root.path().join("old")).unwrap();
        assert_eq!(meta.mtime(), -315_619_200, "{format}");
    }
}
