package netdevsim

import (
	"encoding/binary"
	"slices"
	"testing"

	mdnetlink "github.com/mdlayher/netlink"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linkMsg encodes the body of an RTM_NEWLINK message as the kernel sends it.
func linkMsg(t *testing.T, ifindex int32, attrs func(ae *mdnetlink.AttributeEncoder)) []byte {
	t.Helper()
	hdr := make([]byte, ifinfomsgLen)
	binary.NativeEndian.PutUint32(hdr[4:8], uint32(ifindex))
	ae := mdnetlink.NewAttributeEncoder()
	attrs(ae)
	b, err := ae.Encode()
	require.NoError(t, err)
	return append(hdr, b...)
}

func TestParsePhysPortName(t *testing.T) {
	name, err := parsePhysPortName(linkMsg(t, 7, func(ae *mdnetlink.AttributeEncoder) {
		ae.String(unix.IFLA_IFNAME, "eth0")
		ae.Uint32(unix.IFLA_MTU, 1500)
		ae.String(unix.IFLA_PHYS_PORT_NAME, "p2")
		ae.String(unix.IFLA_PARENT_DEV_NAME, "netdevsim1048577")
	}))
	require.NoError(t, err)
	assert.Equal(t, "p2", name)

	name, err = parsePhysPortName(linkMsg(t, 1, func(ae *mdnetlink.AttributeEncoder) {
		ae.String(unix.IFLA_IFNAME, "lo")
	}))
	require.NoError(t, err)
	assert.Empty(t, name, "no IFLA_PHYS_PORT_NAME")
}

func TestParsePhysPortNameErrors(t *testing.T) {
	_, err := parsePhysPortName(make([]byte, 10))
	assert.EqualError(t, err, "rtnetlink: link message of 10 bytes, shorter than ifinfomsg (16)")

	bad := append(make([]byte, ifinfomsgLen), 0xff, 0x00, 0x03, 0x00) // attribute longer than the message
	_, err = parsePhysPortName(bad)
	assert.ErrorContains(t, err, "rtnetlink: link 0:")
}

func TestNetdevsOf(t *testing.T) {
	nsim := &netlink.Device{LinkAttrs: netlink.LinkAttrs{
		Name: "eth0", Index: 7, NumRxQueues: 4,
		ParentDev: "netdevsim1048577", ParentDevBus: "netdevsim",
	}}
	lo := &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", Index: 1, NumRxQueues: 1}}
	assert.Equal(t, []netdev{
		{Port: Port{Name: "eth0", IfIndex: 7}, parent: "netdevsim1048577", parentBus: "netdevsim", rxQueues: 4},
		{Port: Port{Name: "lo", IfIndex: 1}, rxQueues: 1},
	}, netdevsOf([]netlink.Link{nsim, lo}))
}

func TestPortsOf(t *testing.T) {
	nsim := func(ifindex int, name, parent, port string) netdev {
		return netdev{Port: Port{Name: name, IfIndex: ifindex}, parent: parent, parentBus: "netdevsim", portName: port, rxQueues: 1}
	}
	lo := netdev{Port: Port{Name: "lo", IfIndex: 1}}
	other := nsim(2, "eth0", "netdevsim50", "p1") // id 50 is a prefix of 500
	p3 := nsim(9, "eth3", "netdevsim500", "p3")
	p1 := nsim(12, "renamed", "netdevsim500", "p1")
	p2 := nsim(4, "eth2", "netdevsim500", "p2")
	veth := netdev{Port: Port{Name: "veth0", IfIndex: 5}, parent: "netdevsim500", parentBus: "pci"}

	got := portsOf([]netdev{lo, other, p3, veth, p1, p2}, 500)
	names := func(nds []netdev) (out []string) {
		for i, nd := range nds {
			assert.Equal(t, i, nd.Index)
			out = append(out, nd.Name)
		}
		return out
	}
	assert.Equal(t, []string{"renamed", "eth2", "eth3"}, names(got), "by phys_port_name, not ifindex")

	// Without port names for all, ifindex order (creation order) decides.
	p1.portName = ""
	got = portsOf([]netdev{p3, p1, p2}, 500)
	assert.Equal(t, []string{"eth2", "eth3", "renamed"}, names(got))

	assert.Empty(t, portsOf([]netdev{lo, other}, 5))
}

func TestPortNumber(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		okay bool
	}{
		{"p1", 1, true}, {"p12", 12, true}, {"p0", 0, true},
		{"", 0, false}, {"p", 0, false}, {"p1s0", 0, false}, {"pf0vf1", 0, false}, {"p-1", 0, false}, {"1", 0, false},
	}
	for _, tt := range tests {
		n, ok := portNumber(tt.in)
		assert.Equal(t, tt.okay, ok, tt.in)
		assert.Equal(t, tt.n, n, tt.in)
	}
}

// TestListNetdevsHere runs the real rtnetlink dump (LinkList) in the test's
// own namespace (no privileges needed): it must find loopback with its rx
// queue count, and find no ports of an id nobody uses. It also asks for
// loopback's phys_port_name, which it has none of.
func TestListNetdevsHere(t *testing.T) {
	var links []netlink.Link
	require.NoError(t, withHandle(nil, func(h *netlink.Handle) error {
		var err error
		links, err = h.LinkList()
		return err
	}))
	all := netdevsOf(links)
	i := slices.IndexFunc(links, func(l netlink.Link) bool { return l.Attrs().RawFlags&unix.IFF_LOOPBACK != 0 })
	require.GreaterOrEqual(t, i, 0, "a loopback link in %v", all)
	assert.Equal(t, "lo", all[i].Name)
	assert.Positive(t, all[i].IfIndex)
	assert.Positive(t, all[i].rxQueues, "IFLA_NUM_RX_QUEUES decoded (0: the kernel sent none; rtnetlink reports it only with CONFIG_RPS)")

	lo := all[i : i+1]
	require.NoError(t, physPortNames(nil, lo))
	assert.Empty(t, lo[0].portName)

	ports, err := listNetdevs(nil, MaxID)
	require.NoError(t, err)
	assert.Empty(t, ports)
}
