// Package link sets up the network devices the tests run over, through the
// rtnetlink handle of their namespace: a veth pair between two namespaces
// (VethPair), an existing device taken into use (Link: address, up/down,
// carrier, rx packets), and the two offloads the suite switches (GRO, TSO)
// through the ethtool ioctl.
package link

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"time"

	"github.com/netdev-go/busypolltest/busypoll/namespace"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Prefixes of the names of the veth ends. A random suffix makes the names
// unique on the host, although the namespaces are private: host-wide views
// such as the kernel's tracepoints (napi:napi_poll names the device) would
// otherwise mix concurrent runs.
const (
	VethServerPrefix = "bpt-sv-"
	VethClientPrefix = "bpt-cl-"
)

// Prefixes of the names the suite gives netdevsim's ports, which the
// driver names eth0, eth1, ... in every namespace.
const (
	NetdevsimServerPrefix = "bpt-ns-"
	NetdevsimClientPrefix = "bpt-nc-"
)

// vethNames returns a fresh pair of names, e.g. "bpt-sv-3fa9c1" and
// "bpt-cl-3fa9c1" (13 characters; IFNAMSIZ allows 15).
func vethNames() (server, client string) {
	return UniqueNames(VethServerPrefix, VethClientPrefix)
}

// UniqueNames returns the two prefixes with one fresh random suffix of six
// hex digits, e.g. "bpt-ns-3fa9c1" and "bpt-nc-3fa9c1": names that no other
// run on the host is likely to use (1 in 16.7 million per pair of runs).
// Prefixes of at most 9 characters keep the names within IFNAMSIZ.
func UniqueNames(serverPrefix, clientPrefix string) (server, client string) {
	suffix := fmt.Sprintf("%06x", rand.Uint32()&0xffffff)
	return serverPrefix + suffix, clientPrefix + suffix
}

// Rename gives the device ifindex in ns the name name. The device must be
// down (the kernel refuses to rename a running device with EBUSY).
func Rename(ns *namespace.NetNS, ifindex int, name string) error {
	return ns.Netlink(func(h *netlink.Handle) error {
		l, err := h.LinkByIndex(ifindex)
		if err != nil {
			return fmt.Errorf("link: find ifindex %d in %s: %w", ifindex, ns, err)
		}
		if err := h.LinkSetName(l, name); err != nil {
			return fmt.Errorf("link: rename %s (ifindex %d) in %s to %s: %w", l.Attrs().Name, ifindex, ns, name, err)
		}
		return nil
	})
}

// ErrNoVeth is wrapped by NewVethPair's error when the kernel has no veth
// driver. It matches errors.ErrUnsupported, so callers can skip.
var ErrNoVeth = fmt.Errorf("kernel has no veth driver (CONFIG_VETH, built in or as a loadable module): %w", errors.ErrUnsupported)

// linkUpTimeout bounds the wait for both ends to report a carrier.
const linkUpTimeout = 5 * time.Second

// Link is one network device in a namespace.
type Link struct {
	NS    *namespace.NetNS
	Name  string
	Index int
	Addr  netip.Prefix
}

// VethPair is a veth pair whose ends sit in two namespaces.
type VethPair struct {
	Server Link // receives: one rx queue, GRO on, so it has a NAPI
	Client Link // sends: TSO off, so that segments reach the server's NAPI
}

// NewVethPair creates a veth pair with one rx and one tx queue per end, the
// server end in server and the client end in client, assigns the addresses,
// switches GRO on at the server (veth has a NAPI only with GRO on) and TSO off
// at the client (TCP would otherwise hand veth 64 KiB segments that bypass
// GRO), brings both ends and both loopbacks up, and waits until both ends
// report a carrier. The pair disappears with the namespaces.
func NewVethPair(server, client *namespace.NetNS, serverAddr, clientAddr netip.Prefix) (VethPair, error) {
	for _, a := range []netip.Prefix{serverAddr, clientAddr} {
		if !a.IsValid() {
			return VethPair{}, fmt.Errorf("link: veth address %v is not a valid prefix", a)
		}
	}
	clientFD := client.FD()
	if clientFD < 0 {
		return VethPair{}, fmt.Errorf("%w: %s", namespace.ErrClosed, client)
	}
	var serverIndex, clientIndex int
	serverName, clientName := vethNames()
	err := server.Netlink(func(h *netlink.Handle) error {
		veth := &netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{
				Name:        serverName,
				NumRxQueues: 1,
				NumTxQueues: 1,
			},
			PeerName:      clientName,
			PeerNamespace: netlink.NsFd(clientFD),
		}
		if err := h.LinkAdd(veth); err != nil {
			if errors.Is(err, unix.EOPNOTSUPP) {
				err = fmt.Errorf("%w: %v", ErrNoVeth, err)
			}
			return fmt.Errorf("link: create veth %s (in %s) / %s (in %s): %w",
				serverName, server, clientName, client, err)
		}
		return nil
	})
	if err != nil {
		return VethPair{}, err
	}
	if serverIndex, err = IndexOf(server, serverName); err != nil {
		return VethPair{}, err
	}
	if clientIndex, err = IndexOf(client, clientName); err != nil {
		return VethPair{}, err
	}
	if err := server.Do(func() error { return SetOffload(serverName, GRO, true) }); err != nil {
		return VethPair{}, err
	}
	if err := client.Do(func() error { return SetOffload(clientName, TSO, false) }); err != nil {
		return VethPair{}, err
	}
	var p VethPair
	if p.Server, err = New(server, serverIndex, serverAddr); err != nil {
		return VethPair{}, err
	}
	if p.Client, err = New(client, clientIndex, clientAddr); err != nil {
		return VethPair{}, err
	}
	for _, l := range []*Link{&p.Server, &p.Client} {
		if err := l.WaitCarrier(linkUpTimeout); err != nil {
			return VethPair{}, err
		}
	}
	return p, nil
}

