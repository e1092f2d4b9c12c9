package kmod

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// spareModule finds the module file the VM runner ships for this test
// without loading it (vm/vmrun: spareModule).
func spareModule(t *testing.T) string {
	t.Helper()
	if os.Getenv("BUSYPOLLTEST_VM") != "1" {
		t.Skip("loads and unloads a kernel module: runs only in the VM (CGO_ENABLED=0 go test -exec vm/exec), never on the host")
	}
	var u unix.Utsname
	require.NoError(t, unix.Uname(&u))
	root := filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	var found string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && Name(p) == "dummy" {
			found = p
		}
		return nil
	})
	if found == "" {
		t.Skipf("the VM has no dummy module in %s: this kernel has CONFIG_DUMMY built in or not at all", root)
	}
	_, err := os.Stat("/sys/module/dummy")
	require.ErrorIs(t, err, fs.ErrNotExist, "dummy must not be loaded before the test")
	return found
}

func unload(t *testing.T, name string) {
	t.Helper()
	require.NoError(t, unix.DeleteModule(name, unix.O_NONBLOCK), "unload %s", name)
}

// TestLoadInVM loads the dummy module from a file of every compression:
// the kernel decompresses the one it was built for itself, Load decompresses
// the others (the kernel refuses them with EINVAL). A kernel decompresses
// one compression at most (a Kconfig choice), so at least two of the three
// must have gone through Go.
func TestLoadInVM(t *testing.T) {
	orig := spareModule(t)
	raw, err := os.ReadFile(orig)
	require.NoError(t, err)
	image, err := ReadFile(orig)
	require.NoError(t, err)
	dir := t.TempDir()
	inGo := 0
	for _, kind := range []string{"", "xz", "zstd", "gzip"} {
		name := kind + " compressed"
		if kind == "" {
			name = "uncompressed"
		}
		t.Run(name, func(t *testing.T) {
			suffix := map[string]string{"": ".ko", "xz": ".ko.xz", "zstd": ".ko.zst", "gzip": ".ko.gz"}[kind]
			p := filepath.Join(dir, "dummy"+suffix)
			data := raw // the shipped file where it is of this kind (compressing under TCG is slow)
			if Compression(orig) != kind {
				data = compress(t, image, kind)
			}
			require.NoError(t, os.WriteFile(p, data, 0o644))
			// No dummy0 device: numdummies=0.
			here, err := load(p, "numdummies=0")
			require.NoError(t, err)
			defer unload(t, "dummy")
			t.Logf("%s: decompressed here: %v", filepath.Base(p), here)
			if kind != "" && here {
				inGo++
			}
			_, err = os.Stat("/sys/module/dummy")
			assert.NoError(t, err, "the module is loaded")
			assert.NoError(t, Load(p, "numdummies=0"), "loading it again is no error")
		})
	}
	assert.GreaterOrEqual(t, inGo, 2, "compressed files decompressed in Go")
}

// A file the kernel refuses: the error names the module and keeps the
// kernel's errno.
func TestLoadErrorInVM(t *testing.T) {
	spareModule(t)
	p := filepath.Join(t.TempDir(), "not-a-module.ko")
	require.NoError(t, os.WriteFile(p, []byte("this is no ELF file"), 0o644))
	err := Load(p, "")
	var le *LoadError
	require.ErrorAs(t, err, &le)
	assert.Equal(t, "not_a_module", le.Name)
	assert.True(t, errors.Is(err, unix.ENOEXEC) || errors.Is(err, unix.EINVAL), "errno %v", le.Err)
	assert.Contains(t, err.Error(), "load module not_a_module ("+p+"): ")

	_, err = os.Stat("/sys/module/not_a_module")
	assert.ErrorIs(t, err, fs.ErrNotExist)
}
