package link_test

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll/link"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/netdev-go/busypolltest/busypoll/testnet"
)

func TestNewVethPair(t *testing.T) {
	testenv.NeedRootNetNS(t)
	v := testnet.NewVeth(t, "veth", netip.MustParsePrefix("10.111.0.1/24"), netip.MustParsePrefix("10.111.0.2/24"))
	p := v.Pair
	assert.NotZero(t, p.Server.Index)
	assert.NotZero(t, p.Client.Index)

	for _, c := range []struct {
		l    link.Link
		o    link.Offload
		want uint32
	}{
		{p.Server, link.GRO, 1},
		{p.Client, link.TSO, 0},
	} {
		var got uint32
		require.NoError(t, c.l.NS.Do(func() (err error) {
			got, err = link.OffloadOf(c.l.Name, c.o)
			return err
		}))
		assert.Equal(t, c.want, got, "%s of %s", c.o, c.l.Name)
	}

	// A link flap: down loses the carrier, up gets it back.
	require.NoError(t, p.Server.SetUp(false))
	assert.Error(t, p.Server.WaitCarrier(0))
	require.NoError(t, p.Server.SetUp(true))
	assert.NoError(t, p.Server.WaitCarrier(link.LinkUpTimeout))
}

func TestSetOffloadErrors(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns := testnet.NetNS(t, "offload")
	tests := []struct {
		name, ifname string
		o            link.Offload
		wantErr      string
	}{
		{"missing device", "nosuchdev0", link.GRO, "nosuchdev0"},
		{"name too long", "abcdefghijklmnopq", link.GRO, "longer than 15 bytes"},
		{"unknown offload", "lo", link.Offload(99), "unknown offload 99"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ns.Do(func() error { return link.SetOffload(tt.ifname, tt.o, true) })
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
}

func TestIndexOf(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns := testnet.NetNS(t, "indexof")
	idx, err := link.IndexOf(ns, "lo")
	require.NoError(t, err)
	assert.Equal(t, 1, idx, "lo is the first device of a namespace")
	_, err = link.IndexOf(ns, "nosuchdev0")
	assert.ErrorContains(t, err, "nosuchdev0")
}
