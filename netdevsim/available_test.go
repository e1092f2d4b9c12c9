package netdevsim

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fakeHost is a fake /sys/bus/netdevsim, /proc and /lib/modules/RELEASE.
type fakeHost struct {
	bus   *Bus
	loads int
}

type hostSetup struct {
	busFiles     []string // nil: no bus directory at all
	noProc       bool
	noModules    bool   // no /proc/modules: kernel without CONFIG_MODULES
	disabled     string // /proc/sys/kernel/modules_disabled
	helper       *string
	euid         int
	modulesDep   *string // nil: no modules.dep
	loadMakesBus bool    // the load attempt creates the bus
}

func newFakeHost(t *testing.T, s hostSetup) *fakeHost {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "sys/bus/netdevsim")
	proc := filepath.Join(dir, "proc")
	mods := filepath.Join(dir, "lib/modules/7.3.4-test")
	makeBus := func(files []string) {
		require.NoError(t, os.MkdirAll(filepath.Join(root, dirDevices), 0o755))
		for _, f := range files {
			require.NoError(t, os.WriteFile(filepath.Join(root, f), nil, 0o200))
		}
	}
	if s.busFiles != nil {
		makeBus(s.busFiles)
	}
	write := func(path, content string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
	if !s.noProc {
		require.NoError(t, os.MkdirAll(filepath.Join(proc, "self"), 0o755))
		if !s.noModules {
			write(filepath.Join(proc, "modules"), "")
			write(filepath.Join(proc, "sys/kernel/modules_disabled"), s.disabled+"\n")
			helper := "/sbin/modprobe"
			if s.helper != nil {
				helper = *s.helper
			}
			write(filepath.Join(proc, "sys/kernel/modprobe"), helper+"\n")
		}
	}
	if s.modulesDep != nil {
		write(filepath.Join(mods, "modules.dep"), *s.modulesDep)
	}
	h := &fakeHost{bus: NewBus(root)}
	h.bus.proc = proc
	h.bus.modDir = mods
	h.bus.euid = func() int { return s.euid }
	h.bus.load = func() error {
		h.loads++
		if s.loadMakesBus {
			makeBus([]string{fileNew, fileDel, fileLink, fileUnlink})
			return errors.New("rtnetlink new link of kind netdevsim: operation not supported")
		}
		return errors.New(`rtnetlink new link of kind netdevsim: operation not supported (kernel says "Unknown device type")`)
	}
	return h
}

func ptr(s string) *string { return &s }

