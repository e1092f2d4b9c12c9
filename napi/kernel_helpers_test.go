package napi

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/netdev-go/busypolltest/busypoll/link"
	"github.com/netdev-go/busypolltest/busypoll/namespace"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// requireRoot skips t unless it runs as root and without -short.
func requireRoot(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped with -short: creates network namespaces and a veth pair")
	}
	if os.Geteuid() != 0 {
		t.Skipf("needs root: creates network namespaces and a veth pair and runs napi-set (CAP_NET_ADMIN); running as uid %d", os.Geteuid())
	}
}

// testVeth is a veth pair between two namespaces that the test created.
type testVeth struct {
	server, client *namespace.NetNS
	pair           link.VethPair
}

// newTestVeth creates two namespaces and a veth pair across them with GRO on
// at the server end, so that the server end has a NAPI. Everything goes away
// at the end of the test.
func newTestVeth(t *testing.T) testVeth {
	t.Helper()
	server, err := namespace.New("napi-sv")
	require.NoError(t, err)
	t.Cleanup(func() { _ = server.Close() })
	client, err := namespace.New("napi-cl")
	require.NoError(t, err)
	t.Cleanup(func() { _ = client.Close() })

	pair, err := link.NewVethPair(server, client,
		netip.MustParsePrefix("10.77.0.1/24"), netip.MustParsePrefix("10.77.0.2/24"))
	if errors.Is(err, link.ErrNoVeth) {
		t.Skipf("%v", err)
	}
	require.NoError(t, err)
	return testVeth{server: server, client: client, pair: pair}
}

// newKernelNAPI makes a veth pair (newTestVeth) and a Client in its server
// namespace, skips unless the kernel's napi-set takes the three timeouts, and
// returns the server end's single NAPI.
func newKernelNAPI(t *testing.T) (testVeth, *Client, Features, NAPI) {
	t.Helper()
	requireRoot(t)
	v := newTestVeth(t)
	c := dialIn(t, v.server)
	fs, err := c.Features()
	require.NoError(t, err)
	t.Logf("kernel %s: %v", kernelRelease(t), fs)
	if err := fs.Missing(FeatureNAPISet, FeatureDeferHardIRQs, FeatureGROFlushTimeout, FeatureIRQSuspendTimeout); err != nil {
		t.Skip(err)
	}
	srv := v.pair.Server
	ns, err := c.NAPIs(uint32(srv.Index))
	require.NoError(t, err)
	require.Len(t, ns, 1, "%s (one rx queue, GRO on) has one NAPI", srv.Name)
	n := ns[0]
	require.Equal(t, uint32(srv.Index), n.IfIndex)
	require.NotZero(t, n.ID)
	return v, c, fs, n
}

// dialIn dials a Client in ns and closes it at the end of the test.
func dialIn(t *testing.T, ns *namespace.NetNS) *Client {
	t.Helper()
	c, err := Dial(ns.FD())
	require.NoError(t, err, "dial netdev in %s", ns)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// kernelRelease returns uname -r.
func kernelRelease(t *testing.T) string {
	t.Helper()
	var u unix.Utsname
	require.NoError(t, unix.Uname(&u))
	return unix.ByteSliceToString(u.Release[:])
}

// napiThreadPIDs returns the pids of the kernel threads named as the kernel
// names the thread of NAPI id on device dev ("napi/DEV-ID"). /proc/PID/comm
// shows a kernel thread's full name on newer kernels and the first 15
// characters on older ones; both are accepted. It reads /proc, independently
// of netlink.
func napiThreadPIDs(t *testing.T, dev string, id uint32) []uint32 {
	t.Helper()
	full := fmt.Sprintf("napi/%s-%d", dev, id)
	short := full
	if len(short) > 15 {
		short = short[:15]
	}
	comms, err := filepath.Glob("/proc/[0-9]*/comm")
	require.NoError(t, err)
	var pids []uint32
	for _, p := range comms {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the task exited
		}
		if comm := strings.TrimSuffix(string(b), "\n"); comm != full && comm != short {
			continue
		}
		pid, err := strconv.ParseUint(filepath.Base(filepath.Dir(p)), 10, 32)
		require.NoError(t, err)
		pids = append(pids, uint32(pid))
	}
	return pids
}
