package link

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/netdev-go/busypolltest/busypoll/namespace"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// skipIfNoVeth skips when NewVethPair failed because the kernel has no veth.
func skipIfNoVeth(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrNoVeth) {
		t.Skipf("%v", err)
	}
}

// newTestNetNS creates a namespace that is released when the test ends.
func newTestNetNS(t *testing.T, label string) *namespace.NetNS {
	t.Helper()
	ns, err := namespace.New(label)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, ns.Close()) })
	return ns
}

func TestNewVethPair(t *testing.T) {
	testenv.NeedRootNetNS(t)
	srv := newTestNetNS(t, "veth-sv")
	cli := newTestNetNS(t, "veth-cl")
	p, err := NewVethPair(srv, cli,
		netip.MustParsePrefix("10.111.0.1/24"), netip.MustParsePrefix("10.111.0.2/24"))
	skipIfNoVeth(t, err)
	require.NoError(t, err)
	assert.NotZero(t, p.Server.Index)
	assert.NotZero(t, p.Client.Index)

	for _, c := range []struct {
		link Link
		o    Offload
		want uint32
	}{
		{p.Server, GRO, 1},
		{p.Client, TSO, 0},
	} {
		var got uint32
		require.NoError(t, c.link.NS.Do(func() error {
			fd, err := ethtoolSocket()
			if err != nil {
				return err
			}
			defer unix.Close(fd)
			return ethtoolValueIoctl(fd, c.link.Name, offloadCmds[c.o].get, &got)
		}))
		assert.Equal(t, c.want, got, "%s of %s", c.o, c.link.Name)
	}

	// A link flap: down loses the carrier, up gets it back.
	require.NoError(t, p.Server.SetUp(false))
	assert.Error(t, p.Server.WaitCarrier(0))
	require.NoError(t, p.Server.SetUp(true))
	assert.NoError(t, p.Server.WaitCarrier(linkUpTimeout))
}

func TestSetOffloadErrors(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns := newTestNetNS(t, "offload")
	tests := []struct {
		name, ifname string
		o            Offload
		wantErr      string
	}{
		{"missing device", "nosuchdev0", GRO, "nosuchdev0"},
		{"name too long", "abcdefghijklmnopq", GRO, "longer than 15 bytes"},
		{"unknown offload", "lo", Offload(99), "unknown offload 99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ns.Do(func() error { return SetOffload(tt.ifname, tt.o, true) })
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestIndexOf(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns := newTestNetNS(t, "indexof")
	idx, err := IndexOf(ns, "lo")
	require.NoError(t, err)
	assert.Equal(t, 1, idx, "lo is the first device of a namespace")
	_, err = IndexOf(ns, "nosuchdev0")
	assert.ErrorContains(t, err, "nosuchdev0")
}
