// Package testnet holds the fixtures the tests of this module share: an
// anonymous network namespace, and a veth pair between two of them, each
// released when the test ends. Tests of busypoll/namespace and
// busypoll/link, which these fixtures are built from, cannot use it.
package testnet

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll/link"
	"github.com/netdev-go/busypolltest/busypoll/namespace"
)

// NetNS creates an anonymous network namespace labelled label and closes it
// when t ends.
func NetNS(t testing.TB, label string) *namespace.NetNS {
	t.Helper()
	ns, err := namespace.New(label)
	require.NoError(t, err, "create network namespace %s", label)
	t.Cleanup(func() { assert.NoError(t, ns.Close(), "close network namespace %s", label) })
	return ns
}

// VethPair creates a veth pair between server and client with the given
// addresses (GRO on at the server, so that it has a NAPI; TSO off at the
// client), and skips t where the kernel has no veth. The pair goes with
// its namespaces.
func VethPair(t testing.TB, server, client *namespace.NetNS, serverAddr, clientAddr netip.Prefix) link.VethPair {
	t.Helper()
	p, err := link.NewVethPair(server, client, serverAddr, clientAddr)
	if errors.Is(err, link.ErrNoVeth) {
		t.Skipf("%v", err)
	}
	require.NoError(t, err, "veth pair between %s and %s", server, client)
	return p
}

// Veth is two fresh namespaces and a veth pair between them.
type Veth struct {
	Server, Client *namespace.NetNS
	Pair           link.VethPair
}

// NewVeth creates two namespaces (labelled prefix-sv and prefix-cl) and a
// VethPair between them.
func NewVeth(t testing.TB, prefix string, serverAddr, clientAddr netip.Prefix) Veth {
	t.Helper()
	v := Veth{Server: NetNS(t, prefix+"-sv"), Client: NetNS(t, prefix+"-cl")}
	v.Pair = VethPair(t, v.Server, v.Client, serverAddr, clientAddr)
	return v
}
