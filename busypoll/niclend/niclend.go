// Package niclend lends a named network device of the host (a port, such as
// one end of a cable between two NICs) to a test's network namespace, and
// gives it back as it was: in its namespace, with its name, up/down state,
// MTU, GRO and TSO, and every NAPI setting (threaded included).
//
// A port in use is never taken: Lend refuses, changing nothing, a device
// that carries an address or a route (other than the IPv6 link-local and
// multicast ones the kernel gives every interface that is up), belongs to a
// bridge or bond, or is the loopback.
package niclend

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/netdev-go/busypolltest/busypoll/link"
	"github.com/netdev-go/busypolltest/busypoll/namespace"
	"github.com/netdev-go/busypolltest/napi"
)

// ErrInUse is matched by Lend's error for a port that is in use.
var ErrInUse = errors.New("port is in use")

// State is what Lend changes and Return puts back.
type State struct {
	Name  string
	Index int
	Up    bool
	MTU   int
	// Device names the device behind the interface: the last element of
	// its /sys/class/net/NAME/device link ("virtio0", "0000:03:00.0"), or
	// "" for a virtual device. It is read where Inspect runs: sysfs shows
	// the devices of the namespace it was mounted in.
	Device string
	// GRO and TSO, where the driver reports them (HasOffloads).
	GRO, TSO    bool
	HasOffloads bool
}

// String describes the recorded state for the log.
func (s State) String() string {
	up := "down"
	if s.Up {
		up = "up"
	}
	off := "offloads unknown"
	if s.HasOffloads {
		off = fmt.Sprintf("gro %v tso %v", s.GRO, s.TSO)
	}
	return fmt.Sprintf("%s (ifindex %d, %s, mtu %d, %s)", s.Name, s.Index, up, s.MTU, off)
}

// Inspect reads the state of the port name in the calling thread's network
// namespace and returns an error matching ErrInUse if it is in use.
func Inspect(name string) (State, error) {
	dev, err := netlink.LinkByName(name)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return State{}, fmt.Errorf("port: no device named %q in this network namespace: %w", name, os.ErrNotExist)
		}
		return State{}, fmt.Errorf("port: find %q: %w", name, err)
	}
	a := dev.Attrs()
	st := State{Name: a.Name, Index: a.Index, Up: a.Flags&net.FlagUp != 0, MTU: a.MTU}
	if target, err := os.Readlink(filepath.Join("/sys/class/net", name, "device")); err == nil {
		st.Device = filepath.Base(target)
	}
	if gro, err := link.GetOffload(name, link.GRO); err == nil {
		if tso, err := link.GetOffload(name, link.TSO); err == nil {
			st.GRO, st.TSO, st.HasOffloads = gro, tso, true
		}
	}
	var use []string
	if a.Flags&net.FlagLoopback != 0 {
		use = append(use, "it is a loopback device")
	}
	if a.MasterIndex != 0 {
		use = append(use, fmt.Sprintf("it belongs to the device with ifindex %d (a bridge or bond)", a.MasterIndex))
	}
	addrs, err := netlink.AddrList(dev, netlink.FAMILY_ALL)
	if err != nil {
		return st, fmt.Errorf("port: list the addresses of %s: %w", name, err)
	}
	for _, ad := range addrs {
		if automatic(ad.IPNet) {
			continue
		}
		use = append(use, "it carries the address "+ad.IPNet.String())
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL,
		&netlink.Route{LinkIndex: a.Index, Table: unix.RT_TABLE_UNSPEC},
		netlink.RT_FILTER_OIF|netlink.RT_FILTER_TABLE)
	if err != nil {
		return st, fmt.Errorf("port: list the routes through %s: %w", name, err)
	}
	for _, r := range routes {
		if r.Dst != nil && automatic(r.Dst) {
			continue
		}
		use = append(use, "a route uses it: "+r.String())
	}
	if len(use) > 0 {
		return st, fmt.Errorf("port: %s: %w: %s; busypolltest takes only idle ports (no address, route or master; nothing was changed)",
			name, ErrInUse, strings.Join(use, "; "))
	}
	return st, nil
}

// automatic tells an IPv6 link-local or multicast prefix, which the kernel
// gives every interface that is up: they do not mean the port is in use.
func automatic(n *net.IPNet) bool {
	return n.IP.To4() == nil && (n.IP.IsLinkLocalUnicast() || n.IP.IsMulticast())
}

// Loan is a port lent to a namespace.
type Loan struct {
	orig  State
	ns    *namespace.NetNS
	home  netns.NsHandle // the namespace the port came from
	napis []napiSettings

	mu       sync.Mutex
	moved    bool
	returned bool
	err      error
}

// napiSettings is one NAPI's recorded settings.
type napiSettings struct {
	id uint32
	s  napi.Settings
}

// Orig is the port's state before the loan.
func (l *Loan) Orig() State { return l.orig }

// Lend checks the port name in the calling thread's namespace (Inspect),
// records its state and moves it into ns. The port keeps its name there; its
// ifindex may change (look it up by name in ns). Return gives it back.
func Lend(name string, ns *namespace.NetNS) (*Loan, error) {
	l, err := Prepare(name, ns)
	if err != nil {
		return nil, err
	}
	return l, l.Move()
}

// Prepare is the first half of Lend: it checks the port and records its
// state, so that the caller can register l.Return for emergencies before
// Move moves the port. Return of a loan that did not move gives nothing back.
func Prepare(name string, ns *namespace.NetNS) (*Loan, error) {
	st, err := Inspect(name)
	if err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	home, err := netns.Get()
	runtime.UnlockOSThread()
	if err != nil {
		return nil, fmt.Errorf("port: open the current network namespace: %w", err)
	}
	return &Loan{orig: st, ns: ns, home: home}, nil
}

