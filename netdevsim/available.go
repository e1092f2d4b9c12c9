package netdevsim

import (
	"bufio"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

var defaultBus = NewBus(DefaultRoot)

// Default returns the Bus at DefaultRoot, shared by the whole process so
// that the module is loaded at most once.
func Default() *Bus { return defaultBus }

// Available reports whether the Bus at DefaultRoot can be used; see
// (*Bus).Available.
func Available() error { return defaultBus.Available() }

// errNoBus means the bus directory does not exist.
var errNoBus = errors.New("no netdevsim bus")

// Available returns nil when devices can be created, linked and deleted on
// the bus, and otherwise an error wrapping ErrUnavailable that says exactly
// why: no bus and a kernel without module support; module loading disabled;
// module not loaded and not root; module not installed or failing to load;
// a netdevsim too old to link devices; no permission to write the bus files.
//
// A built-in netdevsim needs no loading. Where the kernel has modules and
// the bus is missing, Available asks the kernel once per Bus to load
// netdevsim, in-process and without running modprobe itself: it requests an
// rtnetlink link of kind "netdevsim", which makes the kernel run its own
// module helper for the alias rtnl-link-netdevsim (as "ip link add type
// netdevsim" would); netdevsim then refuses the link itself with
// EOPNOTSUPP, so nothing is created. The kernel's helper resolves module
// dependencies and compressed modules. The module is never unloaded, as
// other runs may be using it.
func (b *Bus) Available() error {
	err := b.ready()
	if !errors.Is(err, errNoBus) {
		return err
	}
	if err := b.whyNoLoad(); err != nil {
		return err
	}
	b.loadOnce.Do(func() { b.loadErr = b.load() })
	err = b.ready()
	if !errors.Is(err, errNoBus) {
		return err
	}
	return fmt.Errorf("%w: %s does not exist: netdevsim is not loaded and the kernel could not load it (%v); %s",
		ErrUnavailable, b.root, b.loadErr, b.moduleHint())
}

// ready checks the bus directory and its files.
func (b *Bus) ready() error {
	fi, err := os.Stat(b.root)
	if errors.Is(err, os.ErrNotExist) {
		return errNoBus
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%w: %s is not a directory", ErrUnavailable, b.root)
	}
	for _, f := range []string{fileNew, fileDel} {
		if _, err := os.Stat(filepath.Join(b.root, f)); err != nil {
			return fmt.Errorf("%w: %s is not a netdevsim bus: %w", ErrUnavailable, b.root, err)
		}
	}
	for _, f := range []string{fileLink, fileUnlink} {
		if _, err := os.Stat(filepath.Join(b.root, f)); err != nil {
			return fmt.Errorf("%w: this kernel's netdevsim cannot link devices (no %s; it arrived in Linux 6.9): %w",
				ErrUnavailable, f, err)
		}
	}
	for _, f := range []string{fileNew, fileDel, fileLink, fileUnlink} {
		p := filepath.Join(b.root, f)
		if err := unix.Access(p, unix.W_OK); err != nil {
			return fmt.Errorf("%w: cannot write %s (needs root): %w", ErrUnavailable, p, err)
		}
	}
	return nil
}

// whyNoLoad returns why the missing module cannot be loaded without trying,
// or nil when loading is worth a try.
func (b *Bus) whyNoLoad() error {
	if _, err := os.Stat(filepath.Join(b.proc, "self")); err != nil {
		return fmt.Errorf("%w: %s does not exist and %s is not mounted, so it is unknown whether the kernel has module support: %w",
			ErrUnavailable, b.root, b.proc, err)
	}
	if _, err := os.Stat(filepath.Join(b.proc, "modules")); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s does not exist: the kernel has no module support (no %s/modules) and netdevsim is not built in (needs CONFIG_NETDEVSIM=y)",
			ErrUnavailable, b.root, b.proc)
	}
	disabled, err := os.ReadFile(filepath.Join(b.proc, "sys/kernel/modules_disabled"))
	if err == nil && strings.TrimSpace(string(disabled)) == "1" {
		return fmt.Errorf("%w: %s does not exist: netdevsim is not loaded and module loading is disabled (kernel.modules_disabled=1)",
			ErrUnavailable, b.root)
	}
	if b.euid() != 0 {
		return fmt.Errorf("%w: %s does not exist: netdevsim is not loaded, and loading it needs root: %w",
			ErrUnavailable, b.root, os.ErrPermission)
	}
	return nil
}