func TestAvailable(t *testing.T) {
	all := []string{fileNew, fileDel, fileLink, fileUnlink}
	depWith := "kernel/net/psample/psample.ko.zst:\nkernel/drivers/net/netdevsim/netdevsim.ko.zst: kernel/net/psample/psample.ko.zst\n"
	depWithout := "kernel/net/psample/psample.ko.zst:\nkernel/drivers/net/veth.ko.zst:\n"
	tests := []struct {
		name  string
		setup hostSetup
		want  []string // substrings; none: Available must succeed
		perm  bool     // also matches os.ErrPermission
		loads int
	}{
		{name: "built in or loaded", setup: hostSetup{busFiles: all}},
		{name: "loaded on request", setup: hostSetup{modulesDep: ptr(depWith), loadMakesBus: true}, loads: 1},
		{name: "too old to link", setup: hostSetup{busFiles: []string{fileNew, fileDel}},
			want: []string{"netdevsim unavailable: this kernel's netdevsim cannot link devices (no link_device; it arrived in Linux 6.9)"}},
		{name: "not a bus", setup: hostSetup{busFiles: []string{}},
			want: []string{"is not a netdevsim bus", "new_device"}},
		{name: "kernel without modules", setup: hostSetup{noModules: true},
			want: []string{"does not exist: the kernel has no module support (no ", "/proc/modules) and netdevsim is not built in (needs CONFIG_NETDEVSIM=y)"}},
		{name: "no procfs", setup: hostSetup{noProc: true},
			want: []string{"is not mounted, so it is unknown whether the kernel has module support"}},
		{name: "module loading disabled", setup: hostSetup{disabled: "1"},
			want: []string{"netdevsim is not loaded and module loading is disabled (kernel.modules_disabled=1)"}},
		{name: "not root", setup: hostSetup{euid: 1000},
			want: []string{"netdevsim is not loaded, and loading it needs root"}, perm: true},
		{name: "module not installed", setup: hostSetup{modulesDep: ptr(depWithout)}, loads: 1,
			want: []string{
				"netdevsim is not loaded and the kernel could not load it (rtnetlink new link of kind netdevsim: operation not supported (kernel says \"Unknown device type\"))",
				"netdevsim is not installed for the running kernel (not in ", "lib/modules/7.3.4-test/modules.dep",
			}},
		{name: "module fails to load", setup: hostSetup{modulesDep: ptr(depWith)}, loads: 1,
			want: []string{"netdevsim is installed as ", "lib/modules/7.3.4-test/kernel/drivers/net/netdevsim/netdevsim.ko.zst but did not load: see the kernel log"}},
		{name: "no module list", setup: hostSetup{}, loads: 1,
			want: []string{"no module list for the running kernel", "modules.dep: no such file or directory"}},
		{name: "no module helper", setup: hostSetup{helper: ptr(""), modulesDep: ptr(depWith)}, loads: 1,
			want: []string{"kernel.modprobe is empty, so the kernel cannot load modules on request"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newFakeHost(t, tt.setup)
			err := h.bus.Available()
			if len(tt.want) == 0 {
				require.NoError(t, err)
			} else {
				require.Error(t, err)
				assert.ErrorIs(t, err, ErrUnavailable)
				for _, w := range tt.want {
					assert.ErrorContains(t, err, w)
				}
				if tt.perm {
					assert.ErrorIs(t, err, os.ErrPermission)
				}
			}
			// Asking again never loads again.
			err2 := h.bus.Available()
			assert.Equal(t, err == nil, err2 == nil)
			assert.Equal(t, tt.loads, h.loads, "load attempts")
		})
	}
}

func TestAvailableNeedsWritableBusFiles(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("runs as a normal user only: root may write any file, so no permission error can be provoked")
	}
	h := newFakeHost(t, hostSetup{busFiles: []string{fileNew, fileDel, fileLink, fileUnlink}})
	require.NoError(t, os.Chmod(filepath.Join(h.bus.Root(), fileNew), 0o400))
	err := h.bus.Available()
	assert.ErrorIs(t, err, ErrUnavailable)
	assert.ErrorIs(t, err, os.ErrPermission)
	assert.ErrorContains(t, err, "cannot write "+filepath.Join(h.bus.Root(), fileNew)+" (needs root)")
}

func TestFindModule(t *testing.T) {
	dep := filepath.Join(t.TempDir(), "modules.dep")
	require.NoError(t, os.WriteFile(dep, []byte(
		"kernel/drivers/net/netdevsim2/netdevsim2.ko:\n"+
			"kernel/drivers/net/netdevsim/netdevsim_extra.ko.xz:\n"+
			"kernel/drivers/net/netdevsim/netdevsim.ko.xz: kernel/net/psample/psample.ko.xz\n"), 0o644))
	path, err := findModule(dep, "netdevsim")
	require.NoError(t, err)
	assert.Equal(t, "kernel/drivers/net/netdevsim/netdevsim.ko.xz", path)

	path, err = findModule(dep, "veth")
	require.NoError(t, err)
	assert.Empty(t, path)

	_, err = findModule(filepath.Join(t.TempDir(), "none"), "veth")
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// TestAvailableHere classifies this machine: either netdevsim is usable, or
// the error says why and can be told apart with ErrUnavailable.
func TestAvailableHere(t *testing.T) {
	err := Available()
	if err == nil {
		t.Logf("netdevsim is usable at %s", DefaultRoot)
		return
	}
	require.ErrorIs(t, err, ErrUnavailable)
	t.Logf("netdevsim unavailable here: %v", err)
}
