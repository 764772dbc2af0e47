//! Hand-built archives for each of Go's choices. The differential tests
//! (`tests/tar_differential.rs`) compare with Go itself on real archives.

use super::*;

/// A USTAR header block with a valid checksum.
fn header(name: &str, flag: u8, size: u64) -> Block {
    let mut b = [0u8; BLOCK];
    b[..name.len()].copy_from_slice(name.as_bytes());
    b[100..108].copy_from_slice(b"0000644\0");
    b[108..116].copy_from_slice(b"0001750\0");
    b[116..124].copy_from_slice(b"0001750\0");
    b[124..136].copy_from_slice(format!("{size:011o}\0").as_bytes());
    b[136..148].copy_from_slice(b"14520000000\0");
    b[156] = flag;
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    seal(b)
}

fn seal(mut b: Block) -> Block {
    b[148..156].fill(b' ');
    let sum: u32 = b.iter().map(|&c| u32::from(c)).sum();
    b[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
    b
}

fn gnu(mut b: Block) -> Block {
    b[257..265].copy_from_slice(b"ustar  \0");
    seal(b)
}

fn padded(data: &[u8]) -> Vec<u8> {
    let mut v = data.to_vec();
    v.resize(data.len().div_ceil(BLOCK) * BLOCK, 0);
    v
}

fn record(key: &str, value: &[u8]) -> Vec<u8> {
    let body = [key.as_bytes(), b"=", value, b"\n"].concat();
    let mut len = body.len() + 2;
    while len != body.len() + 1 + len.to_string().len() {
        len = body.len() + 1 + len.to_string().len();
    }
    [len.to_string().as_bytes(), b" ", &body].concat()
}

fn pax(flag: u8, records: &[(&str, &[u8])]) -> Vec<u8> {
    let body: Vec<u8> = records.iter().flat_map(|(k, v)| record(k, v)).collect();
    [
        header("PaxHeaders/x", flag, body.len() as u64).to_vec(),
        padded(&body),
    ]
    .concat()
}

fn file(name: &str, content: &[u8]) -> Vec<u8> {
    [
        header(name, b'0', content.len() as u64).to_vec(),
        padded(content),
    ]
    .concat()
}

const END: [u8; 1024] = [0; 1024];

/// Every entry's header and logical content, or the error that stopped it.
fn read_all(archive: &[u8], limits: Limits) -> Result<Vec<(Header, Vec<u8>)>> {
    let mut r = Reader::new(archive, limits);
    let mut out = Vec::new();
    while let Some(h) = r.next_entry()? {
        let mut content = Vec::new();
        r.read_to_end(&mut content)
            .map_err(|e| match e.into_inner() {
                Some(inner) => match inner.downcast::<TarError>() {
                    Ok(tar) => *tar,
                    Err(other) => TarError::Io(io::Error::other(other)),
                },
                None => TarError::Failed,
            })?;
        out.push((h, content));
    }
    Ok(out)
}

fn names(entries: &[(Header, Vec<u8>)]) -> Vec<String> {
    entries
        .iter()
        .map(|(h, _)| String::from_utf8_lossy(&h.name).into_owned())
        .collect()
}

#[test]
fn plain_entries_and_the_end_marker() {
    let archive = [
        header("d/", b'5', 0).to_vec(),
        file("d/f", b"hello"),
        header("old-dir/", 0, 0).to_vec(),
        header("old-file", 0, 0).to_vec(),
        END.to_vec(),
        b"trailing bytes are not read".to_vec(),
    ]
    .concat();
    let all = read_all(&archive, Limits::default()).unwrap();
    assert_eq!(names(&all), ["d/", "d/f", "old-dir/", "old-file"]);
    assert_eq!(all[1].1, b"hello");
    assert_eq!(all[1].0.mode, 0o644);
    assert_eq!((all[1].0.uid, all[1].0.gid), (1000, 1000));
    assert_eq!(all[1].0.mtime, Time::from_secs(0o14520000000));
    assert_eq!(all[2].0.kind, Kind::Directory);
    assert_eq!(all[3].0.kind, Kind::Regular);
    // No end marker at all, or a single zero block: the end, as in Go.
    assert_eq!(
        read_all(&file("f", b"x"), Limits::default()).unwrap().len(),
        1
    );
    let one_zero = [file("f", b"x"), vec![0; 512]].concat();
    assert_eq!(read_all(&one_zero, Limits::default()).unwrap().len(), 1);
}

#[test]
fn a_single_zero_block_then_a_header_is_an_error() {
    let archive = [file("a", b"1"), vec![0; 512], file("b", b"2"), END.to_vec()].concat();
    let err = read_all(&archive, Limits::default()).unwrap_err();
    assert!(
        matches!(err, TarError::Header { offset: 1536, .. }),
        "{err}"
    );
}

#[test]
fn truncation_is_an_error() {
    let archive = file("a", &[7; 700]);
    for cut in [100, 512 + 300] {
        let err = read_all(&archive[..cut], Limits::default()).unwrap_err();
        assert!(matches!(err, TarError::Truncated { .. }), "{cut}: {err}");
    }
    // Ending where the padding starts, or inside it, reads as the end (as
    // Go's tryReadFull has it).
    for cut in [512 + 700, 512 + 700 + 10] {
        assert_eq!(
            read_all(&archive[..cut], Limits::default()).unwrap().len(),
            1
        );
    }
}

#[test]
fn header_only_types_have_no_data_whatever_their_size() {
    // Go reads the next header straight after a directory that claims
    // 1024 bytes; so must we.
    let archive = [
        header("d/", b'5', 1024).to_vec(),
        header("l", b'2', 512).to_vec(),
        file("f", b"x"),
        END.to_vec(),
    ]
    .concat();
    let all = read_all(&archive, Limits::default()).unwrap();
    assert_eq!(names(&all), ["d/", "l", "f"]);
    assert_eq!(all[0].0.size, 1024, "the field is reported as it is");
    assert!(all[0].1.is_empty());
}

#[test]
fn checksums_signed_or_unsigned_but_not_wrong() {
    let mut b = header("caf\u{e9}", b'0', 0);
    b[148..156].fill(b' ');
    let signed: i64 = b.iter().map(|&c| i64::from(c as i8)).sum();
    b[148..156].copy_from_slice(format!("{signed:06o}\0 ").as_bytes());
    let all = read_all(&[b.to_vec(), END.to_vec()].concat(), Limits::default()).unwrap();
    assert_eq!(all[0].0.name, "caf\u{e9}".as_bytes());
    let mut wrong = header("f", b'0', 0);
    wrong[0] = b'g';
    let err = read_all(&wrong, Limits::default()).unwrap_err();
    assert!(err.to_string().contains("checksum"), "{err}");
}

#[test]
fn base256_numbers() {
    let mut b = header("old", b'0', 0);
    b[136..148].fill(0xff); // mtime -1
    b[147] = 0x9c; // ... -100
    b[124..136].fill(0);
    b[124] = 0x80;
    b[135] = 3; // size 3 in base-256
    let archive = [seal(b).to_vec(), padded(b"abc"), END.to_vec()].concat();
    let all = read_all(&archive, Limits::default()).unwrap();
    assert_eq!(all[0].0.mtime.secs, -100);
    assert_eq!(all[0].1, b"abc");
    let mut huge = header("big", b'0', 0);
    huge[124..136].fill(0xff);
    huge[124] = 0x80; // positive, 95 bits
    let err = read_all(&seal(huge), Limits::default()).unwrap_err();
    assert!(err.to_string().contains("size field"), "{err}");
}

#[test]
fn unknown_types_are_returned_as_other() {
    let archive = [header("z", b'Z', 3).to_vec(), padded(b"abc"), END.to_vec()].concat();
    let all = read_all(&archive, Limits::default()).unwrap();
    assert_eq!(all[0].0.kind, Kind::Other(b'Z'));
    assert_eq!(all[0].1, b"abc");
}

#[test]
fn pax_records_with_newlines_duplicates_and_empties() {
    let cap = b"\x01\x00\x00\x02\x0a\x00\x00\x00\x0a\x00\x00\x00";
    let archive = [
        // A first PAX header is replaced by the second (as Go).
        pax(b'x', &[("path", b"ignored")]),
        pax(
            b'x',
            &[
                ("path", b"first"),
                ("SCHILY.xattr.security.capability", cap),
                ("SCHILY.xattr.user.empty", b""),
                ("path", b"line\nbreak"),
                ("uid", b"70000"),
                ("mtime", b"-1.5"),
                ("uname", b""),
            ],
        ),
        file("short", b"data"),
        END.to_vec(),
    ]
    .concat();
    let all = read_all(&archive, Limits::default()).unwrap();
    let h = &all[0].0;
    assert_eq!(h.name, b"line\nbreak");
    assert_eq!(h.uid, 70000);
    assert_eq!(
        h.mtime,
        Time {
            secs: -2,
            nanos: 500_000_000
        }
    );
    let mut xattrs = h.xattrs();
    xattrs.sort();
    assert_eq!(
        xattrs,
        [
            (b"security.capability".to_vec(), cap.to_vec()),
            (b"user.empty".to_vec(), vec![]),
        ]
    );
    assert_eq!(all[0].1, b"data");
    let bad = [pax(b'x', &[("uid", b"x1")]), file("f", b""), END.to_vec()].concat();
    assert!(read_all(&bad, Limits::default()).is_err());
}

#[test]
fn libarchive_xattrs_fill_in_for_missing_schily_ones() {
    let archive = [
        pax(
            b'x',
            &[
                ("LIBARCHIVE.xattr.user.a%3Db", b"aGVsbG8"),
                ("LIBARCHIVE.xattr.user.both", b"b3RoZXI="),
                ("SCHILY.xattr.user.both", b"kept"),
            ],
        ),
        file("f", b""),
        END.to_vec(),
    ]
    .concat();
    let all = read_all(&archive, Limits::default()).unwrap();
    let mut xattrs = all[0].0.xattrs();
    xattrs.sort();
    assert_eq!(
        xattrs,
        [
            (b"user.a=b".to_vec(), b"hello".to_vec()),
            (b"user.both".to_vec(), b"kept".to_vec()),
        ]
    );
}

#[test]
fn global_headers_are_entries_of_their_own_and_change_nothing() {
    let archive = [
        pax(b'g', &[("comment", b"git commit"), ("uid", b"5")]),
        file("f", b""),
        END.to_vec(),
    ]
    .concat();
    let all = read_all(
        &archive,
        Limits {
            max_entries: Some(1),
            max_size: None,
        },
    )
    .unwrap();
    assert_eq!(all[0].0.kind, Kind::GlobalExtension);
    assert_eq!(all[0].0.pax[&b"comment"[..]], b"git commit");
    assert_eq!(all[1].0.uid, 1000);
    // A record that does not parse: the global header loses its records
    // (Go ignores the merge error there), and reading goes on.
    let odd = [pax(b'g', &[("uid", b"x")]), file("f", b""), END.to_vec()].concat();
    let all = read_all(&odd, Limits::default()).unwrap();
    assert!(all[0].0.pax.is_empty());
    assert_eq!(names(&all)[1], "f");
}

#[test]
fn gnu_long_names_and_links() {
    let long = "n".repeat(300);
    let link = "l".repeat(200);
    let archive = [
        pax(b'x', &[("path", b"from-pax")]),
        header("././@LongLink", b'L', long.len() as u64 + 1).to_vec(),
        padded(format!("{long}\0junk").as_bytes())[..512].to_vec(),
        header("././@LongLink", b'K', link.len() as u64).to_vec(),
        padded(link.as_bytes()),
        header("short", b'2', 0).to_vec(),
        END.to_vec(),
    ]
    .concat();
    let all = read_all(&archive, Limits::default()).unwrap();
    assert_eq!(all[0].0.name, long.as_bytes(), "a GNU long name beats PAX");
    assert_eq!(all[0].0.link_name, link.as_bytes());
}

#[test]
fn special_headers_are_capped_before_they_are_read() {
    let archive = header("PaxHeaders/x", b'x', 128 << 20);
    let err = read_all(&archive, Limits::default()).unwrap_err();
    assert!(
        matches!(err, TarError::TooLong { size, .. } if size == 128 << 20),
        "{err}"
    );
    assert!(err.to_string().len() < 200);
    let long = header("././@LongLink", b'L', MAX_SPECIAL + 1);
    assert!(matches!(
        read_all(&long, Limits::default()).unwrap_err(),
        TarError::TooLong { .. }
    ));
}

fn sparse_content(size: usize, regions: &[(usize, &[u8])]) -> Vec<u8> {
    let mut v = vec![0u8; size];
    for (offset, data) in regions {
        v[*offset..offset + data.len()].copy_from_slice(data);
    }
    v
}

fn chunks(archive: &[u8]) -> Vec<Chunk> {
    let mut r = Reader::new(archive, Limits::default());
    r.next_entry().unwrap().unwrap();
    let mut buf = [0u8; 4];
    let mut out = Vec::new();
    loop {
        let c = r.read_chunk(&mut buf).unwrap();
        out.push(c);
        if c == Chunk::End {
            return out;
        }
    }
}

#[test]
fn sparse_pax_1_0() {
    // tar --format=posix --sparse: the map starts the data.
    let map = padded(b"2\n0\n3\n10000\n2\n");
    let data = [map, padded(b"abcyz")].concat();
    let archive = [
        pax(
            b'x',
            &[
                ("GNU.sparse.major", b"1"),
                ("GNU.sparse.minor", b"0"),
                ("GNU.sparse.name", b"real/name"),
                ("GNU.sparse.realsize", b"10002"),
            ],
        ),
        header("./GNUSparseFile.123/name", b'0', 512 + 5).to_vec(),
        data,
        END.to_vec(),
    ]
    .concat();
    let all = read_all(&archive, Limits::default()).unwrap();
    let (h, content) = &all[0];
    assert_eq!(h.name, b"real/name");
    assert_eq!(h.size, 10002);
    assert_eq!(
        h.sparse.as_deref(),
        Some(
            &[
                Region { offset: 0, len: 3 },
                Region {
                    offset: 10000,
                    len: 2
                }
            ][..]
        )
    );
    assert_eq!(
        *content,
        sparse_content(10002, &[(0, b"abc"), (10000, b"yz")])
    );
    assert_eq!(
        chunks(&archive),
        [
            Chunk::Data { offset: 0, len: 3 },
            Chunk::Hole {
                offset: 3,
                len: 9997
            },
            Chunk::Data {
                offset: 10000,
                len: 2
            },
            Chunk::End
        ]
    );
}

#[test]
fn sparse_pax_0_0_and_0_1() {
    let v00 = pax(
        b'x',
        &[
            ("GNU.sparse.size", b"20"),
            ("GNU.sparse.numblocks", b"2"),
            ("GNU.sparse.offset", b"2"),
            ("GNU.sparse.numbytes", b"1"),
            ("GNU.sparse.offset", b"19"),
            ("GNU.sparse.numbytes", b"1"),
        ],
    );
    let v01 = pax(
        b'x',
        &[
            ("GNU.sparse.major", b"0"),
            ("GNU.sparse.minor", b"1"),
            ("GNU.sparse.size", b"20"),
            ("GNU.sparse.numblocks", b"2"),
            ("GNU.sparse.map", b"2,1,19,1"),
        ],
    );
    for ext in [v00, v01] {
        let archive = [ext, file("s", b"AZ"), END.to_vec()].concat();
        let all = read_all(&archive, Limits::default()).unwrap();
        assert_eq!(all[0].1, sparse_content(20, &[(2, b"A"), (19, b"Z")]));
    }
}

#[test]
fn sparse_old_gnu_with_an_extension_block() {
    let mut b = gnu(header("s", b'S', 6));
    let put = |b: &mut [u8], at: usize, v: u64| {
        b[at..at + 12].copy_from_slice(format!("{v:011o}\0").as_bytes());
    };
    // Four regions in the header, a fifth and sixth in an extension.
    for i in 0..4 {
        put(&mut b, 386 + i * 24, i as u64 * 10);
        put(&mut b, 386 + i * 24 + 12, 1);
    }
    b[482] = 1;
    put(&mut b, 483, 100);
    let mut ext = [0u8; BLOCK];
    put(&mut ext, 0, 40);
    put(&mut ext, 12, 1);
    put(&mut ext, 24, 99);
    put(&mut ext, 36, 1);
    let archive = [
        seal(b).to_vec(),
        ext.to_vec(),
        padded(b"abcdef"),
        END.to_vec(),
    ]
    .concat();
    let all = read_all(&archive, Limits::default()).unwrap();
    assert_eq!(all[0].0.kind, Kind::GnuSparse);
    assert_eq!(all[0].0.size, 100);
    let want: Vec<(usize, &[u8])> = vec![
        (0, b"a"),
        (10, b"b"),
        (20, b"c"),
        (30, b"d"),
        (40, b"e"),
        (99, b"f"),
    ];
    assert_eq!(all[0].1, sparse_content(100, &want));
}

#[test]
fn sparse_maps_that_disagree_with_the_data_are_errors() {
    let with = |map: &[u8], size: &[u8], data: &[u8]| {
        [
            pax(
                b'x',
                &[
                    ("GNU.sparse.major", b"0"),
                    ("GNU.sparse.minor", b"1"),
                    ("GNU.sparse.size", size),
                    ("GNU.sparse.numblocks", b"1"),
                    ("GNU.sparse.map", map),
                ],
            ),
            file("s", data),
            END.to_vec(),
        ]
        .concat()
    };
    assert!(read_all(&with(b"0,2", b"4", b"ab"), Limits::default()).is_ok());
    for (map, size, data) in [
        (&b"0,2"[..], &b"4"[..], &b"abc"[..]), // more data than mapped
        (b"0,3", b"4", b"ab"),                 // less
        (b"0,5", b"4", b"abcde"),              // past the end
        (b"0,2", b"-4", b"ab"),                // negative size
    ] {
        assert!(
            read_all(&with(map, size, data), Limits::default()).is_err(),
            "{map:?} {size:?}"
        );
    }
    // A sparse map on a directory is refused.
    let dir = [
        pax(
            b'x',
            &[("GNU.sparse.map", b"0,1"), ("GNU.sparse.numblocks", b"1")],
        ),
        header("d/", b'5', 0).to_vec(),
        END.to_vec(),
    ]
    .concat();
    assert!(read_all(&dir, Limits::default()).is_err());
}

#[test]
fn limits_count_entries_and_logical_sizes() {
    let archive = [
        file("a", b"1"),
        file("b", b"22"),
        header("d/", b'5', 0).to_vec(),
        END.to_vec(),
    ]
    .concat();
    let l = |max_entries, max_size| Limits {
        max_entries,
        max_size,
    };
    assert!(read_all(&archive, l(Some(3), Some(3))).is_ok());
    assert!(matches!(
        read_all(&archive, l(Some(2), None)),
        Err(TarError::TooManyEntries { limit: 2 })
    ));
    assert!(matches!(
        read_all(&archive, l(None, Some(2))),
        Err(TarError::TooLarge { limit: 2 })
    ));
    // A 104-byte map claiming a 1 GiB file counts as 1 GiB.
    let sparse = [
        pax(
            b'x',
            &[
                ("GNU.sparse.major", b"0"),
                ("GNU.sparse.minor", b"1"),
                ("GNU.sparse.size", b"1073741824"),
                ("GNU.sparse.numblocks", b"1"),
                ("GNU.sparse.map", b"0,1"),
            ],
        ),
        file("s", b"x"),
        END.to_vec(),
    ]
    .concat();
    assert!(matches!(
        Reader::new(&sparse[..], l(None, Some(16 << 20))).next_entry(),
        Err(TarError::TooLarge { .. })
    ));
}

#[test]
fn skim_skips_content_and_errors_stick() {
    let archive = [file("a", &[1; 2000]), file("b", b"2"), END.to_vec()].concat();
    let mut r = Reader::new(&archive[..], Limits::default());
    assert_eq!(r.skim().unwrap(), 2);
    let broken = [file("a", b"1"), vec![1; 512]].concat();
    let mut r = Reader::new(&broken[..], Limits::default());
    assert!(r.skim().is_err());
    assert!(matches!(r.next_entry(), Err(TarError::Failed)));
}
