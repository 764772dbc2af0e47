// tarlist: Go's archive/tar as the reference for occystrap's tar reader
// (tests/tar_differential.rs, fuzz/fuzz_targets/tar.rs). Standard library
// only, so that `go build -o tarlist tarlist.go` works offline.
//
//	tarlist FILE...     for each file: "== <index>", then its listing
//	tarlist --serve     frames on stdin (u32 big-endian length + archive),
//	                    each answered on stdout by u32 length + listing
//	tarlist --write DIR archives written by Go's tar.Writer, into DIR
//
// The listing has one line per entry, fields separated by spaces, byte
// strings in hex:
//
//	name=<hex> type=<flag> link=<hex> size=<n> mode=<n> uid=<n> gid=<n>
//	uname=<hex> gname=<hex> mtime=<t> atime=<t> ctime=<t> devmajor=<n>
//	devminor=<n> pax=<k hex>:<v hex>,... content=<sha256>[+]
//
// (on one line), times as <unix secs>.<9-digit nanos> or "-" for Go's zero
// time, pax records sorted by key or "-". The content is the sha256 of the
// entry's logical content as read from the tar.Reader, at most maxContent
// bytes: "+" follows when there was more (a fuzzed sparse file can claim
// exabytes of holes). After the last entry: "end"; when Next or reading
// content fails: "error" (no message: they differ between readers), and
// nothing more.
package main

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// Keep in step with TAR_MAX_CONTENT in fuzz/checks.rs.
const maxContent = 8 << 20

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

func hexs(s string) string { return hex.EncodeToString([]byte(s)) }

// list writes the canonical listing of the archive in data.
func list(w io.Writer, data []byte) {
	// A plain stream: no Seek, as our reader sees it.
	tr := tar.NewReader(struct{ io.Reader }{bytes.NewReader(data)})
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			fmt.Fprintln(w, "end")
			return
		}
		if err != nil {
			fmt.Fprintln(w, "error")
			return
		}
		h := sha256.New()
		n, err := io.CopyN(h, tr, maxContent)
		more := ""
		if err == nil && n == maxContent {
			var one [1]byte
			k, err2 := tr.Read(one[:])
			if k > 0 {
				more = "+"
			} else if err2 != io.EOF {
				err = err2
			}
		} else if err == io.EOF {
			err = nil
		}
		if err != nil {
			fmt.Fprintln(w, "error")
			return
		}
		pax := "-"
		if len(hdr.PAXRecords) > 0 {
			keys := make([]string, 0, len(hdr.PAXRecords))
			for k := range hdr.PAXRecords {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			parts := make([]string, len(keys))
			for i, k := range keys {
				parts[i] = hexs(k) + ":" + hexs(hdr.PAXRecords[k])
			}
			pax = strings.Join(parts, ",")
		}
		fmt.Fprintf(w, "name=%s type=%d link=%s size=%d mode=%d uid=%d gid=%d uname=%s gname=%s mtime=%s atime=%s ctime=%s devmajor=%d devminor=%d pax=%s content=%x%s\n",
			hexs(hdr.Name), hdr.Typeflag, hexs(hdr.Linkname), hdr.Size, hdr.Mode,
			hdr.Uid, hdr.Gid, hexs(hdr.Uname), hexs(hdr.Gname),
			fmtTime(hdr.ModTime), fmtTime(hdr.AccessTime), fmtTime(hdr.ChangeTime),
			hdr.Devmajor, hdr.Devminor, pax, h.Sum(nil), more)
	}
}

func serve() error {
	in := bufio.NewReader(os.Stdin)
	out := bufio.NewWriter(os.Stdout)
	var lenBuf [4]byte
	for {
		if _, err := io.ReadFull(in, lenBuf[:]); err == io.EOF {
			return nil
		} else if err != nil {
			return err
		}
		data := make([]byte, binary.BigEndian.Uint32(lenBuf[:]))
		if _, err := io.ReadFull(in, data); err != nil {
			return err
		}
		var listing bytes.Buffer
		list(&listing, data)
		binary.BigEndian.PutUint32(lenBuf[:], uint32(listing.Len()))
		out.Write(lenBuf[:])
		out.Write(listing.Bytes())
		if err := out.Flush(); err != nil {
			return err
		}
	}
}

