package netdevsim

import (
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// netdev is a link as rtnetlink reports it, with what identifies a
// netdevsim port.
type netdev struct {
	Port
	flags     uint32 // IFF_*
	parent    string // IFLA_PARENT_DEV_NAME, "netdevsimID"
	parentBus string // IFLA_PARENT_DEV_BUS_NAME, "netdevsim"
	portName  string // IFLA_PHYS_PORT_NAME, "pN"
	rxQueues  int    // IFLA_NUM_RX_QUEUES
}

// ifinfomsgLen is sizeof(struct ifinfomsg).
const ifinfomsgLen = 16

// dialRoute opens an rtnetlink socket in ns (nil: the calling thread's).
func dialRoute(ns Namespace) (*netlink.Conn, error) {
	cfg := &netlink.Config{}
	if ns != nil {
		cfg.NetNS = ns.FD()
	}
	c, err := netlink.Dial(unix.NETLINK_ROUTE, cfg)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink socket: %w", err)
	}
	// Best effort: without it errors just lack the kernel's message.
	_ = c.SetOption(netlink.ExtendedAcknowledge, true)
	return c, nil
}

// listNetdevs is the real Bus.netdevs: the netdevs of device id in ns,
// found with an RTM_GETLINK dump inside ns.
func listNetdevs(ns Namespace, id int) ([]netdev, error) {
	c, err := dialRoute(ns)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// A dump that races with link changes is flagged as interrupted and
	// may miss or repeat links: dump again.
	const tries = 5
	for range tries {
		msgs, err := c.Execute(netlink.Message{
			Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request | netlink.Dump},
			Data:   make([]byte, ifinfomsgLen), // AF_UNSPEC, all links
		})
		if err != nil {
			return nil, fmt.Errorf("rtnetlink link dump: %w", err)
		}
		all, intr, err := parseLinks(msgs)
		if err != nil {
			return nil, err
		}
		if !intr {
			return portsOf(all, id), nil
		}
	}
	return nil, fmt.Errorf("rtnetlink link dump: interrupted by link changes %d times in a row", tries)
}

// parseLinks decodes the RTM_NEWLINK messages of a dump and reports whether
// the kernel flagged it as interrupted.
func parseLinks(msgs []netlink.Message) (all []netdev, interrupted bool, err error) {
	for _, m := range msgs {
		if m.Header.Flags&netlink.DumpInterrupted != 0 {
			interrupted = true
		}
		if m.Header.Type != unix.RTM_NEWLINK {
			continue
		}
		nd, err := parseLink(m.Data)
		if err != nil {
			return nil, false, err
		}
		all = append(all, nd)
	}
	return all, interrupted, nil
}

// parseLink decodes the body of an RTM_NEWLINK message.
func parseLink(b []byte) (netdev, error) {
	var nd netdev
	if len(b) < ifinfomsgLen {
		return nd, fmt.Errorf("rtnetlink: link message of %d bytes, shorter than ifinfomsg (%d)", len(b), ifinfomsgLen)
	}
	nd.IfIndex = int(int32(binary.NativeEndian.Uint32(b[4:8])))
	nd.flags = binary.NativeEndian.Uint32(b[8:12])
	ad, err := netlink.NewAttributeDecoder(b[ifinfomsgLen:])
	if err != nil {
		return nd, fmt.Errorf("rtnetlink: link %d: %w", nd.IfIndex, err)
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.IFLA_IFNAME:
			nd.Name = ad.String()
		case unix.IFLA_NUM_RX_QUEUES:
			nd.rxQueues = int(ad.Uint32())
		case unix.IFLA_PHYS_PORT_NAME:
			nd.portName = ad.String()
		case unix.IFLA_PARENT_DEV_NAME:
			nd.parent = ad.String()
		case unix.IFLA_PARENT_DEV_BUS_NAME:
			nd.parentBus = ad.String()
		}
	}
	if err := ad.Err(); err != nil {
		return nd, fmt.Errorf("rtnetlink: link %d: %w", nd.IfIndex, err)
	}
	return nd, nil
}

// portsOf picks the netdevs of device id and numbers them: by the number in
// their phys_port_name ("p1", "p2", ...) when all have one, else by ifindex
// (the kernel creates a device's ports in order, and ifindexes grow).
func portsOf(all []netdev, id int) []netdev {
	want := "netdevsim" + strconv.Itoa(id)
	var out []netdev
	for _, nd := range all {
		if nd.parentBus == "netdevsim" && nd.parent == want {
			out = append(out, nd)
		}
	}
	byName := true
	for _, nd := range out {
		if _, ok := portNumber(nd.portName); !ok {
			byName = false
		}
	}
	slices.SortFunc(out, func(a, b netdev) int {
		if byName {
			na, _ := portNumber(a.portName)
			nb, _ := portNumber(b.portName)
			if na != nb {
				return na - nb
			}
		}
		return a.IfIndex - b.IfIndex
	})
	for i := range out {
		out[i].Index = i
	}
	return out
}

// portNumber parses a physical port name "pN".
func portNumber(name string) (int, bool) {
	s, ok := strings.CutPrefix(name, "p")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}
