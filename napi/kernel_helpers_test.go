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

	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll/namespace"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/netdev-go/busypolltest/busypoll/testnet"
)

// newTestVeth creates two namespaces and a veth pair across them with GRO on
// at the server end, so that the server end has a NAPI. Everything goes away
// at the end of the test.
func newTestVeth(t *testing.T) testnet.Veth {
	t.Helper()
	return testnet.NewVeth(t, "napi", netip.MustParsePrefix("10.77.0.1/24"), netip.MustParsePrefix("10.77.0.2/24"))
}

// newKernelNAPI makes a veth pair (newTestVeth) and a Client in its server
// namespace, skips unless the kernel's napi-set takes the three timeouts, and
// returns the server end's single NAPI.
func newKernelNAPI(t *testing.T) (testnet.Veth, *Client, Features, NAPI) {
	t.Helper()
	testenv.NeedRoot(t, "creates network namespaces and a veth pair and runs napi-set (CAP_NET_ADMIN)")
	v := newTestVeth(t)
	c := dialIn(t, v.Server)
	fs, err := c.Features()
	require.NoError(t, err)
	t.Logf("kernel %s: %v", testenv.KernelRelease(t), fs)
	testenv.SkipIfNotSupported(t, fs.Missing(FeatureNAPISet, FeatureDeferHardIRQs, FeatureGROFlushTimeout, FeatureIRQSuspendTimeout))
	srv := v.Pair.Server
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
	// No netdev family (Linux 6.1): skip; a kernel that should have it fails.
	testenv.SkipIfNotSupported(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
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

// dialCurrent dials the calling thread's namespace, and skips t where the
// kernel has no netdev family. The caller closes the Client.
func dialCurrent(t *testing.T) *Client {
	t.Helper()
	c, err := DialCurrent()
	if errors.Is(err, os.ErrNotExist) {
		t.Skip(err)
	}
	require.NoError(t, err)
	return c
}
