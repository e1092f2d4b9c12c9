package main

import (
	"cmp"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/netdev-go/busypolltest/vm/kconfig"
	"github.com/netdev-go/busypolltest/vm/kmod"
)

// kernel is what the VM boots: an image, its configuration and its modules.
type kernel struct {
	image   string // the bzImage
	config  string // its .config; "" when unknown
	modules string // root of its module tree; "" when it has none
	release string // its release (uname -r); "" when unknown
	source  string // where it came from, for messages
}

// findKernel returns the kernel to boot. The one named by -kernel or
// BUSYPOLLTEST_KERNEL may be:
//   - a bzImage file, with its config ("config") and module tree
//     ("lib/modules/RELEASE") beside it where they exist (the layout of
//     vm/debian-kernel's and vm/build-kernel's cache);
//   - a kernel build tree: arch/x86/boot/bzImage, .config, and the modules
//     it built (found by their files, dependencies from their .modinfo);
//   - a folder with a bzImage (or vmlinuz) and a lib/modules/RELEASE tree,
//     as make modules_install INSTALL_MOD_PATH=DIR writes it.
//
// Without one it is the kernel vm/debian-kernel made last
// (CACHE/debian/default), else the newest from-source build of
// vm/build-kernel (CACHE/kernels/*/bzImage).
func findKernel(o *options) (*kernel, error) {
	if o.kernel != "" {
		abs, err := filepath.Abs(o.kernel)
		if err != nil {
			return nil, err
		}
		return kernelAt(abs, o.kernelSource)
	}
	def := filepath.Join(o.cache, "debian", "default")
	if _, err := os.Stat(def); err == nil {
		real, err := filepath.EvalSymlinks(def)
		if err != nil {
			return nil, err
		}
		return kernelAt(real, def)
	}
	pattern := filepath.Join(o.cache, "kernels", "*", "bzImage")
	matches, _ := filepath.Glob(pattern)
	var best string
	var bestTime time.Time
	for _, m := range matches {
		st, err := os.Stat(m)
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		if best == "" || st.ModTime().After(bestTime) {
			best, bestTime = m, st.ModTime()
		}
	}
	if best == "" {
		return nil, fmt.Errorf("no kernel: neither %s nor anything matching %s; fetch Debian's with vm/debian-kernel (about a minute, once), or name a bzImage, a kernel build tree or a folder with bzImage and lib/modules with %s or -kernel", def, pattern, envKernel)
	}
	return kernelAt(best, "newest in "+filepath.Join(o.cache, "kernels"))
}

// kernelAt describes the kernel at p, a bzImage or a folder.
func kernelAt(p, source string) (*kernel, error) {
	st, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("kernel (%s): %w", source, err)
	}
	k := &kernel{source: source}
	if !st.IsDir() {
		k.image = p
		return k, k.beside(filepath.Dir(p))
	}
	if isFile(filepath.Join(p, "arch", "x86", "boot", "bzImage")) {
		// A build tree: the modules are where make left them.
		k.image = filepath.Join(p, "arch", "x86", "boot", "bzImage")
		if isFile(filepath.Join(p, ".config")) {
			k.config = filepath.Join(p, ".config")
		}
		if b, err := os.ReadFile(filepath.Join(p, "include", "config", "kernel.release")); err == nil {
			k.release = strings.TrimSpace(string(b))
		}
		if isFile(filepath.Join(p, "modules.order")) {
			k.modules = p
		}
		return k, nil
	}
	for _, name := range []string{"bzImage", "vmlinuz"} {
		if isFile(filepath.Join(p, name)) {
			k.image = filepath.Join(p, name)
			break
		}
	}
	if k.image == "" {
		boot, _ := filepath.Glob(filepath.Join(p, "boot", "vmlinuz-*"))
		if len(boot) == 1 {
			k.image = boot[0]
		}
	}
	if k.image == "" {
		return nil, fmt.Errorf("kernel folder %s (%s) holds neither arch/x86/boot/bzImage (a build tree) nor bzImage, vmlinuz or one boot/vmlinuz-* (a kernel folder)", p, source)
	}
	return k, k.beside(p)
}

// beside finds the configuration and module tree in dir, the folder of the
// image.
func (k *kernel) beside(dir string) error {
	if b, err := os.ReadFile(filepath.Join(dir, "release")); err == nil {
		k.release = strings.TrimSpace(string(b))
	}
	trees, _ := filepath.Glob(filepath.Join(dir, "lib", "modules", "*"))
	var dirs []string
	for _, t := range trees {
		if st, err := os.Stat(t); err == nil && st.IsDir() {
			dirs = append(dirs, t)
		}
	}
	switch {
	case len(dirs) == 1:
		k.modules = dirs[0]
	case len(dirs) > 1 && k.release != "":
		for _, d := range dirs {
			if filepath.Base(d) == k.release {
				k.modules = d
			}
		}
	}
	if len(dirs) > 1 && k.modules == "" {
		return fmt.Errorf("kernel %s (%s): %s holds module trees of several releases (%s) and no release file says which is this kernel's", k.image, k.source, filepath.Join(dir, "lib", "modules"), strings.Join(dirs, ", "))
	}
	if k.modules != "" && k.release == "" {
		k.release = filepath.Base(k.modules)
	}
	candidates := []string{filepath.Join(dir, "config"), filepath.Join(dir, ".config")}
	if k.release != "" {
		candidates = append(candidates, filepath.Join(dir, "boot", "config-"+k.release))
	}
	if k.modules != "" {
		candidates = append(candidates, filepath.Join(k.modules, "config"), filepath.Join(k.modules, "build", ".config"))
	}
	for _, c := range candidates {
		if isFile(c) {
			k.config = c
			break
		}
	}
	return nil
}