// entry is one member for write: a header and its data.
type entry struct {
	hdr  tar.Header
	data string
}

func writeArchive(path string, entries []entry) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		hdr := e.hdr
		if hdr.Typeflag == tar.TypeReg || hdr.Typeflag == 0 {
			hdr.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(&hdr); err != nil {
			return fmt.Errorf("%s: %s: %v", path, hdr.Name, err)
		}
		if _, err := io.WriteString(tw, e.data); err != nil {
			return fmt.Errorf("%s: %s: %v", path, hdr.Name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return os.WriteFile(path, buf.Bytes(), 0o644)
}

// write makes the Go-written part of the corpus.
func write(dir string) error {
	long := strings.Repeat("long-directory-name/", 14) + "file"
	t := func(s, ns int64) time.Time { return time.Unix(s, ns) }
	reg := func(name, data string, mtime time.Time, f tar.Format) entry {
		return entry{tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, ModTime: mtime, Format: f}, data}
	}
	xattrs := map[string]string{
		"SCHILY.xattr.user.nl":             "a\nb\n\x00\xff",
		"SCHILY.xattr.security.capability": "\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00",
		"SCHILY.xattr.user.empty":          "",
		"comment":                          "line1\nline2",
	}
	archives := map[string][]entry{
		"pax.tar": {
			{tar.Header{Typeflag: tar.TypeDir, Name: "dir/", Mode: 0o755, ModTime: t(1700000000, 123456789), Format: tar.FormatPAX}, ""},
			{tar.Header{Typeflag: tar.TypeReg, Name: "dir/xattrs", Mode: 0o4755, ModTime: t(1700000000, 5), PAXRecords: xattrs, Format: tar.FormatPAX}, "caps\n"},
			reg(long, "long name\n", t(-1, 0), tar.FormatPAX),
			reg("unicode-日本語-é", "u", t(-123456789, 987654321), tar.FormatPAX),
			reg("new\nline", "nl", t(253402300800, 1), tar.FormatPAX),
			{tar.Header{Typeflag: tar.TypeReg, Name: "times", Mode: 0o600, ModTime: t(1, 1), AccessTime: t(-5, 5), ChangeTime: t(1<<40, 999999999), Format: tar.FormatPAX}, "t"},
			{tar.Header{Typeflag: tar.TypeSymlink, Name: "sym", Linkname: long + "-target", ModTime: t(0, 0), Format: tar.FormatPAX}, ""},
			{tar.Header{Typeflag: tar.TypeLink, Name: "hard", Linkname: long, ModTime: t(0, 0), Format: tar.FormatPAX}, ""},
			{tar.Header{Typeflag: tar.TypeReg, Name: "ids", Uid: 1 << 40, Gid: 70000000, Uname: strings.Repeat("u", 40), Gname: "g\xffroup", ModTime: t(0, 0), Format: tar.FormatPAX}, "ids"},
			{tar.Header{Typeflag: tar.TypeChar, Name: "dev/big", Devmajor: 4095, Devminor: 1048575, Mode: 0o620, ModTime: t(0, 0), Format: tar.FormatPAX}, ""},
		},
		"gnu.tar": {
			{tar.Header{Typeflag: tar.TypeDir, Name: "dir/", Mode: 0o755, ModTime: t(1700000000, 0), Format: tar.FormatGNU}, ""},
			reg(long, "gnu long name\n", t(-1000, 0), tar.FormatGNU),
			reg("pre-1970", "old", t(-315619200, 0), tar.FormatGNU),
			reg("far-future", "new", t(1<<40, 0), tar.FormatGNU),
			{tar.Header{Typeflag: tar.TypeSymlink, Name: "sym", Linkname: long + "-target", ModTime: t(0, 0), Format: tar.FormatGNU}, ""},
			{tar.Header{Typeflag: tar.TypeLink, Name: long + "-hard", Linkname: long, ModTime: t(0, 0), Format: tar.FormatGNU}, ""},
			{tar.Header{Typeflag: tar.TypeBlock, Name: "dev/huge", Devmajor: 1 << 40, Devminor: -7, Mode: 0o660, ModTime: t(0, 0), Format: tar.FormatGNU}, ""},
			{tar.Header{Typeflag: tar.TypeChar, Name: "dev/null", Devmajor: 1, Devminor: 3, Mode: 0o666, ModTime: t(0, 0), Format: tar.FormatGNU}, ""},
			{tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o600, ModTime: t(0, 0), Format: tar.FormatGNU}, ""},
			{tar.Header{Typeflag: tar.TypeReg, Name: "ids", Uid: 1 << 40, Gid: -2, Mode: -1, ModTime: t(0, 0), AccessTime: t(-77, 0), ChangeTime: t(1<<35, 0), Format: tar.FormatGNU}, "ids"},
			reg("empty", "", t(0, 0), tar.FormatGNU),
		},
		"ustar.tar": {
			{tar.Header{Typeflag: tar.TypeDir, Name: strings.Repeat("p", 150) + "/d/", Mode: 0o755, ModTime: t(1700000000, 0), Format: tar.FormatUSTAR}, ""},
			reg(strings.Repeat("p", 150)+"/"+strings.Repeat("n", 99), "split by prefix", t(8589934591, 0), tar.FormatUSTAR),
			{tar.Header{Typeflag: tar.TypeChar, Name: "dev/tty", Devmajor: 5, Devminor: 0, Mode: 0o620, Uid: 2097151, Gid: 2097151, Uname: "root", Gname: "tty", ModTime: t(0, 0), Format: tar.FormatUSTAR}, ""},
			{tar.Header{Typeflag: tar.TypeFifo, Name: "fifo", Mode: 0o600, ModTime: t(0, 0), Format: tar.FormatUSTAR}, ""},
			reg("empty", "", t(0, 0), tar.FormatUSTAR),
		},
		"default.tar": {
			{tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "global", PAXRecords: map[string]string{"comment": "global\nheader", "mtime": "1234.5", "path": "renamed-global"}}, ""},
			reg("plain", "plain\n", t(1700000000, 0), tar.FormatUnknown),
			reg("sub-second", "ns", t(1700000000, 1), tar.FormatUnknown),
			reg(long, "chooses PAX or GNU", t(0, 0), tar.FormatUnknown),
			reg("big-mtime", "b", t(1<<34, 0), tar.FormatUnknown),
			reg("neg-mtime", "n", t(-1, 500), tar.FormatUnknown),
			{tar.Header{Typeflag: tar.TypeReg, Name: "xattr", Xattrs: map[string]string{"user.a": "1\n2"}, ModTime: t(0, 0)}, "x"},
			{tar.Header{Typeflag: tar.TypeXGlobalHeader, Name: "second-global", PAXRecords: map[string]string{"uid": "12"}}, ""},
			reg("after", strings.Repeat("z", 1025), t(0, 0), tar.FormatUnknown),
		},
	}
	names := make([]string, 0, len(archives))
	for name := range archives {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if err := writeArchive(filepath.Join(dir, name), archives[name]); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	args := os.Args[1:]
	var err error
	switch {
	case len(args) == 1 && args[0] == "--serve":
		err = serve()
	case len(args) == 2 && args[0] == "--write":
		err = write(args[1])
	case len(args) > 0 && !strings.HasPrefix(args[0], "--"):
		out := bufio.NewWriter(os.Stdout)
		for i, path := range args {
			var data []byte
			data, err = os.ReadFile(path)
			if err != nil {
				break
			}
			fmt.Fprintf(out, "== %d\n", i)
			list(out, data)
		}
		if ferr := out.Flush(); err == nil {
			err = ferr
		}
	default:
		err = fmt.Errorf("usage: tarlist FILE... | --serve | --write DIR")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "tarlist:", err)
		os.Exit(1)
	}
}
