package netdevsim

import (
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strconv"

	mdnetlink "github.com/mdlayher/netlink"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// netdev is a link as rtnetlink reports it, with what identifies a
// netdevsim port.
type netdev struct {
	Port
	parent    string // IFLA_PARENT_DEV_NAME, "netdevsimID"
	parentBus string // IFLA_PARENT_DEV_BUS_NAME, "netdevsim"
	rxQueues  int    // IFLA_NUM_RX_QUEUES
}

// ifinfomsgLen is sizeof(struct ifinfomsg), the head of an rtnetlink link
// message (Available reads one).
const ifinfomsgLen = 16

// netlinker is a Namespace with an rtnetlink handle of its own, as
// busypoll/namespace.NetNS has.
type netlinker interface {
	Netlink(f func(h *netlink.Handle) error) error
}

// withHandle runs f with an rtnetlink handle in ns (nil: the calling
// thread's): the namespace's own if it has one, else one opened inside it
// for f and closed afterwards.
func withHandle(ns Namespace, f func(h *netlink.Handle) error) error {
	if n, ok := ns.(netlinker); ok {
		return n.Netlink(f)
	}
	var h *netlink.Handle
	open := func() (err error) {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	}
	var err error
	if ns == nil {
		runtime.LockOSThread()
		err = open()
		runtime.UnlockOSThread()
	} else {
		err = ns.Do(open)
	}
	if h != nil {
		defer h.Close()
	}
	if err != nil {
		return fmt.Errorf("open an rtnetlink handle: %w", err)
	}
	return f(h)
}

// dialRoute opens an rtnetlink socket in ns (nil: the calling thread's).
func dialRoute(ns Namespace) (*mdnetlink.Conn, error) {
	cfg := &mdnetlink.Config{}
	if ns != nil {
		// 0 would mean the calling thread's namespace to mdlayher/netlink.
		if cfg.NetNS = ns.FD(); cfg.NetNS <= 0 {
			return nil, fmt.Errorf("open rtnetlink socket: namespace fd %d is invalid (closed namespace?)", cfg.NetNS)
		}
	}
	c, err := mdnetlink.Dial(unix.NETLINK_ROUTE, cfg)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	// Best effort: without it errors just lack the kernel's message.
	_ = c.SetOption(mdnetlink.ExtendedAcknowledge, true)
	return c, nil
}

// listNetdevs is the real Bus.netdevs: the netdevs of device id in ns,
// found with an RTM_GETLINK dump (netlink.Handle.LinkList) inside ns.
func listNetdevs(ns Namespace, id int) ([]netdev, error) {
	var mine []netdev
	err := withHandle(ns, func(h *netlink.Handle) error {
		// A dump that races with link changes is flagged as interrupted
		// and may miss or repeat links: dump again.
		const tries = 5
		for range tries {
			links, err := h.LinkList()
			if errors.Is(err, netlink.ErrDumpInterrupted) {
				continue
			}
			if err != nil {
				return fmt.Errorf("rtnetlink link dump: %w", err)
			}
			mine = ofDevice(netdevsOf(links), id)
			return nil
		}
		return fmt.Errorf("rtnetlink link dump: interrupted by link changes %d times in a row", tries)
	})
	if err != nil {
		return nil, err
	}
	return portsOf(mine, id), nil
}

// netdevsOf takes from LinkList's links what identifies a netdevsim port.
func netdevsOf(links []netlink.Link) []netdev {
	out := make([]netdev, 0, len(links))
	for _, l := range links {
		a := l.Attrs()
		out = append(out, netdev{
			Port:      Port{Name: a.Name, IfIndex: a.Index},
			parent:    a.ParentDev,
			parentBus: a.ParentDevBus,
			rxQueues:  a.NumRxQueues,
		})
	}
	return out
}

// ofDevice keeps the netdevs whose parent is netdevsim device id.
func ofDevice(all []netdev, id int) []netdev {
	want := "netdevsim" + strconv.Itoa(id)
	var out []netdev
	for _, nd := range all {
		if nd.parentBus == "netdevsim" && nd.parent == want {
			out = append(out, nd)
		}
	}
	return out
}

// portsOf picks the netdevs of device id and numbers them in ifindex order:
// the kernel creates a device's ports in order, and ifindexes grow.
func portsOf(all []netdev, id int) []netdev {
	out := ofDevice(all, id)
	slices.SortFunc(out, func(a, b netdev) int { return a.IfIndex - b.IfIndex })
	for i := range out {
		out[i].Index = i
	}
	return out
}