func isFile(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// configValue returns an option's value in the kernel's configuration
// ("y", "m", a number...), "" when it is not set, and whether the
// configuration is known at all.
func (k *kernel) configValue(option string) (string, bool) {
	if k.config == "" {
		return "", false
	}
	b, err := os.ReadFile(k.config)
	if err != nil {
		return "", false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, option+"="); ok {
			return strings.Trim(v, `"`), true
		}
	}
	return "", true
}

// hz returns CONFIG_HZ, 0 when unknown.
func (k *kernel) hz() int {
	v, _ := k.configValue("CONFIG_HZ")
	hz, err := strconv.Atoi(v)
	if err != nil || hz <= 0 {
		return 0
	}
	return hz
}

// bootArgs returns command line words that this kernel's configuration
// calls for: cryptomgr.notests where the kernel runs its crypto self-tests
// at boot (crypto/testmgr.c; CONFIG_CRYPTO_MANAGER, and in Debian's kernels
// CONFIG_CRYPTO_SELFTESTS). Under TCG they took about 1.7 s of a Debian
// kernel's 7 to 8 s boot, and the suite uses no kernel crypto.
func (k *kernel) bootArgs() string {
	if v, _ := k.configValue("CONFIG_CRYPTO_MANAGER"); v == "y" {
		return "cryptomgr.notests"
	}
	return ""
}

// spareModule goes into the VM, where the kernel has it as a module, but
// is not loaded: package vm/kmod's tests load and unload it (a dummy
// netdev driver, which nothing else uses).
const spareModule = "dummy"

// guestModuleDir is where the module files go in the VM.
func (k *kernel) guestModuleDir() string {
	return path.Join("/lib/modules", cmp.Or(k.release, "vmrun"))
}

// moduleFile is a module file to put into the initramfs.
type moduleFile struct {
	host, guest string
	load        bool // init loads it (else it is there for a test)
}

// modulesFor returns the module files a run with nics NICs loads (those
// of kconfig.Modules the kernel has as modules), in load order (and the spare module, not loaded, where it has no dependencies),
// and warnings for the modules the kernel lacks (their tests will
// skip). A module whose option says "m" but whose file is missing, and a
// missing virtio_net when the run has NICs, are errors.
func (k *kernel) modulesFor(nics int) ([]moduleFile, []string, error) {
	var tree *kmod.Tree
	if k.modules != "" {
		t, err := kmod.Open(k.modules)
		if err != nil {
			return nil, nil, fmt.Errorf("kernel %s: module tree: %w", k.image, err)
		}
		tree = t
	}
	var names, warnings []string
	for _, m := range kconfig.Modules {
		if m.ForNICs && nics == 0 {
			continue
		}
		if tree != nil && tree.Has(m.Name) {
			names = append(names, m.Name)
			continue
		}
		val, known := k.configValue(m.Option)
		if val == "y" || tree != nil && tree.Builtin(m.Name) {
			continue
		}
		where := "no module tree"
		if tree != nil {
			where = "no " + m.Name + " module in " + k.modules
		}
		var why string
		switch {
		case val == "m":
			return nil, nil, fmt.Errorf("kernel %s: its config (%s) says %s=m, but there is %s: were the modules installed (make modules_install)?", k.image, k.config, m.Option, where)
		case !known:
			why = fmt.Sprintf("this kernel may have no %s: %s, and no config to tell whether it is built in", m.Name, where)
		case val == "":
			why = fmt.Sprintf("this kernel has no %s: %s is not set in its config (%s), and there is %s", m.Name, m.Option, k.config, where)
		default:
			why = fmt.Sprintf("this kernel has no %s: its config says %s=%s", m.Name, m.Option, val)
		}
		if m.ForNICs {
			return nil, nil, fmt.Errorf("-nics %d needs virtio-net: %s", nics, why)
		}
		warnings = append(warnings, why+" (its tests will skip)")
	}
	var files []moduleFile
	add := func(m kmod.Module, load bool) {
		files = append(files, moduleFile{host: filepath.Join(k.modules, m.Path), guest: path.Join(k.guestModuleDir(), filepath.ToSlash(m.Path)), load: load})
	}
	if len(names) > 0 {
		mods, err := tree.Resolve(names...)
		if err != nil {
			return nil, nil, fmt.Errorf("kernel %s: %w", k.image, err)
		}
		for _, m := range mods {
			add(m, true)
		}
	}
	if tree != nil && tree.Has(spareModule) {
		if mods, err := tree.Resolve(spareModule); err == nil && len(mods) == 1 {
			add(mods[0], false)
		}
	}
	return files, warnings, nil
}

// describe is the one-line description of the kernel for logs.
func (k *kernel) describe() string {
	s := k.image
	if k.release != "" {
		s += " (release " + k.release + ")"
	}
	return s
}
