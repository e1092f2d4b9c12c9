package kmod

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/ulikunitz/xz"
)

// fakeModule returns a minimal ELF relocatable file with a .modinfo section
// holding the entries: enough for ReadInfo, not for a kernel.
func fakeModule(t *testing.T, entries ...string) []byte {
	t.Helper()
	modinfo := []byte(strings.Join(entries, "\x00") + "\x00")
	shstrtab := []byte("\x00.modinfo\x00.shstrtab\x00")
	const ehsize, shentsize = 64, 64
	shoff := ehsize + len(modinfo) + len(shstrtab)
	shoff += (8 - shoff%8) % 8
	var b bytes.Buffer
	h := elf.Header64{
		Type: uint16(elf.ET_REL), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Shoff: uint64(shoff), Ehsize: ehsize, Shentsize: shentsize, Shnum: 3, Shstrndx: 2,
	}
	copy(h.Ident[:], elf.ELFMAG)
	h.Ident[elf.EI_CLASS] = byte(elf.ELFCLASS64)
	h.Ident[elf.EI_DATA] = byte(elf.ELFDATA2LSB)
	h.Ident[elf.EI_VERSION] = byte(elf.EV_CURRENT)
	require.NoError(t, binary.Write(&b, binary.LittleEndian, h))
	b.Write(modinfo)
	b.Write(shstrtab)
	b.Write(make([]byte, shoff-b.Len()))
	sections := []elf.Section64{
		{},
		{Name: 1, Type: uint32(elf.SHT_PROGBITS), Off: ehsize, Size: uint64(len(modinfo)), Addralign: 1},
		{Name: 10, Type: uint32(elf.SHT_STRTAB), Off: uint64(ehsize + len(modinfo)), Size: uint64(len(shstrtab)), Addralign: 1},
	}
	require.NoError(t, binary.Write(&b, binary.LittleEndian, sections))
	return b.Bytes()
}

// compress returns data compressed as kind ("xz", "zstd", "gzip"; "" as
// it is).
func compress(t *testing.T, data []byte, kind string) []byte {
	t.Helper()
	var out bytes.Buffer
	var w io.WriteCloser
	var err error
	switch kind {
	case "":
		return data
	case "xz":
		w, err = xz.NewWriter(&out)
	case "zstd":
		w, err = zstd.NewWriter(&out)
	case "gzip":
		w = gzip.NewWriter(&out)
	default:
		t.Fatalf("no compression %q", kind)
	}
	require.NoError(t, err)
	_, err = w.Write(data)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	return out.Bytes()
}

// writeModule writes a fake module to root/rel, compressed by rel's suffix.
func writeModule(t *testing.T, root, rel string, entries ...string) {
	t.Helper()
	p := filepath.Join(root, rel)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
	require.NoError(t, os.WriteFile(p, compress(t, fakeModule(t, entries...), Compression(rel)), 0o644))
}

func writeFile(t *testing.T, root, rel, text string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(root, rel), []byte(text), 0o644))
}

func TestName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/drivers/net/virtio_net.ko.xz": "virtio_net",
		"virtio-net":                          "virtio_net",
		"drivers/net/netdevsim/netdevsim.o":   "netdevsim",
		"extra/ptp_mock.ko":                   "ptp_mock",
		"a/b/x-y.ko.zst":                      "x_y",
		"x.ko.gz":                             "x",
	} {
		assert.Equal(t, want, Name(in), in)
	}
}

func TestReadInfoEveryCompression(t *testing.T) {
	root := t.TempDir()
	for _, rel := range []string{"a.ko", "b.ko.xz", "c.ko.zst", "d.ko.gz"} {
		writeModule(t, root, rel, "license=GPL", "depends=x,y", "vermagic=7.3.4 SMP")
		info, err := ReadInfo(filepath.Join(root, rel))
		require.NoError(t, err, rel)
		assert.Equal(t, map[string]string{"license": "GPL", "depends": "x,y", "vermagic": "7.3.4 SMP"}, info, rel)
	}
}

func TestReadInfoNotAModule(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "junk.ko", "not an ELF file")
	_, err := ReadInfo(filepath.Join(root, "junk.ko"))
	assert.ErrorContains(t, err, "junk.ko")
}