// Move moves the prepared port into the loan's namespace. After Return it
// fails: a port given back in an emergency is not lent again.
func (l *Loan) Move() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	name := l.orig.Name
	if l.returned {
		return fmt.Errorf("port: %s: the loan was already given back", name)
	}
	dev, err := netlink.LinkByName(name)
	if err != nil {
		return fmt.Errorf("port: find %q: %w", name, err)
	}
	fd := l.ns.FD()
	if fd < 0 {
		return fmt.Errorf("port: lend %s: %w", name, namespace.ErrClosed)
	}
	if err := netlink.LinkSetNsFd(dev, fd); err != nil {
		return fmt.Errorf("port: move %s into %s: %w", name, l.ns, err)
	}
	l.moved = true
	return nil
}

// KeepNAPIs records the current settings of the NAPIs ids (read through c,
// a client in the loan's namespace), which Return restores before it gives
// the port back. Call it before changing them.
func (l *Loan) KeepNAPIs(c *napi.Client, ids []uint32) error {
	for _, id := range ids {
		s, err := c.Snapshot(id)
		if err != nil {
			return fmt.Errorf("port: record the settings of NAPI %d of %s: %w", id, l.orig.Name, err)
		}
		l.napis = append(l.napis, napiSettings{id: id, s: s})
	}
	return nil
}

// Return gives the port back: it restores the recorded NAPI settings, takes
// the port down in the loan's namespace, moves it back to the namespace it
// came from (explicitly: a namespace's end would destroy a virtual device
// such as veth), and restores its MTU, offloads and up/down state there,
// then reads them back. It may be called more than once (from a cleanup and
// an emergency handler) and from any goroutine; later calls return the first
// call's result.
func (l *Loan) Return() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.returned {
		return l.err
	}
	l.returned = true
	if l.moved {
		l.err = l.giveBack()
	}
	l.home.Close()
	return l.err
}

func (l *Loan) giveBack() error {
	name := l.orig.Name
	var errs []error
	err := l.ns.Do(func() error {
		if len(l.napis) > 0 {
			c, err := napi.DialCurrent()
			if err != nil {
				errs = append(errs, fmt.Errorf("port: restore the NAPIs of %s: %w", name, err))
			} else {
				for _, s := range l.napis {
					if err := c.Restore(s.id, s.s); err != nil && !errors.Is(err, os.ErrNotExist) {
						errs = append(errs, fmt.Errorf("port: restore NAPI %d of %s: %w", s.id, name, err))
					}
				}
				c.Close()
			}
		}
		dev, err := netlink.LinkByName(name)
		if err != nil {
			return fmt.Errorf("port: find %s in %s to give it back: %w", name, l.ns, err)
		}
		if err := netlink.LinkSetDown(dev); err != nil {
			errs = append(errs, fmt.Errorf("port: take %s down: %w", name, err))
		}
		if err := netlink.LinkSetNsFd(dev, int(l.home)); err != nil {
			return fmt.Errorf("port: move %s back: %w", name, err)
		}
		return nil
	})
	if errors.Is(err, namespace.ErrClosed) {
		// The namespace is gone: a physical device is back home already,
		// a virtual one is gone with it.
		err = fmt.Errorf("port: %s: its namespace was closed before the port was given back: %w", name, err)
	}
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	if err := restore(l.orig); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// restore puts back st in the calling thread's namespace and checks it.
func restore(st State) error {
	dev, err := netlink.LinkByName(st.Name)
	if err != nil {
		return fmt.Errorf("port: find %s after moving it back: %w", st.Name, err)
	}
	var errs []error
	if dev.Attrs().MTU != st.MTU {
		if err := netlink.LinkSetMTU(dev, st.MTU); err != nil {
			errs = append(errs, fmt.Errorf("port: restore the MTU of %s to %d: %w", st.Name, st.MTU, err))
		}
	}
	if st.HasOffloads {
		for _, o := range []struct {
			off link.Offload
			on  bool
		}{{link.GRO, st.GRO}, {link.TSO, st.TSO}} {
			if on, err := link.GetOffload(st.Name, o.off); err == nil && on == o.on {
				continue
			}
			if err := link.SetOffload(st.Name, o.off, o.on); err != nil {
				errs = append(errs, fmt.Errorf("port: restore %v of %s: %w", o.off, st.Name, err))
			}
		}
	}
	if st.Up {
		if err := netlink.LinkSetUp(dev); err != nil {
			errs = append(errs, fmt.Errorf("port: bring %s up again: %w", st.Name, err))
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	got, err := Inspect(st.Name)
	if err != nil && !errors.Is(err, ErrInUse) {
		return err
	}
	got.Index = st.Index // a move may renumber it; the name is what users know
	if got.Device == "" {
		got.Device = st.Device // sysfs may not show it again at once
	}
	if got != st {
		return fmt.Errorf("port: %s is back as %v, not as it was: %v", st.Name, got, st)
	}
	return nil
}

// Names parses "SERVER,CLIENT".
func Names(s string) (server, client string, err error) {
	parts := strings.Split(s, ",")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return "", "", fmt.Errorf("%q: want two port names, SERVER,CLIENT", s)
	}
	if parts[0] == parts[1] {
		return "", "", fmt.Errorf("%q: the server and client ports must differ", s)
	}
	for _, p := range parts {
		if len(p) >= unix.IFNAMSIZ || strings.ContainsAny(p, "/ \t") || slices.Contains([]string{".", ".."}, p) {
			return "", "", fmt.Errorf("%q: %q is not a valid interface name (at most %d characters, no '/' or spaces)", s, p, unix.IFNAMSIZ-1)
		}
	}
	return parts[0], parts[1], nil
}
