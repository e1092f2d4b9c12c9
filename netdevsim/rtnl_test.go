package netdevsim

import (
	"encoding/binary"
	"slices"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// linkMsg encodes the body of an RTM_NEWLINK message as the kernel sends it.
func linkMsg(t *testing.T, ifindex int32, flags uint32, attrs func(ae *netlink.AttributeEncoder)) []byte {
	t.Helper()
	hdr := make([]byte, ifinfomsgLen)
	binary.NativeEndian.PutUint32(hdr[4:8], uint32(ifindex))
	binary.NativeEndian.PutUint32(hdr[8:12], flags)
	ae := netlink.NewAttributeEncoder()
	attrs(ae)
	b, err := ae.Encode()
	require.NoError(t, err)
	return append(hdr, b...)
}

func nsimLink(t *testing.T, ifindex int32, name, parent, port string, rxq uint32) []byte {
	return linkMsg(t, ifindex, unix.IFF_UP|unix.IFF_LOWER_UP, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.IFLA_IFNAME, name)
		ae.Uint32(unix.IFLA_MTU, 1500)
		ae.Uint32(unix.IFLA_NUM_RX_QUEUES, rxq)
		if port != "" {
			ae.String(unix.IFLA_PHYS_PORT_NAME, port)
		}
		ae.String(unix.IFLA_PARENT_DEV_NAME, parent)
		ae.String(unix.IFLA_PARENT_DEV_BUS_NAME, "netdevsim")
	})
}

func TestParseLink(t *testing.T) {
	nd, err := parseLink(nsimLink(t, 7, "eth0", "netdevsim1048577", "p2", 4))
	require.NoError(t, err)
	assert.Equal(t, netdev{
		Port:      Port{Name: "eth0", IfIndex: 7},
		flags:     unix.IFF_UP | unix.IFF_LOWER_UP,
		parent:    "netdevsim1048577",
		parentBus: "netdevsim",
		portName:  "p2",
		rxQueues:  4,
	}, nd)

	lo, err := parseLink(linkMsg(t, 1, unix.IFF_LOOPBACK, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.IFLA_IFNAME, "lo")
	}))
	require.NoError(t, err)
	assert.Equal(t, netdev{Port: Port{Name: "lo", IfIndex: 1}, flags: unix.IFF_LOOPBACK}, lo)
}

func TestParseLinkErrors(t *testing.T) {
	_, err := parseLink(make([]byte, 10))
	assert.EqualError(t, err, "rtnetlink: link message of 10 bytes, shorter than ifinfomsg (16)")

	bad := append(make([]byte, ifinfomsgLen), 0xff, 0x00, 0x03, 0x00) // attribute longer than the message
	_, err = parseLink(bad)
	assert.ErrorContains(t, err, "rtnetlink: link 0:")
}

func TestParseLinksDumpInterrupted(t *testing.T) {
	msgs := []netlink.Message{
		{Header: netlink.Header{Type: unix.RTM_NEWLINK}, Data: nsimLink(t, 2, "eth0", "netdevsim5", "p1", 1)},
		{Header: netlink.Header{Type: unix.RTM_NEWLINK, Flags: netlink.DumpInterrupted}, Data: nsimLink(t, 3, "eth1", "netdevsim5", "p2", 1)},
	}
	all, intr, err := parseLinks(msgs)
	require.NoError(t, err)
	assert.True(t, intr)
	assert.Len(t, all, 2)

	_, intr, err = parseLinks(msgs[:1])
	require.NoError(t, err)
	assert.False(t, intr)
}

func TestPortsOf(t *testing.T) {
	parse := func(b []byte) netdev {
		nd, err := parseLink(b)
		require.NoError(t, err)
		return nd
	}
	lo := parse(linkMsg(t, 1, unix.IFF_LOOPBACK, func(ae *netlink.AttributeEncoder) { ae.String(unix.IFLA_IFNAME, "lo") }))
	other := parse(nsimLink(t, 2, "eth0", "netdevsim50", "p1", 1)) // id 50 is a prefix of 500
	p3 := parse(nsimLink(t, 9, "eth3", "netdevsim500", "p3", 1))
	p1 := parse(nsimLink(t, 12, "renamed", "netdevsim500", "p1", 1))
	p2 := parse(nsimLink(t, 4, "eth2", "netdevsim500", "p2", 1))
	veth := parse(linkMsg(t, 5, 0, func(ae *netlink.AttributeEncoder) {
		ae.String(unix.IFLA_IFNAME, "veth0")
		ae.String(unix.IFLA_PARENT_DEV_NAME, "netdevsim500")
		ae.String(unix.IFLA_PARENT_DEV_BUS_NAME, "pci")
	}))

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

// TestListNetdevsHere runs the real rtnetlink dump in the test's own
// namespace (no privileges needed): it must parse every link and find
// loopback, and find no ports of an id nobody uses.
func TestListNetdevsHere(t *testing.T) {
	c, err := dialRoute(nil)
	require.NoError(t, err)
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request | netlink.Dump},
		Data:   make([]byte, ifinfomsgLen),
	})
	require.NoError(t, err)
	all, _, err := parseLinks(msgs)
	require.NoError(t, err)
	i := slices.IndexFunc(all, func(nd netdev) bool { return nd.flags&unix.IFF_LOOPBACK != 0 })
	require.GreaterOrEqual(t, i, 0, "a loopback link in %v", all)
	assert.Equal(t, "lo", all[i].Name)
	assert.Positive(t, all[i].IfIndex)
	assert.Positive(t, all[i].rxQueues, "IFLA_NUM_RX_QUEUES decoded (0: the kernel sent none; rtnetlink reports it only with CONFIG_RPS)")

	ports, err := listNetdevs(nil, MaxID)
	require.NoError(t, err)
	assert.Empty(t, ports)
}
