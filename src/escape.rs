//! Names from an image, made safe to print: a layer chooses its file
//! names, and a name holding terminal escape sequences, NUL bytes or
//! invalid UTF-8 must not reach a terminal or a log as it is.

use std::fmt::Write;
use std::path::Path;

/// `raw` with printable UTF-8 kept, and control characters, backslashes
/// and bytes that are not UTF-8 written as escapes (`\n`, `\x1b`, `\\`).
pub fn bytes(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for chunk in raw.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                c if (c as u32) < 0x80 && c.is_ascii_control() => {
                    let _ = write!(out, "\\x{:02x}", c as u32);
                }
                // C1 controls and the like: invisible or interpreted.
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", c as u32);
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out
}

/// A path, escaped as [`bytes()`].
pub fn path(p: &Path) -> String {
    use std::os::unix::ffi::OsStrExt;
    bytes(p.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_interpret() {
        assert_eq!(bytes(b"usr/bin/sh"), "usr/bin/sh");
        assert_eq!(bytes("caf\u{e9}/\u{65e5}".as_bytes()), "caf\u{e9}/\u{65e5}");
        assert_eq!(bytes(b"a\x1b[31mred\0b"), "a\\x1b[31mred\\x00b");
        assert_eq!(bytes(b"new\nline\\"), "new\\nline\\\\");
        assert_eq!(bytes(b"bad\xff\xfe"), "bad\\xff\\xfe");
        assert_eq!(bytes("c1\u{9b}x".as_bytes()), "c1\\u{9b}x");
        assert_eq!(path(Path::new("a\x07b")), "a\\x07b");
    }
}
