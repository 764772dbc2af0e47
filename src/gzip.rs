//! Gzip decompression (RFC 1952), one member after another, without the
//! CRC-32 of each member's content. A layer's content is already checked
//! twice, against the blob's digest and the diff_id, so the CRC would only
//! cost a pass over every uncompressed byte on the busiest thread. The
//! framing is still held to the format: headers, reserved flags, and each
//! member's length (ISIZE) are checked.

use std::io::{self, BufRead, Read};

use flate2::bufread::DeflateDecoder;

const MAGIC: [u8; 2] = [0x1f, 0x8b];
const DEFLATE: u8 = 8;
const FHCRC: u8 = 0x02;
const FEXTRA: u8 = 0x04;
const FNAME: u8 = 0x08;
const FCOMMENT: u8 = 0x10;
const RESERVED: u8 = 0xe0;

/// The concatenated content of every gzip member in `R`.
pub struct MultiGunzip<R: BufRead> {
    state: State<R>,
    /// Bytes the current member has produced so far.
    produced: u64,
}

enum State<R: BufRead> {
    /// At a member's header (read on first use, so that its errors are
    /// reported as reading errors like any other).
    Header(R),
    Member(DeflateDecoder<R>),
    Done,
}

impl<R: BufRead> MultiGunzip<R> {
    /// Decompress `input`, which must hold at least one member.
    pub fn new(input: R) -> MultiGunzip<R> {
        MultiGunzip {
            state: State::Header(input),
            produced: 0,
        }
    }

    /// Check a finished member's trailer; then, if more input follows,
    /// it is the next member's header.
    fn end_member(&mut self, mut input: R) -> io::Result<()> {
        let mut trailer = [0u8; 8];
        input
            .read_exact(&mut trailer)
            .map_err(|_| invalid("gzip member ends without its trailer"))?;
        let isize = u32::from_le_bytes([trailer[4], trailer[5], trailer[6], trailer[7]]);
        // ISIZE is the length modulo 2^32.
        if u64::from(isize) != self.produced & 0xffff_ffff {
            return Err(invalid(format!(
                "gzip member says it holds {isize} bytes (mod 2^32), it held {}",
                self.produced
            )));
        }
        if !input.fill_buf()?.is_empty() {
            self.state = State::Header(input);
        }
        Ok(())
    }
}

impl<R: BufRead> Read for MultiGunzip<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match std::mem::replace(&mut self.state, State::Done) {
                State::Done => return Ok(0),
                State::Header(mut input) => {
                    skip_header(&mut input)?;
                    self.produced = 0;
                    self.state = State::Member(DeflateDecoder::new(input));
                }
                State::Member(mut member) => {
                    let n = member.read(buf)?;
                    if n > 0 {
                        self.produced += n as u64;
                        self.state = State::Member(member);
                        return Ok(n);
                    }
                    self.end_member(member.into_inner())?;
                }
            }
        }
    }
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

/// Consume one member header, checking what the format fixes.
fn skip_header(input: &mut impl BufRead) -> io::Result<()> {
    let mut fixed = [0u8; 10];
    input
        .read_exact(&mut fixed)
        .map_err(|_| invalid("truncated gzip header"))?;
    if fixed[..2] != MAGIC {
        return Err(invalid("not a gzip member (bad magic bytes)"));
    }
    if fixed[2] != DEFLATE {
        return Err(invalid(format!(
            "gzip compression method {} (only 8, deflate, exists)",
            fixed[2]
        )));
    }
    let flags = fixed[3];
    if flags & RESERVED != 0 {
        return Err(invalid("gzip header has reserved flags set"));
    }
    if flags & FEXTRA != 0 {
        let mut len = [0u8; 2];
        input
            .read_exact(&mut len)
            .map_err(|_| invalid("truncated gzip header"))?;
        skip_exact(input, u64::from(u16::from_le_bytes(len)))?;
    }
    for field in [FNAME, FCOMMENT] {
        if flags & field != 0 {
            skip_past_zero(input)?;
        }
    }
    if flags & FHCRC != 0 {
        skip_exact(input, 2)?;
    }
    Ok(())
}

fn skip_exact(input: &mut impl BufRead, len: u64) -> io::Result<()> {
    let skipped = io::copy(&mut input.take(len), &mut io::sink())?;
    if skipped < len {
        return Err(invalid("truncated gzip header"));
    }
    Ok(())
}

/// Skip a zero-terminated field (a file name or comment) without keeping it.
fn skip_past_zero(input: &mut impl BufRead) -> io::Result<()> {
    loop {
        let available = input.fill_buf()?;
        if available.is_empty() {
            return Err(invalid("truncated gzip header"));
        }
        match available.iter().position(|&b| b == 0) {
            Some(end) => {
                input.consume(end + 1);
                return Ok(());
            }
            None => {
                let len = available.len();
                input.consume(len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compression, GzBuilder};
    use std::io::Write;

    fn member(data: &[u8], builder: GzBuilder) -> Vec<u8> {
        let mut w = builder.write(Vec::new(), Compression::default());
        w.write_all(data).unwrap();
        w.finish().unwrap()
    }

    fn gunzip(bytes: &[u8]) -> io::Result<Vec<u8>> {
        // A small buffer, so members and headers straddle refills.
        let mut out = Vec::new();
        MultiGunzip::new(io::BufReader::with_capacity(7, bytes)).read_to_end(&mut out)?;
        Ok(out)
    }

    #[test]
    fn members_with_every_header_field_concatenate() {
        let big: Vec<u8> = (0..200_000u32)
            .flat_map(|i| (i % 251).to_le_bytes())
            .collect();
        let mut input = member(&big, GzBuilder::new());
        input.extend(member(
            b"second",
            GzBuilder::new()
                .filename("a-rather-long-file-name.tar")
                .comment("a comment")
                .extra(vec![1, 2, 3, 4, 5]),
        ));
        input.extend(member(b"", GzBuilder::new()));
        let mut expected = big.clone();
        expected.extend(b"second");
        assert_eq!(gunzip(&input).unwrap(), expected);

        // A header CRC (FHCRC) is skipped like the other optional fields.
        let mut with_hcrc = member(b"x", GzBuilder::new());
        with_hcrc[3] |= FHCRC;
        with_hcrc.splice(10..10, [0xaa, 0xbb]);
        assert_eq!(gunzip(&with_hcrc).unwrap(), b"x");
    }

    #[test]
    fn broken_framing_is_refused() {
        let good = member(b"hello, layer", GzBuilder::new());
        let fails = |bytes: &[u8], needle: &str| {
            let err = gunzip(bytes).unwrap_err();
            assert!(err.to_string().contains(needle), "{needle:?} in {err}");
        };
        fails(&good[..5], "truncated gzip header");
        fails(&good[..good.len() - 3], "without its trailer");
        let mut wrong_len = good.clone();
        let at = wrong_len.len() - 4;
        wrong_len[at] ^= 1;
        fails(&wrong_len, "holds");
        let mut garbage_after = good.clone();
        garbage_after.extend(b"PK\x03\x04 and then some");
        fails(&garbage_after, "bad magic");
        let mut reserved = good.clone();
        reserved[3] = 0x20;
        fails(&reserved, "reserved flags");
        let mut method = good.clone();
        method[2] = 7;
        fails(&method, "compression method 7");
        let mut unnamed = good[..10].to_vec();
        unnamed[3] = FNAME;
        unnamed.extend(b"a name with no end");
        fails(&unnamed, "truncated gzip header");
        fails(b"", "truncated gzip header");
        assert!(gunzip(&good[..15]).is_err(), "cut in the deflate data");
    }
}