// moduleHint says where to look after a failed load: is netdevsim installed
// for the running kernel, and can the kernel run its module helper?
func (b *Bus) moduleHint() string {
	var hints []string
	helper, err := os.ReadFile(filepath.Join(b.proc, "sys/kernel/modprobe"))
	if err == nil && strings.TrimSpace(string(helper)) == "" {
		hints = append(hints, "kernel.modprobe is empty, so the kernel cannot load modules on request")
	}
	dir := b.modDir
	if dir == "" {
		var u unix.Utsname
		if err := unix.Uname(&u); err != nil {
			return strings.Join(append(hints, "uname failed: "+err.Error()), "; ")
		}
		dir = filepath.Join("/lib/modules", unix.ByteSliceToString(u.Release[:]))
	}
	path, err := findModule(filepath.Join(dir, "modules.dep"), "netdevsim")
	switch {
	case err != nil:
		hints = append(hints, fmt.Sprintf("no module list for the running kernel: %v", err))
	case path == "":
		hints = append(hints, fmt.Sprintf("netdevsim is not installed for the running kernel (not in %s/modules.dep; most distribution kernels leave CONFIG_NETDEVSIM unset)", dir))
	default:
		hints = append(hints, fmt.Sprintf("netdevsim is installed as %s but did not load: see the kernel log", filepath.Join(dir, path)))
	}
	return strings.Join(hints, "; ")
}

// findModule returns the path of module name as modules.dep lists it
// ("kernel/drivers/net/netdevsim/netdevsim.ko.xz: dep ..."), or "" if it is
// not listed.
func findModule(depFile, name string) (string, error) {
	f, err := os.Open(depFile)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		path, _, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		base := filepath.Base(path)
		if mod, _, _ := strings.Cut(base, "."); mod == name && strings.Contains(base, ".ko") {
			return path, nil
		}
	}
	return "", sc.Err()
}

// autoload is the real Bus.load: it makes the kernel load netdevsim through
// its module helper by asking rtnetlink for a link of kind "netdevsim" in
// the calling thread's namespace. netdevsim refuses such links
// (EOPNOTSUPP, "Please use: echo ... > /sys/bus/netdevsim/new_device"); an
// unknown kind fails with EOPNOTSUPP too, so the caller checks the bus
// directory afterwards. Should a kernel ever accept the link, it is
// deleted at once.
func autoload() error {
	c, err := dialRoute(nil)
	if err != nil {
		return err
	}
	defer c.Close()
	name := fmt.Sprintf("nsimprobe%05d", rand.IntN(100000))
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, name)
	ae.Nested(unix.IFLA_LINKINFO, func(nae *netlink.AttributeEncoder) error {
		nae.String(unix.IFLA_INFO_KIND, "netdevsim")
		return nil
	})
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	_, err = c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  unix.RTM_NEWLINK,
			Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl,
		},
		Data: append(make([]byte, ifinfomsgLen), attrs...),
	})
	if err == nil {
		// Not expected from any netdevsim since Linux 5.2; do not leave it.
		_, derr := c.Execute(netlink.Message{
			Header: netlink.Header{Type: unix.RTM_DELLINK, Flags: netlink.Request | netlink.Acknowledge},
			Data:   append(make([]byte, ifinfomsgLen), attrs...),
		})
		if derr != nil {
			return fmt.Errorf("rtnetlink created link %s of kind netdevsim and deleting it failed: %w", name, derr)
		}
		return nil
	}
	var oe *netlink.OpError
	if errors.As(err, &oe) && oe.Message != "" {
		return fmt.Errorf("rtnetlink new link of kind netdevsim: %w (kernel says %q)", oe.Err, oe.Message)
	}
	return fmt.Errorf("rtnetlink new link of kind netdevsim: %w", err)
}
