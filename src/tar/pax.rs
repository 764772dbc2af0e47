//! PAX extended headers: length-prefixed `LEN key=value\n` records, whose
//! values may hold any byte (newlines included), merged into the header
//! they precede as Go's `parsePAX` and `mergePAX` do.

use std::collections::BTreeMap;

use super::Time;

/// A PAX header's records: the last of duplicate keys wins.
pub type Records = BTreeMap<Vec<u8>, Vec<u8>>;

pub(super) const SPARSE_OFFSET: &[u8] = b"GNU.sparse.offset";
pub(super) const SPARSE_NUMBYTES: &[u8] = b"GNU.sparse.numbytes";
pub(super) const SPARSE_MAP: &[u8] = b"GNU.sparse.map";

/// Parse the body of a PAX header. GNU sparse format 0.0 repeats
/// `GNU.sparse.offset` and `GNU.sparse.numbytes` in pairs: they are
/// gathered into one `GNU.sparse.map` record, as format 0.1 writes it.
pub(super) fn parse(mut data: &[u8]) -> Result<Records, &'static str> {
    let mut records = Records::new();
    let mut sparse: Vec<&[u8]> = Vec::new();
    while !data.is_empty() {
        let (key, value, rest) = record(data)?;
        data = rest;
        if key == SPARSE_OFFSET || key == SPARSE_NUMBYTES {
            let expected = if sparse.len().is_multiple_of(2) {
                SPARSE_OFFSET
            } else {
                SPARSE_NUMBYTES
            };
            if key != expected || value.contains(&b',') {
                return Err("GNU sparse 0.0 records out of order");
            }
            sparse.push(value);
        } else {
            records.insert(key.to_vec(), value.to_vec());
        }
    }
    if !sparse.is_empty() {
        records.insert(SPARSE_MAP.to_vec(), sparse.join(&b','));
    }
    Ok(records)
}

/// A record's key and value, and the data after it.
type Record<'a> = (&'a [u8], &'a [u8], &'a [u8]);

/// One record: its length (decimal, counting itself) up to the first
/// space, then `key=value`, then a newline at exactly that length.
fn record(data: &[u8]) -> Result<Record<'_>, &'static str> {
    const BAD: &str = "malformed PAX record";
    let space = data.iter().position(|&c| c == b' ').ok_or(BAD)?;
    let len = go_int(&data[..space]).ok_or(BAD)?;
    if len < 5 || len > data.len() as i64 {
        return Err(BAD);
    }
    let len = len as usize; // 5 <= len <= data.len()
    if len <= space + 1 {
        return Err(BAD);
    }
    let (body, rest) = data.split_at(len);
    let (record, newline) = body[space + 1..].split_at(len - space - 2);
    if newline != b"\n" {
        return Err(BAD);
    }
    let eq = record.iter().position(|&c| c == b'=').ok_or(BAD)?;
    let (key, value) = (&record[..eq], &record[eq + 1..]);
    let nul_forbidden = match key {
        b"path" | b"linkpath" | b"uname" | b"gname" => value,
        _ => key,
    };
    if key.is_empty() || nul_forbidden.contains(&0) {
        return Err(BAD);
    }
    Ok((key, value, rest))
}

/// A decimal integer as Go's `strconv.ParseInt(s, 10, 64)` reads it: an
/// optional sign, then digits only.
pub(super) fn go_int(s: &[u8]) -> Option<i64> {
    let (negative, digits) = match s.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Accumulate negatively so that i64::MIN parses.
    let mut x: i64 = 0;
    for &c in digits {
        x = x.checked_mul(10)?.checked_sub(i64::from(c - b'0'))?;
    }
    if negative { Some(x) } else { x.checked_neg() }
}

