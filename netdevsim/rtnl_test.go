package netdevsim

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

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
		return netdev{Port: Port{Name: name, IfIndex: ifindex}, parent: parent, parentBus: "netdevsim", rxQueues: 1}
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
	assert.Equal(t, []string{"eth2", "eth3", "renamed"}, names(got), "ifindex order, which is creation order")

	assert.Empty(t, portsOf([]netdev{lo, other}, 5))
}

// TestListNetdevsHere runs the real rtnetlink dump (LinkList) in the test's
// own namespace (no privileges needed): it must find loopback with its rx
// queue count, and find no ports of an id nobody uses.
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

	ports, err := listNetdevs(nil, MaxID)
	require.NoError(t, err)
	assert.Empty(t, ports)
}