// New takes the existing device ifindex in ns into use for a test: it
// assigns addr, brings the device and the namespace's loopback up, and returns
// the device with its name. It does not wait for a carrier (WaitCarrier).
func New(ns *namespace.NetNS, ifindex int, addr netip.Prefix) (Link, error) {
	l := Link{NS: ns, Index: ifindex, Addr: addr}
	if !addr.IsValid() {
		return Link{}, fmt.Errorf("link: address %v for ifindex %d is not a valid prefix", addr, ifindex)
	}
	err := ns.Netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByIndex(ifindex)
		if err != nil {
			return fmt.Errorf("link: find ifindex %d in %s: %w", ifindex, ns, err)
		}
		name := link.Attrs().Name
		l.Name = name
		a := &netlink.Addr{IPNet: &net.IPNet{
			IP:   addr.Addr().AsSlice(),
			Mask: net.CIDRMask(addr.Bits(), addr.Addr().BitLen()),
		}}
		if addr.Addr().Is6() {
			// No duplicate address detection: the address must work at once.
			a.Flags = unix.IFA_F_NODAD
		}
		if err := h.AddrAdd(link, a); err != nil {
			return fmt.Errorf("link: add %v to %s in %s: %w", addr, name, ns, err)
		}
		if lo, err := h.LinkByName("lo"); err == nil {
			if err := h.LinkSetUp(lo); err != nil {
				return fmt.Errorf("link: bring lo up in %s: %w", ns, err)
			}
		}
		if err := h.LinkSetUp(link); err != nil {
			return fmt.Errorf("link: bring %s up in %s: %w", name, ns, err)
		}
		return nil
	})
	if err != nil {
		return Link{}, err
	}
	return l, nil
}

// IndexOf returns the ifindex of the device name in ns.
func IndexOf(ns *namespace.NetNS, name string) (int, error) {
	var index int
	err := ns.Netlink(func(h *netlink.Handle) error {
		link, err := h.LinkByName(name)
		if err != nil {
			return fmt.Errorf("link: find %s in %s: %w", name, ns, err)
		}
		index = link.Attrs().Index
		return nil
	})
	return index, err
}

// find looks the link up by its ifindex through the handle of its namespace.
func (l Link) find(h *netlink.Handle) (netlink.Link, error) {
	link, err := h.LinkByIndex(l.Index)
	if err != nil {
		return nil, fmt.Errorf("link: find %s (ifindex %d) in %s: %w", l.Name, l.Index, l.NS, err)
	}
	return link, nil
}

// SetUp brings the link up (true) or down (false).
func (l Link) SetUp(up bool) error {
	return l.NS.Netlink(func(h *netlink.Handle) error {
		link, err := l.find(h)
		if err != nil {
			return err
		}
		if up {
			err = h.LinkSetUp(link)
		} else {
			err = h.LinkSetDown(link)
		}
		if err != nil {
			return fmt.Errorf("link: set %s in %s up=%v: %w", l.Name, l.NS, up, err)
		}
		return nil
	})
}

// errNoCarrier is wrapped by WaitCarrier's timeout error.
var errNoCarrier = errors.New("no carrier")

// WaitCarrier polls the link every 10 ms through its namespace's rtnetlink
// handle until it is up with a carrier (IFF_UP and IFF_LOWER_UP), or fails
// after timeout saying what the link reported last.
func (l Link) WaitCarrier(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var flags uint32
		err := l.NS.Netlink(func(h *netlink.Handle) error {
			link, err := l.find(h)
			if err != nil {
				return err
			}
			flags = link.Attrs().RawFlags
			return nil
		})
		if err != nil {
			return err
		}
		const want = unix.IFF_UP | unix.IFF_LOWER_UP
		if flags&want == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("link: %s in %s: %w after %v (flags %#x, want IFF_UP|IFF_LOWER_UP)",
				l.Name, l.NS, errNoCarrier, timeout, flags)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// RxPackets returns the number of packets the device has received (its
// rtnetlink rx_packets), counted before GRO merges them.
func (l Link) RxPackets() (uint64, error) {
	var n uint64
	err := l.NS.Netlink(func(h *netlink.Handle) error {
		link, err := l.find(h)
		if err != nil {
			return err
		}
		if link.Attrs().Statistics == nil {
			return fmt.Errorf("link: %s in %s reports no statistics", l.Name, l.NS)
		}
		n = link.Attrs().Statistics.RxPackets
		return nil
	})
	return n, err
}
