package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"strings"
	"time"
)

// cpioWriter writes a cpio archive in the "newc" format (the one the Linux
// kernel unpacks as an initramfs): per entry a 110-byte ASCII header
// ("070701" and 13 eight-digit hex fields), the NUL-terminated name padded to
// 4 bytes, and the data padded to 4 bytes; the archive ends with the entry
// "TRAILER!!!".
//
// The kernel does not create missing parent folders, so the writer adds them
// itself, each once. Names are relative ("dev/console"); a leading "/" is
// dropped.
type cpioWriter struct {
	w    *bufio.Writer
	n    int64 // bytes written
	ino  uint32
	dirs map[string]bool
	err  error
}

func newCpioWriter(w io.Writer) *cpioWriter {
	return &cpioWriter{w: bufio.NewWriterSize(w, 1<<16), dirs: map[string]bool{".": true}}
}

// Mode bits of the file types, as in stat(2).
const (
	cpioDir     = 0o040000
	cpioRegular = 0o100000
	cpioSymlink = 0o120000
	cpioCharDev = 0o020000
)

// unixPerm converts permission bits, with setuid, setgid and sticky, to
// their stat(2) values.
func unixPerm(m fs.FileMode) uint32 {
	p := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		p |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		p |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		p |= 0o1000
	}
	return p
}

func (c *cpioWriter) write(b []byte) {
	if c.err != nil {
		return
	}
	n, err := c.w.Write(b)
	c.n += int64(n)
	c.err = err
}

func (c *cpioWriter) pad() {
	if r := c.n % 4; r != 0 {
		c.write(make([]byte, 4-r))
	}
}

func cleanName(name string) (string, error) {
	n := path.Clean(strings.TrimLeft(name, "/"))
	if n == "." || n == ".." || strings.HasPrefix(n, "../") {
		return "", fmt.Errorf("cpio: bad entry name %q", name)
	}
	return n, nil
}

type cpioHeader struct {
	name        string
	mode        uint32 // type and permission bits
	size        int64
	mtime       time.Time
	nlink       uint32
	major, minr uint32 // device numbers of a device node
}

func (c *cpioWriter) header(h cpioHeader) {
	if c.err != nil {
		return
	}
	if h.size < 0 || h.size > math.MaxUint32 {
		c.err = fmt.Errorf("cpio: %s: size %d is over the format's limit of %d bytes", h.name, h.size, uint64(math.MaxUint32))
		return
	}
	if h.nlink == 0 {
		h.nlink = 1
	}
	var mtime uint32
	if !h.mtime.IsZero() && h.mtime.Unix() > 0 && h.mtime.Unix() <= math.MaxUint32 {
		mtime = uint32(h.mtime.Unix())
	}
	c.ino++
	hdr := fmt.Sprintf("070701%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x%08x",
		c.ino, h.mode, 0, 0, h.nlink, mtime, uint32(h.size), 0, 0, h.major, h.minr, len(h.name)+1, 0)
	c.write([]byte(hdr))
	c.write([]byte(h.name))
	c.write([]byte{0})
	c.pad()
}

// mkdirAll adds name and its missing parents as folders.
func (c *cpioWriter) mkdirAll(name string, perm fs.FileMode, mtime time.Time) {
	if c.dirs[name] || c.err != nil {
		return
	}
	c.mkdirAll(path.Dir(name), 0o755, time.Time{})
	c.header(cpioHeader{name: name, mode: cpioDir | unixPerm(perm), mtime: mtime, nlink: 2})
	c.dirs[name] = true
}

// Dir adds a folder (and its parents).
func (c *cpioWriter) Dir(name string, perm fs.FileMode, mtime time.Time) error {
	n, err := cleanName(name)
	if err != nil {
		return err
	}
	c.mkdirAll(n, perm, mtime)
	return c.err
}

func (c *cpioWriter) entry(name string, h cpioHeader) (string, error) {
	n, err := cleanName(name)
	if err != nil {
		return "", err
	}
	if c.dirs[n] {
		return "", fmt.Errorf("cpio: %s is already a folder", n)
	}
	c.mkdirAll(path.Dir(n), 0o755, time.Time{})
	h.name = n
	c.header(h)
	return n, c.err
}

// File adds a regular file of exactly size bytes read from r.
func (c *cpioWriter) File(name string, perm fs.FileMode, mtime time.Time, size int64, r io.Reader) error {
	n, err := c.entry(name, cpioHeader{mode: cpioRegular | unixPerm(perm), size: size, mtime: mtime})
	if err != nil {
		return err
	}
	copied, err := io.Copy(c.w, io.LimitReader(r, size))
	c.n += copied
	if err != nil {
		c.err = fmt.Errorf("cpio: %s: %w", n, err)
		return c.err
	}
	if copied != size {
		c.err = fmt.Errorf("cpio: %s: got %d bytes, want %d (file changed while being read?)", n, copied, size)
		return c.err
	}
	c.pad()
	return c.err
}

// Bytes adds a regular file holding data.
func (c *cpioWriter) Bytes(name string, perm fs.FileMode, data []byte) error {
	return c.File(name, perm, time.Time{}, int64(len(data)), bytes.NewReader(data))
}

// Symlink adds a symbolic link to target.
func (c *cpioWriter) Symlink(name, target string) error {
	if _, err := c.entry(name, cpioHeader{mode: cpioSymlink | 0o777, size: int64(len(target))}); err != nil {
		return err
	}
	c.write([]byte(target))
	c.pad()
	return c.err
}

// CharDev adds a character device node.
func (c *cpioWriter) CharDev(name string, perm fs.FileMode, major, minor uint32) error {
	_, err := c.entry(name, cpioHeader{mode: cpioCharDev | unixPerm(perm), major: major, minr: minor})
	return err
}

// Close writes the trailer and flushes; it does not close the underlying
// writer.
func (c *cpioWriter) Close() error {
	c.header(cpioHeader{name: "TRAILER!!!"})
	if c.err == nil {
		c.err = c.w.Flush()
	}
	return c.err
}