/// A PAX time: decimal seconds, optionally signed, optionally with a
/// fraction (digits only; past nanoseconds ignored).
pub(super) fn time(value: &[u8]) -> Option<Time> {
    let (whole, frac) = match value.iter().position(|&c| c == b'.') {
        Some(dot) => (&value[..dot], Some(&value[dot + 1..])),
        None => (value, None),
    };
    let secs = go_int(whole)?;
    let frac = match frac {
        None | Some(b"") => return Some(Time::from_secs(secs)),
        Some(f) => f,
    };
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let mut nanos: i64 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |c| i64::from(c - b'0'));
    }
    let negative = whole.first() == Some(&b'-');
    Some(Time::new(secs, if negative { -nanos } else { nanos }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(key: &str, value: &[u8]) -> Vec<u8> {
        let body = [key.as_bytes(), b"=", value, b"\n"].concat();
        let mut len = body.len() + 2;
        while len != body.len() + 1 + len.to_string().len() {
            len = body.len() + 1 + len.to_string().len();
        }
        [len.to_string().as_bytes(), b" ", &body].concat()
    }

    #[test]
    fn values_may_hold_newlines_and_any_byte() {
        let cap = b"\x01\x00\x00\x02\n\x00\x00\x00\x0a\x00";
        let data = [
            rec("SCHILY.xattr.security.capability", cap),
            rec("path", b"a\nb"),
            rec("SCHILY.acl.access", b"user::rw-\ngroup::r--\nother::r--\n"),
        ]
        .concat();
        let r = parse(&data).unwrap();
        assert_eq!(r[&b"SCHILY.xattr.security.capability"[..]], cap);
        assert_eq!(r[&b"path"[..]], b"a\nb");
        assert_eq!(r.len(), 3);
    }

    #[test]
    fn the_last_duplicate_wins_and_sparse_00_becomes_a_map() {
        let data = [
            rec("path", b"first"),
            rec("GNU.sparse.offset", b"0"),
            rec("GNU.sparse.numbytes", b"5"),
            rec("GNU.sparse.offset", b"100"),
            rec("GNU.sparse.numbytes", b"7"),
            rec("path", b"second"),
        ]
        .concat();
        let r = parse(&data).unwrap();
        assert_eq!(r[&b"path"[..]], b"second");
        assert_eq!(r[SPARSE_MAP], b"0,5,100,7");
        let bad = [rec("GNU.sparse.numbytes", b"5")].concat();
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn malformed_records_are_refused() {
        for bad in [
            &b"5 a=\n"[..],    // fine, as a control
            b"6 a=b",          // length past the end
            b"x a=b\n",        // length not a number
            b"7 ab\n\n\n",     // no '='
            b"6 =b\n\n",       // empty key
            b"4 a=\n",         // shorter than the smallest record
            b"6 a=b!",         // no newline at the end
            b"12 path=a\0b\n", // NUL in a path
        ] {
            let r = parse(bad);
            assert_eq!(
                r.is_ok(),
                bad == b"5 a=\n",
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(parse(b"+7 a=b\n").unwrap()[&b"a"[..]], b"b");
    }

    #[test]
    fn ints_and_times_as_go_parses_them() {
        assert_eq!(go_int(b"-9223372036854775808"), Some(i64::MIN));
        assert_eq!(go_int(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(go_int(b"9223372036854775808"), None);
        assert_eq!(go_int(b"+12"), Some(12));
        assert_eq!(go_int(b"1_0"), None);
        assert_eq!(go_int(b""), None);
        assert_eq!(go_int(b"-"), None);
        let t = |s: &str| time(s.as_bytes()).map(|t| (t.secs, t.nanos));
        assert_eq!(t("1700000000"), Some((1_700_000_000, 0)));
        assert_eq!(t("1700000000.5"), Some((1_700_000_000, 500_000_000)));
        assert_eq!(t("12.1234567891"), Some((12, 123_456_789)));
        assert_eq!(t("-12.5"), Some((-13, 500_000_000)));
        assert_eq!(t("-0.25"), Some((-1, 750_000_000)));
        assert_eq!(t("-3"), Some((-3, 0)));
        assert_eq!(t("12."), Some((12, 0)));
        assert_eq!(t("x"), None);
        assert_eq!(t("1.2.3"), None);
        assert_eq!(t(".5"), None);
        assert_eq!(t(""), None);
    }
}