// An installed tree: dependencies from modules.dep, built-in modules from
// modules.builtin.
func TestResolveFromModulesDep(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "modules.dep", strings.Join([]string{
		"extra/netdevsim.ko: kernel/net/psample/psample.ko.xz extra/ptp_mock.ko",
		"extra/ptp_mock.ko:",
		"kernel/net/psample/psample.ko.xz:",
		"kernel/drivers/net/veth.ko.xz:",
		"kernel/drivers/net/virtio_net.ko.xz: kernel/drivers/net/net_failover.ko.xz kernel/net/core/failover.ko.xz",
		"kernel/drivers/net/net_failover.ko.xz: kernel/net/core/failover.ko.xz",
		"kernel/net/core/failover.ko.xz:",
		"kernel/drivers/needs-missing.ko.xz: kernel/drivers/gone.ko.xz",
	}, "\n")+"\n")
	writeFile(t, root, "modules.builtin", "kernel/drivers/ptp/ptp.ko\nkernel/drivers/net/tun.ko\n")
	tree, err := Open(root)
	require.NoError(t, err)
	assert.Equal(t, "modules.dep", tree.Source)

	mods, err := tree.Resolve("netdevsim", "veth", "virtio-net", "tun", "ptp")
	require.NoError(t, err)
	assert.Equal(t, []Module{
		{"psample", "kernel/net/psample/psample.ko.xz"},
		{"ptp_mock", "extra/ptp_mock.ko"},
		{"netdevsim", "extra/netdevsim.ko"},
		{"veth", "kernel/drivers/net/veth.ko.xz"},
		{"failover", "kernel/net/core/failover.ko.xz"},
		{"net_failover", "kernel/drivers/net/net_failover.ko.xz"},
		{"virtio_net", "kernel/drivers/net/virtio_net.ko.xz"},
	}, mods)
	assert.True(t, tree.Builtin("tun"))
	assert.True(t, tree.Has("veth"))
	assert.False(t, tree.Has("tun"))

	_, err = tree.Resolve("nosuch")
	assert.ErrorIs(t, err, ErrNotFound)
	assert.ErrorContains(t, err, "module nosuch is not in "+root)
	_, err = tree.Resolve("needs_missing")
	assert.ErrorIs(t, err, ErrNotFound)
	assert.ErrorContains(t, err, "module gone (needed by needs_missing)")
}

// A tree without modules.dep (Debian's packages, a build tree): the files
// are found by name, dependencies come from each module's .modinfo.
func TestResolveFromModinfo(t *testing.T) {
	root := t.TempDir()
	writeModule(t, root, "drivers/net/netdevsim/netdevsim.ko", "name=netdevsim", "depends=psample,ptp_mock")
	writeModule(t, root, "drivers/ptp/ptp_mock.ko.gz", "depends=")
	writeModule(t, root, "net/psample/psample.ko.zst", "depends=")
	writeModule(t, root, "drivers/net/veth.ko.xz", "depends=")
	writeModule(t, root, "tools/testing/selftests/x.ko", "depends=") // not a kernel's module
	require.NoError(t, os.Symlink("/nonexistent", filepath.Join(root, "build")))
	tree, err := Open(root)
	require.NoError(t, err)
	assert.Equal(t, ".modinfo", tree.Source)

	mods, err := tree.Resolve("veth", "netdevsim")
	require.NoError(t, err)
	assert.Equal(t, []Module{
		{"veth", "drivers/net/veth.ko.xz"},
		{"psample", "net/psample/psample.ko.zst"},
		{"ptp_mock", "drivers/ptp/ptp_mock.ko.gz"},
		{"netdevsim", "drivers/net/netdevsim/netdevsim.ko"},
	}, mods)
	assert.False(t, tree.Has("x"))
}

func TestResolveLoop(t *testing.T) {
	root := t.TempDir()
	writeFile(t, root, "modules.dep", "a.ko: b.ko\nb.ko: a.ko\n")
	tree, err := Open(root)
	require.NoError(t, err)
	_, err = tree.Resolve("a")
	assert.ErrorContains(t, err, "module dependency loop")
	assert.ErrorContains(t, err, "a -> b -> a")
}

func TestOpenTwice(t *testing.T) {
	root := t.TempDir()
	writeModule(t, root, "a/veth.ko", "depends=")
	writeModule(t, root, "b/veth.ko.xz", "depends=")
	_, err := Open(root)
	assert.ErrorContains(t, err, "module veth is in the tree twice")
}

func TestOpenNotAFolder(t *testing.T) {
	_, err := Open(filepath.Join(t.TempDir(), "nothing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}
