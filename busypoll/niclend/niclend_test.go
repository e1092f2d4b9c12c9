package niclend_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"

	"github.com/netdev-go/busypolltest/busypoll/niclend"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/netdev-go/busypolltest/busypoll/testnet"
)

func TestNames(t *testing.T) {
	s, c, err := niclend.Names("eth2,eth3")
	require.NoError(t, err)
	assert.Equal(t, "eth2", s)
	assert.Equal(t, "eth3", c)
	for in, want := range map[string]string{
		"eth2":                  "want two port names, SERVER,CLIENT",
		"eth2,":                 "want two port names",
		"a,b,c":                 "want two port names",
		"eth2,eth2":             "the server and client ports must differ",
		"eth2,a/b":              `"a/b" is not a valid interface name`,
		"eth2,sixteen-chars-xy": `"sixteen-chars-xy" is not a valid interface name (at most 15 characters`,
	} {
		_, _, err := niclend.Names(in)
		if assert.Error(t, err, in) {
			assert.Contains(t, err.Error(), want, in)
		}
	}
}

// standIn makes a veth pair in the test's own namespace (a fresh one, so the
// host's devices are never seen) standing in for two cabled ports, and
// returns the names. It runs f inside that namespace on a locked thread.
func withStandIn(t *testing.T, f func(a, b string)) {
	t.Helper()
	testenv.NeedRoot(t, "creates network namespaces and a veth pair and moves devices")
	home := testnet.NetNS(t, "port-home")
	a := fmt.Sprintf("pt%06x", rand.Uint32()&0xffffff)
	b := a + "b"
	require.NoError(t, home.Do(func() error {
		if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}); err != nil {
			if errors.Is(err, errors.ErrUnsupported) {
				return err
			}
			return fmt.Errorf("create the stand-in: %w", err)
		}
		f(a, b)
		return nil
	}))
}

func TestKernelLendAndReturn(t *testing.T) {
	withStandIn(t, func(a, b string) {
		link, err := netlink.LinkByName(b)
		require.NoError(t, err)
		require.NoError(t, netlink.LinkSetMTU(link, 9000))
		require.NoError(t, netlink.LinkSetUp(link))
		before, err := niclend.Inspect(b)
		require.NoError(t, err, "an up port with only the kernel's link-local address is idle")
		assert.True(t, before.Up)

		ns := testnet.NetNS(t, "port-lent")
		loan, err := niclend.Lend(b, ns)
		require.NoError(t, err)
		_, err = netlink.LinkByName(b)
		require.Error(t, err, "the port left this namespace")
		require.NoError(t, ns.Do(func() error {
			l, err := netlink.LinkByName(b)
			if err != nil {
				return err
			}
			if err := netlink.LinkSetMTU(l, 1280); err != nil {
				return err
			}
			return netlink.LinkSetDown(l)
		}))
		require.NoError(t, loan.Return())
		require.NoError(t, loan.Return(), "a second Return returns the first's result")
		after, err := niclend.Inspect(b)
		require.NoError(t, err)
		after.Index = before.Index
		assert.Equal(t, before, after, "given back as it was")
		assert.Error(t, loan.Move(), "a returned loan does not move again")
	})
}

func TestKernelRefusesPortInUse(t *testing.T) {
	withStandIn(t, func(a, b string) {
		link, err := netlink.LinkByName(a)
		require.NoError(t, err)
		require.NoError(t, netlink.AddrAdd(link, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)}}))
		ns := testnet.NetNS(t, "port-refused")
		_, err = niclend.Lend(a, ns)
		require.ErrorIs(t, err, niclend.ErrInUse)
		assert.Contains(t, err.Error(), "it carries the address 192.0.2.1/24")
		assert.Contains(t, err.Error(), "nothing was changed")
		_, err = netlink.LinkByName(a)
		assert.NoError(t, err, "the refused port stays where it was")

		_, err = niclend.Lend("nosuchport0", ns)
		assert.ErrorIs(t, err, os.ErrNotExist)
	})
}
