package busypoll

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/netdev-go/busypolltest/busypoll/namespace"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/netdev-go/busypolltest/busypoll/testnet"
)

// countersIn reads the counters of ns from a thread inside it.
func countersIn(t *testing.T, ns *namespace.NetNS) Counters {
	t.Helper()
	var c Counters
	require.NoError(t, ns.Do(func() (err error) {
		c, err = ReadCounters()
		return err
	}))
	return c
}

// TestTransferBetweenNamespaces streams data from a client namespace to a
// receiver in a server namespace over a veth pair, and checks that each
// namespace's counters saw exactly its own traffic.
func TestTransferBetweenNamespaces(t *testing.T) {
	testenv.NeedRootNetNS(t)
	requireSupported(t)
	tests := []struct {
		name           string
		server, client netip.Prefix
		params         Params
	}{
		{"ipv4 selftest params", netip.MustParsePrefix("10.77.0.1/24"), netip.MustParsePrefix("10.77.0.2/24"), selftestParams},
		{"ipv4 plain epoll", netip.MustParsePrefix("10.77.0.1/24"), netip.MustParsePrefix("10.77.0.2/24"), Params{}},
		{"ipv6 selftest params", netip.MustParsePrefix("fd00:77::1/64"), netip.MustParsePrefix("fd00:77::2/64"), selftestParams},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := testnet.NetNS(t, "xfer-sv")
			cli := testnet.NetNS(t, "xfer-cl")
			idle := testnet.NetNS(t, "xfer-idle")
			testnet.VethPair(t, srv, cli, tt.server, tt.client)

			// Fresh namespaces have received no TCP at all.
			srvBefore, cliBefore := countersIn(t, srv), countersIn(t, cli)
			require.Equal(t, Counters{}, srvBefore, "a fresh namespace's counters")
			require.Equal(t, Counters{}, cliBefore, "a fresh namespace's counters")

			addr := netip.AddrPortFrom(tt.server.Addr(), 0)
			_, err := Listen(ReceiverConfig{Addr: addr})
			require.ErrorIs(t, err, unix.EADDRNOTAVAIL, "the server address exists only in the server namespace")

			var r *Receiver
			require.NoError(t, srv.Do(func() (err error) {
				r, err = Listen(ReceiverConfig{Addr: addr, Params: tt.params})
				return err
			}))
			t.Cleanup(func() { assert.NoError(t, r.Close()) })
			got, err := r.Params()
			require.NoError(t, err)
			assert.Equal(t, tt.params, got, "epoll params read back")

			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			size := large(8 << 20)
			data := randomData(size)
			w := newHashWriter()
			done := receiveAsync(ctx, r, w) // any goroutine: the socket keeps its namespace
			var sent int64
			require.NoError(t, cli.Do(func() (err error) {
				sent, err = Send(ctx, r.Addr(), bytes.NewReader(data))
				return err
			}))
			res := wait(t, done, 30*time.Second, "Receive")
			require.NoError(t, res.err)
			assert.Equal(t, int64(size), sent)
			assert.Equal(t, int64(size), res.st.Bytes)
			assert.Equal(t, sha256.Sum256(data), w.sum(), "sha256 of the received stream")
			assert.NotZero(t, res.st.NAPIID, "veth with GRO on delivers through its NAPI")

			srvDelta := countersIn(t, srv).Sub(srvBefore)
			cliDelta := countersIn(t, cli).Sub(cliBefore)
			// GRO merges at most 64 KiB into one segment: allow for half of that.
			assert.GreaterOrEqual(t, srvDelta.InSegs, uint64(size>>17), "server InSegs")
			assert.Positive(t, cliDelta.InSegs, "client InSegs (SYN-ACK, ACKs)")
			assert.Less(t, cliDelta.InSegs, srvDelta.InSegs, "the client receives only ACKs")
			assert.Equal(t, Counters{}, countersIn(t, idle), "an idle namespace sees none of it")
			if tt.params == (Params{}) {
				assert.Zero(t, srvDelta.BusyPollRxPackets, "no busy polling without busy-poll params")
			}
			t.Logf("%s: %d bytes in %v (%.0f MiB/s), %d epoll_wait, %d reads, NAPI id %d; server %+v (%.1f%% busy-polled), client %+v",
				tt.name, res.st.Bytes, res.st.Elapsed, res.st.MiBPerSec(), res.st.EpollWaits, res.st.Reads, res.st.NAPIID,
				srvDelta, 100*srvDelta.BusyPolledShare(), cliDelta)
		})
	}
}
