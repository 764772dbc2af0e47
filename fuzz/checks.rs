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

/// Logical content hashed per entry in tar listings; keep in step with
/// `maxContent` in tests/golang/tarlist.go. A fuzzed sparse header can
/// claim exabytes of holes: past this, only whether there is more counts.
pub const TAR_MAX_CONTENT: u64 = 8 << 20;

fn hex_bytes(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Go's zero `time.Time` (what it prints as `-`), in Unix seconds.
const GO_ZERO_TIME: i64 = -62_135_596_800;

fn go_time(t: Option<occystrap::tar::Time>) -> String {
    match t {
        Some(t) if !(t.secs == GO_ZERO_TIME && t.nanos == 0) => {
            format!("{}.{:09}", t.secs, t.nanos)
        }
        _ => "-".to_string(),
    }
}

/// The canonical listing of an archive as our reader reads it, in the
/// format of tests/golang/tarlist.go (which lists it as Go's archive/tar
/// reads it): one line per entry, then `end`, or `error` where reading
/// fails.
pub fn tar_listing(data: &[u8]) -> String {
    use occystrap::tar::{Kind, Limits, Reader};
    use sha2::{Digest as _, Sha256};
    use std::fmt::Write;

    let mut out = String::new();
    let mut reader = Reader::new(data, Limits::default());
    loop {
        let header = match reader.next_entry() {
            Ok(Some(header)) => header,
            Ok(None) => {
                out.push_str("end\n");
                return out;
            }
            Err(_) => {
                out.push_str("error\n");
                return out;
            }
        };
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut total = 0u64;
        let mut failed = false;
        while total < TAR_MAX_CONTENT {
            let want = (TAR_MAX_CONTENT - total).min(buf.len() as u64) as usize;
            match reader.read(&mut buf[..want]) {
                Ok(0) => break,
                Ok(n) => {
                    hash.update(&buf[..n]);
                    total += n as u64;
                }
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        let mut more = "";
        if !failed && total == TAR_MAX_CONTENT {
            match reader.read(&mut buf[..1]) {
                Ok(0) => {}
                Ok(_) => more = "+",
                Err(_) => failed = true,
            }
        }
        if failed {
            out.push_str("error\n");
            return out;
        }
        let pax = if header.pax.is_empty() {
            "-".to_string()
        } else {
            let records: Vec<String> = header
                .pax
                .iter()
                .map(|(k, v)| format!("{}:{}", hex_bytes(k), hex_bytes(v)))
                .collect();
            records.join(",")
        };
        // Go returns a global header with only its name and records: its
        // times are Go's zero time, which is what our zero mtime means there.
        let mtime = (header.kind != Kind::GlobalExtension).then_some(header.mtime);
        let _ = writeln!(
            out,
            "name={} type={} link={} size={} mode={} uid={} gid={} uname={} gname={} \
             mtime={} atime={} ctime={} devmajor={} devminor={} pax={} content={}{}",
            hex_bytes(&header.name),
            header.kind.flag(),
            hex_bytes(&header.link_name),
            header.size,
            header.mode,
            header.uid,
            header.gid,
            hex_bytes(&header.uname),
            hex_bytes(&header.gname),
            go_time(mtime),
            go_time(header.atime),
            go_time(header.ctime),
            header.dev_major,
            header.dev_minor,
            pax,
            hex_bytes(&hash.finalize()),
            more,
        );
    }
}

/// Where our tar reader is known to read differently from Go's
/// archive/tar (tests/tar_differential.rs, the `tar` fuzz target). A
/// disagreement is tolerated when its archive is one of `cases` or when
/// `matches(archive, ours, go)` says it is this difference (mutants hit
/// them too). The test fails if one of the `cases` starts to agree, so
/// that the entry goes once the reader is fixed.
pub struct TarKnown {
    /// The difference, for people (tests/tar_differential.rs prints it).
    #[allow(dead_code)]
    pub what: &'static str,
    /// Cases of tests/tar_differential.rs that show it.
    pub cases: &'static [&'static str],
    /// Whether a disagreement on an archive is this difference.
    pub matches: fn(&[u8], &str, &str) -> bool,
}

pub const TAR_KNOWN_DIFFERENCES: &[TarKnown] = &[
    TarKnown {
        what: "an old GNU sparse map longer than 1 MiB (extension blocks): Go reads \
               any number of them, we refuse past MAX_SPECIAL",
        cases: &["hand-old-sparse-map-over-1mib"],
        matches: |_, _, _| false,
    },
    TarKnown {
        what: "a PAX 1.0 sparse map longer than 1 MiB: Go reads it (bounded by the \
               entry's size), we refuse past MAX_SPECIAL",
        cases: &["hand-pax-sparse-1.0-map-over-1mib"],
        matches: |_, _, _| false,
    },
];

pub fn tar_known_difference(
    name: &str,
    archive: &[u8],
    ours: &str,
    go: &str,
) -> Option<&'static TarKnown> {
    TAR_KNOWN_DIFFERENCES
        .iter()
        .find(|k| k.cases.contains(&name) || (k.matches)(archive, ours, go))
}

/// Go's archive/tar behind `tarlist --serve` (tests/golang/tarlist.go):
/// one process answers every listing request.
pub struct GoTarList {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl GoTarList {
    /// Start the program built from tests/golang/tarlist.go.
    pub fn start(program: &Path) -> GoTarList {
        use std::process::{Command, Stdio};
        let mut child = Command::new(program)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        GoTarList {
            child,
            stdin,
            stdout,
        }
    }

    /// The listing of `data` as Go reads it.
    pub fn list(&mut self, data: &[u8]) -> String {
        use std::io::Write;
        let len = u32::try_from(data.len()).expect("archive under 4 GiB");
        self.stdin
            .write_all(&len.to_be_bytes())
            .and_then(|()| self.stdin.write_all(data))
            .and_then(|()| self.stdin.flush())
            .expect("send to tarlist (did it crash?)");
        let mut len = [0u8; 4];
        self.stdout
            .read_exact(&mut len)
            .expect("answer from tarlist (did it crash?)");
        let mut listing = vec![0u8; u32::from_be_bytes(len) as usize];
        self.stdout
            .read_exact(&mut listing)
            .expect("answer from tarlist");
        String::from_utf8(listing).expect("listings are ASCII")
    }
}

impl Drop for GoTarList {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where two listings first differ: the entry's line number and both lines.
pub fn tar_difference(ours: &str, go: &str) -> Option<String> {
    if ours == go {
        return None;
    }
    let (a, b): (Vec<&str>, Vec<&str>) = (ours.lines().collect(), go.lines().collect());
    let i = (0..a.len().max(b.len()))
        .find(|&i| a.get(i) != b.get(i))
        .unwrap_or(0);
    Some(format!(
        "entry {i} differs:\n  ours: {}\n  go:   {}",
        a.get(i).unwrap_or(&"(nothing)"),
        b.get(i).unwrap_or(&"(nothing)"),
    ))
}

/// Our reader and Go's list `data` the same way (or both refuse it), or
/// differ in one of the [`TAR_KNOWN_DIFFERENCES`].
pub fn tar_with(go: &mut GoTarList, data: &[u8]) {
    let (ours, theirs) = (tar_listing(data), go.list(data));
    if let Some(diff) = tar_difference(&ours, &theirs)
        && tar_known_difference("", data, &ours, &theirs).is_none()
    {
        panic!("our tar reader disagrees with Go's archive/tar: {diff}");
    }
}

/// [`tar_with`], Go's lister taken from `$OCCYSTRAP_TARLIST` (the fuzz
/// target: `make fuzz` builds it and sets that).
#[allow(dead_code)] // by the fuzz target only
pub fn tar(data: &[u8]) {
    static GO: std::sync::OnceLock<std::sync::Mutex<GoTarList>> = std::sync::OnceLock::new();
    let go = GO.get_or_init(|| {
        let program = std::env::var_os("OCCYSTRAP_TARLIST").expect(
            "OCCYSTRAP_TARLIST: the path of tarlist built from tests/golang/tarlist.go \
             (go build -o tarlist tests/golang/tarlist.go; `make fuzz` does it)",
        );
        std::sync::Mutex::new(GoTarList::start(Path::new(&program)))
    });
    let mut go = go.lock().unwrap_or_else(|e| e.into_inner());
    tar_with(&mut go, data);
}
