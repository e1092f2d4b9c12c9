package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// put writes files (name -> contents) under dir.
func put(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, text := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
	}
}

func TestFindKernel(t *testing.T) {
	cache := t.TempDir()
	o := &options{cache: cache}
	_, err := findKernel(o)
	require.Error(t, err)
	assert.ErrorContains(t, err, "no kernel: neither "+filepath.Join(cache, "debian", "default"))
	assert.ErrorContains(t, err, "vm/debian-kernel")

	// From-source builds: the newest.
	old := filepath.Join(cache, "kernels", "linux-source-7.2-aaa", "bzImage")
	newer := filepath.Join(cache, "kernels", "linux-source-7.3-bbb", "bzImage")
	for i, p := range []string{newer, old} {
		put(t, filepath.Dir(p), map[string]string{"bzImage": "k", "config": "CONFIG_HZ=1000\n"})
		ts := time.Now().Add(time.Duration(-i) * time.Hour)
		require.NoError(t, os.Chtimes(p, ts, ts))
	}
	k, err := findKernel(o)
	require.NoError(t, err)
	assert.Equal(t, newer, k.image, "the newest one")
	assert.Contains(t, k.source, "newest in")
	assert.Equal(t, 1000, k.hz())

	// Debian's, once vm/debian-kernel made one: the default.
	deb := filepath.Join(cache, "debian", "7.3.4+deb13-amd64")
	put(t, deb, map[string]string{"bzImage": "k", "config": "CONFIG_HZ=250\n", "release": "7.3.4+deb13-amd64\n",
		"lib/modules/7.3.4+deb13-amd64/modules.builtin": ""})
	require.NoError(t, os.Symlink("7.3.4+deb13-amd64", filepath.Join(cache, "debian", "default")))
	k, err = findKernel(o)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(deb, "bzImage"), k.image)
	assert.Equal(t, filepath.Join(deb, "lib/modules/7.3.4+deb13-amd64"), k.modules)
	assert.Equal(t, "7.3.4+deb13-amd64", k.release)
	assert.Equal(t, 250, k.hz())
	assert.Empty(t, k.bootArgs(), "no crypto manager in its config")
	put(t, deb, map[string]string{"config": "CONFIG_HZ=250\nCONFIG_CRYPTO_MANAGER=y\n"})
	assert.Equal(t, "cryptomgr.notests", k.bootArgs())

	o.kernel, o.kernelSource = "rel/bzImage", envKernel
	_, err = findKernel(o)
	assert.ErrorContains(t, err, "kernel (BUSYPOLLTEST_KERNEL)")
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestKernelAt(t *testing.T) {
	t.Run("build tree", func(t *testing.T) {
		dir := t.TempDir()
		put(t, dir, map[string]string{"arch/x86/boot/bzImage": "k", ".config": "CONFIG_HZ=300\n",
			"include/config/kernel.release": "7.4.0-rc1+\n", "modules.order": "drivers/net/veth.o\n"})
		k, err := kernelAt(dir, "-kernel")
		require.NoError(t, err)
		assert.Equal(t, &kernel{image: filepath.Join(dir, "arch/x86/boot/bzImage"), config: filepath.Join(dir, ".config"),
			modules: dir, release: "7.4.0-rc1+", source: "-kernel"}, k)
		assert.Equal(t, "/lib/modules/7.4.0-rc1+", k.guestModuleDir())
	})
	t.Run("build tree without modules", func(t *testing.T) {
		dir := t.TempDir()
		put(t, dir, map[string]string{"arch/x86/boot/bzImage": "k", ".config": "CONFIG_MODULES=n\n"})
		k, err := kernelAt(dir, "-kernel")
		require.NoError(t, err)
		assert.Empty(t, k.modules)
	})
	t.Run("modules_install folder", func(t *testing.T) {
		dir := t.TempDir()
		put(t, dir, map[string]string{"bzImage": "k", "lib/modules/7.3.4/modules.dep": "", "lib/modules/7.3.4/build/.config": "CONFIG_HZ=100\n"})
		k, err := kernelAt(dir, envKernel)
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(dir, "lib/modules/7.3.4"), k.modules)
		assert.Equal(t, "7.3.4", k.release)
		assert.Equal(t, 100, k.hz(), "the config from the tree's build link")
	})
	t.Run("boot folder", func(t *testing.T) {
		dir := t.TempDir()
		put(t, dir, map[string]string{"boot/vmlinuz-6.12.1": "k", "boot/config-6.12.1": "CONFIG_HZ=250\n", "lib/modules/6.12.1/modules.dep": ""})
		k, err := kernelAt(dir, envKernel)
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(dir, "boot/vmlinuz-6.12.1"), k.image)
		assert.Equal(t, 250, k.hz())
	})
	t.Run("two module trees", func(t *testing.T) {
		dir := t.TempDir()
		put(t, dir, map[string]string{"bzImage": "k", "lib/modules/a/modules.dep": "", "lib/modules/b/modules.dep": ""})
		_, err := kernelAt(dir, envKernel)
		assert.ErrorContains(t, err, "module trees of several releases")
		put(t, dir, map[string]string{"release": "b\n"})
		k, err := kernelAt(dir, envKernel)
		require.NoError(t, err)
		assert.Equal(t, filepath.Join(dir, "lib/modules/b"), k.modules)
	})
	t.Run("nothing to boot", func(t *testing.T) {
		dir := t.TempDir()
		put(t, dir, map[string]string{"README": "x"})
		_, err := kernelAt(dir, envKernel)
		assert.ErrorContains(t, err, "holds neither arch/x86/boot/bzImage (a build tree) nor bzImage")
	})
}

