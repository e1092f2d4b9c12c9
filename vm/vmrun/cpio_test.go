package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// cpioEntry is one parsed entry of a newc archive.
type cpioEntry struct {
	name         string
	ino, mode    uint32
	nlink, mtime uint32
	rmaj, rmin   uint32
	data         string
}

// parseCpio reads a newc archive independently of cpioWriter, checking the
// magic, the 4-byte alignment and the trailer.
func parseCpio(t *testing.T, b []byte) []cpioEntry {
	t.Helper()
	var entries []cpioEntry
	off := 0
	align := func() {
		for off%4 != 0 {
			require.Zero(t, b[off], "padding at %d is not zero", off)
			off++
		}
	}
	for {
		require.LessOrEqual(t, off+110, len(b), "truncated header at %d", off)
		hdr := string(b[off : off+110])
		require.Equal(t, "070701", hdr[:6], "magic at %d", off)
		var f [13]uint32
		for i := range f {
			v, err := strconv.ParseUint(hdr[6+8*i:14+8*i], 16, 32)
			require.NoError(t, err, "field %d at %d", i, off)
			f[i] = uint32(v)
		}
		off += 110
		nameLen, size := int(f[11]), int(f[6])
		require.Positive(t, nameLen)
		name := string(b[off : off+nameLen])
		require.True(t, strings.HasSuffix(name, "\x00"), "name %q is not NUL-terminated", name)
		name = strings.TrimSuffix(name, "\x00")
		off += nameLen
		align()
		data := string(b[off : off+size])
		off += size
		align()
		if name == "TRAILER!!!" {
			require.Equal(t, len(b), off, "bytes after the trailer")
			return entries
		}
		entries = append(entries, cpioEntry{name: name, ino: f[0], mode: f[1], nlink: f[4], mtime: f[5], rmaj: f[9], rmin: f[10], data: data})
	}
}

func TestCpioRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	c := newCpioWriter(&buf)
	mtime := time.Unix(1700000000, 0)
	require.NoError(t, c.Dir("/dev", 0o755, time.Time{}))
	require.NoError(t, c.CharDev("dev/console", 0o600, 5, 1))
	require.NoError(t, c.Bytes("/init", 0o755, []byte("#!init")))
	// Parents are created once, before their children.
	require.NoError(t, c.File("/a/b/c.txt", 0o644, mtime, 5, strings.NewReader("hello")))
	require.NoError(t, c.Bytes("a/b/empty", 0o600, nil))
	require.NoError(t, c.Symlink("a/link", "b/c.txt"))
	require.NoError(t, c.Dir("a/b", 0o700, time.Time{}), "an existing folder is not added again")
	require.NoError(t, c.Bytes("odd", 0o644, []byte("123")))
	require.NoError(t, c.Close())

	got := parseCpio(t, buf.Bytes())
	type short struct {
		name string
		mode uint32
		data string
	}
	var names []short
	inos := map[uint32]bool{}
	for _, e := range got {
		names = append(names, short{e.name, e.mode, e.data})
		assert.False(t, inos[e.ino], "inode %d of %s is used twice", e.ino, e.name)
		inos[e.ino] = true
	}
	assert.Equal(t, []short{
		{"dev", 0o040755, ""},
		{"dev/console", 0o020600, ""},
		{"init", 0o100755, "#!init"},
		{"a", 0o040755, ""},
		{"a/b", 0o040755, ""},
		{"a/b/c.txt", 0o100644, "hello"},
		{"a/b/empty", 0o100600, ""},
		{"a/link", 0o120777, "b/c.txt"},
		{"odd", 0o100644, "123"},
	}, names)
	assert.Equal(t, uint32(5), got[1].rmaj, "console major")
	assert.Equal(t, uint32(1), got[1].rmin, "console minor")
	assert.Equal(t, uint32(mtime.Unix()), got[5].mtime)
	assert.Equal(t, uint32(2), got[0].nlink, "folder link count")
	assert.Equal(t, uint32(1), got[5].nlink, "file link count")

	// The system's cpio, where there is one, reads it the same way.
	if _, err := exec.LookPath("cpio"); err == nil {
		cmd := exec.Command("cpio", "-it", "--quiet")
		cmd.Stdin = bytes.NewReader(buf.Bytes())
		out, err := cmd.Output()
		require.NoError(t, err)
		var want []string
		for _, n := range names {
			want = append(want, n.name)
		}
		assert.Equal(t, want, strings.Fields(string(out)))
	}
}

func TestCpioErrors(t *testing.T) {
	tests := []struct {
		name string
		do   func(c *cpioWriter) error
		want string
	}{
		{"root", func(c *cpioWriter) error { return c.Bytes("/", 0o644, nil) }, `bad entry name "/"`},
		{"dot", func(c *cpioWriter) error { return c.Dir(".", 0o755, time.Time{}) }, `bad entry name "."`},
		{"escape", func(c *cpioWriter) error { return c.Bytes("../x", 0o644, nil) }, `bad entry name "../x"`},
		{"file over folder", func(c *cpioWriter) error {
			_ = c.Dir("d", 0o755, time.Time{})
			return c.Bytes("d", 0o644, nil)
		}, "d is already a folder"},
		{"short file", func(c *cpioWriter) error {
			return c.File("f", 0o644, time.Time{}, 10, strings.NewReader("abc"))
		}, "f: got 3 bytes, want 10"},
		{"read error", func(c *cpioWriter) error {
			return c.File("f", 0o644, time.Time{}, 10, iotest.ErrReader(errors.New("disk on fire")))
		}, "f: disk on fire"},
		{"too big", func(c *cpioWriter) error {
			return c.File("big", 0o644, time.Time{}, 1<<32, strings.NewReader(""))
		}, "size 4294967296 is over the format's limit of 4294967295 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(newCpioWriter(io.Discard))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestCpioLargeFile(t *testing.T) {
	// Sizes around the 4-byte padding and the writer's buffer.
	for _, n := range []int{1, 2, 3, 4, 65535, 65536, 65537, 1 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			data := bytes.Repeat([]byte{0xa5}, n)
			var buf bytes.Buffer
			c := newCpioWriter(&buf)
			require.NoError(t, c.Bytes("f", 0o644, data))
			require.NoError(t, c.Bytes("g", 0o644, []byte("x")))
			require.NoError(t, c.Close())
			got := parseCpio(t, buf.Bytes())
			require.Len(t, got, 2)
			assert.Equal(t, string(data), got[0].data)
			assert.Equal(t, "x", got[1].data)
		})
	}
}