// debianLike makes a kernel folder whose module tree has veth, netdevsim
// (built out of tree) and virtio_net, with the config given.
func debianLike(t *testing.T, config string, dep ...string) *kernel {
	t.Helper()
	dir := t.TempDir()
	tree := filepath.Join(dir, "lib/modules/7.3.4")
	files := map[string]string{"bzImage": "k", "config": config, "lib/modules/7.3.4/modules.dep": strings.Join(dep, "\n") + "\n",
		"lib/modules/7.3.4/modules.builtin": "kernel/drivers/ptp/ptp.ko\n"}
	for _, d := range dep {
		file, _, _ := strings.Cut(d, ":")
		files["lib/modules/7.3.4/"+file] = "module"
	}
	put(t, dir, files)
	k, err := kernelAt(dir, "test")
	require.NoError(t, err)
	require.Equal(t, tree, k.modules)
	return k
}

func TestModulesFor(t *testing.T) {
	all := []string{"kernel/drivers/net/veth.ko.xz:", "extra/netdevsim.ko: kernel/net/psample/psample.ko.xz extra/ptp_mock.ko",
		"extra/ptp_mock.ko:", "kernel/net/psample/psample.ko.xz:",
		"kernel/drivers/net/virtio_net.ko.xz: kernel/net/core/failover.ko.xz", "kernel/net/core/failover.ko.xz:",
		"kernel/drivers/net/dummy.ko.xz:"}
	guest := func(files []moduleFile) []string {
		var g []string
		for _, f := range files {
			g = append(g, f.guest)
		}
		return g
	}
	t.Run("Debian with netdevsim out of tree", func(t *testing.T) {
		k := debianLike(t, "CONFIG_VETH=m\n# CONFIG_NETDEVSIM is not set\nCONFIG_VIRTIO_NET=m\n", all...)
		files, warnings, err := k.modulesFor(0)
		require.NoError(t, err)
		assert.Empty(t, warnings)
		assert.Equal(t, []string{"/lib/modules/7.3.4/kernel/drivers/net/veth.ko.xz", "/lib/modules/7.3.4/kernel/net/psample/psample.ko.xz",
			"/lib/modules/7.3.4/extra/ptp_mock.ko", "/lib/modules/7.3.4/extra/netdevsim.ko", "/lib/modules/7.3.4/kernel/drivers/net/dummy.ko.xz"}, guest(files))
		assert.Equal(t, filepath.Join(k.modules, "extra/netdevsim.ko"), files[3].host)
		for i, f := range files {
			assert.Equal(t, i < 4, f.load, "all but the spare module are loaded: %s", f.guest)
		}

		files, _, err = k.modulesFor(2)
		require.NoError(t, err)
		assert.Equal(t, []string{"/lib/modules/7.3.4/kernel/net/core/failover.ko.xz", "/lib/modules/7.3.4/kernel/drivers/net/virtio_net.ko.xz"}, guest(files[4:6]), "NICs: virtio_net too")
	})
	t.Run("no netdevsim", func(t *testing.T) {
		k := debianLike(t, "CONFIG_VETH=m\n# CONFIG_NETDEVSIM is not set\n", all[0])
		files, warnings, err := k.modulesFor(0)
		require.NoError(t, err)
		assert.Len(t, files, 1)
		require.Len(t, warnings, 1)
		assert.Contains(t, warnings[0], "this kernel has no netdevsim: CONFIG_NETDEVSIM is not set in its config")
		assert.Contains(t, warnings[0], "its tests will skip")
		_, _, err = k.modulesFor(2)
		assert.ErrorContains(t, err, "-nics 2 needs virtio-net: this kernel has no virtio_net: CONFIG_VIRTIO_NET is not set")
	})
	t.Run("a module the config has but the tree lacks", func(t *testing.T) {
		k := debianLike(t, "CONFIG_VETH=m\nCONFIG_NETDEVSIM=m\n", all[0])
		_, _, err := k.modulesFor(0)
		assert.ErrorContains(t, err, "says CONFIG_NETDEVSIM=m, but there is no netdevsim module in "+k.modules)
	})
	t.Run("built in", func(t *testing.T) {
		k := debianLike(t, "CONFIG_VETH=y\nCONFIG_NETDEVSIM=y\nCONFIG_VIRTIO_NET=y\n")
		files, warnings, err := k.modulesFor(2)
		require.NoError(t, err)
		assert.Empty(t, files)
		assert.Empty(t, warnings)
	})
	t.Run("no modules, no config", func(t *testing.T) {
		dir := t.TempDir()
		put(t, dir, map[string]string{"bzImage": "k"})
		k, err := kernelAt(filepath.Join(dir, "bzImage"), "test")
		require.NoError(t, err)
		files, warnings, err := k.modulesFor(0)
		require.NoError(t, err)
		assert.Empty(t, files)
		assert.Len(t, warnings, 2)
		assert.Contains(t, warnings[1], "this kernel may have no netdevsim: no module tree, and no config to tell")
	})
}
