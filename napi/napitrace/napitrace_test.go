package napitrace_test

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll"
	"github.com/netdev-go/busypolltest/busypoll/link"
	"github.com/netdev-go/busypolltest/busypoll/namespace"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/netdev-go/busypolltest/busypoll/testnet"
	"github.com/netdev-go/busypolltest/napi"
	"github.com/netdev-go/busypolltest/napi/napitrace"
)

const sample = `# tracer: nop
#
# entries-in-buffer/entries-written: 4/4   #P:2
#
#                                _-----=> irqs-off/BH-disabled
#           TASK-PID     CPU#  |||||  TIMESTAMP  FUNCTION
#              | |         |   |||||     |         |
     napi/bpt-sv-8193-412     [001] .....   123.456789: napi_poll: napi poll on napi struct 00000000c0ffee00 for device bpt-sv work 16 budget 64
     napi/bpt-sv-8193-412     [001] .....   123.456799: napi_poll: napi poll on napi struct 00000000c0ffee00 for device bpt-sv work 3 budget 64
          <idle>-0       [000] ..s1.   123.456800: napi_poll: napi poll on napi struct 00000000c0ffee00 for device bpt-sv work 7 budget 64
 busypoll.test worker-4242 [000] ..... 123.5: napi_poll: napi poll on napi struct 00000000deadbeef for device bpt-sv work 8 budget 16
`

func TestParse(t *testing.T) {
	p, err := napitrace.Parse(strings.NewReader(sample))
	require.NoError(t, err)
	assert.Equal(t, 4, p.Events)
	assert.Equal(t, map[napitrace.Key]uint64{
		{NAPI: "00000000c0ffee00", TID: 412}:  19,
		{NAPI: "00000000c0ffee00", TID: -1}:   7,
		{NAPI: "00000000deadbeef", TID: 4242}: 8,
	}, p.Work)
	assert.Equal(t, []string{"00000000c0ffee00"}, p.NAPIsOf(412))
	assert.Equal(t, map[int]uint64{412: 19, napitrace.Softirq: 7}, p.ByTask("00000000c0ffee00"))
	assert.Equal(t, "softirq", p.Comm[napitrace.Softirq])
	assert.Equal(t, "napi/bpt-sv-8193", p.Comm[412])
	assert.Equal(t, "busypoll.test worker", p.Comm[4242])
	assert.Equal(t, uint64(34), p.Total())
	assert.Zero(t, p.Lost)
}

func TestParseLost(t *testing.T) {
	p, err := napitrace.Parse(strings.NewReader("# entries-in-buffer/entries-written: 10/25   #P:2\n"))
	require.NoError(t, err)
	assert.Equal(t, uint64(15), p.Lost)
}

func TestParseGarbage(t *testing.T) {
	_, err := napitrace.Parse(strings.NewReader("not a trace line\n"))
	assert.ErrorContains(t, err, `unexpected trace line "not a trace line"`)
}

// TestKernelThreadedNAPI traces a veth NAPI in threaded mode (Linux 6.17+
// napi-set threaded enabled): its kernel thread must have polled the
// packets, and nothing else.
func TestKernelThreadedNAPI(t *testing.T) {
	testenv.NeedRoot(t, "creates network namespaces, napi-set, tracefs")
	v := testnet.NewVeth(t, "trace", netip.MustParsePrefix("10.78.0.1/24"), netip.MustParsePrefix("10.78.0.2/24"))
	server, client, pair := v.Server, v.Client, v.Pair

	c, err := napi.Dial(server.FD())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	fs, err := c.Features()
	require.NoError(t, err)
	testenv.SkipIfNotSupported(t, fs.Missing(napi.FeatureThreaded))
	ns, err := c.NAPIs(uint32(pair.Server.Index))
	require.NoError(t, err)
	require.Len(t, ns, 1)
	id := ns[0].ID
	require.NoError(t, c.SetNAPI(id, napi.Settings{Threaded: new(napi.ThreadedEnabled)}))
	t.Cleanup(func() { _ = c.SetNAPI(id, napi.Settings{Threaded: new(napi.ThreadedDisabled)}) })
	n, err := c.NAPI(id)
	require.NoError(t, err)
	require.NotZero(t, n.PID, "threaded NAPI reports its thread")

	s, err := napitrace.Start(pair.Server.Name)
	if errors.Is(err, napitrace.ErrUnavailable) {
		t.Skip(err)
	}
	require.NoError(t, err)
	rx0, err := pair.Server.RxPackets()
	require.NoError(t, err)
	sendSome(t, server, client, pair)
	rx1, err := pair.Server.RxPackets()
	require.NoError(t, err)
	p, err := s.Stop()
	require.NoError(t, err)
	napis := p.NAPIsOf(int(n.PID))
	require.Len(t, napis, 1, "the thread polled one NAPI: %v", p.Work)
	work := p.ByTask(napis[0])
	t.Logf("thread %d polled %d of %d packets polled (%d rx packets, %d events, %d lost): %v", n.PID, work[int(n.PID)], p.Total(), rx1-rx0, p.Events, p.Lost, p.Comm)
	assert.Zero(t, p.Lost)
	assert.Equal(t, map[int]uint64{int(n.PID): work[int(n.PID)]}, work, "only the NAPI's thread polls a threaded NAPI")
	assert.GreaterOrEqual(t, work[int(n.PID)], (rx1-rx0)*9/10, "the thread polled the packets the device received")
}

func sendSome(t *testing.T, server, client *namespace.NetNS, pair link.VethPair) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rcv *busypoll.Receiver
	require.NoError(t, server.Do(func() error {
		var err error
		rcv, err = busypoll.Listen(busypoll.ReceiverConfig{Addr: netip.AddrPortFrom(pair.Server.Addr.Addr(), 0)})
		return err
	}))
	defer rcv.Close()
	done := make(chan error, 1)
	go func() {
		_, err := rcv.Receive(ctx, io.Discard)
		done <- err
	}()
	require.NoError(t, client.Do(func() error {
		_, err := busypoll.Send(ctx, rcv.Addr(), io.LimitReader(rand.NewChaCha8([32]byte{}), 1<<20))
		return err
	}))
	require.NoError(t, <-done)
}

// TestKernelSessionLeavesNothing starts a session and closes it, with and
// without Stop: no mount appears anywhere in the mount tree (where the
// host has no tracefs mounted, the session's own mount is attached to no
// path), no instance of this process is left, and Close after Stop is
// harmless.
func TestKernelSessionLeavesNothing(t *testing.T) {
	testenv.NeedRoot(t, "traces the kernel (tracefs)")
	before := testenv.MountPoints(t, "tracefs")
	for _, stop := range []bool{true, false} {
		s, err := napitrace.StartBusyPolls("bpt-none", 16)
		if errors.Is(err, napitrace.ErrUnavailable) {
			t.Skip(err)
		}
		require.NoError(t, err)
		assert.Equal(t, before, testenv.MountPoints(t, "tracefs"), "a session mounts nothing in the mount tree")
		names, err := napitrace.Instances(os.Getpid())
		require.NoError(t, err)
		assert.Len(t, names, 1, "the session's instance exists while it runs")
		if stop {
			p, err := s.Stop()
			require.NoError(t, err)
			assert.Zero(t, p.Events, "no device is named bpt-none")
		}
		require.NoError(t, s.Close())
		require.NoError(t, s.Close(), "Close is idempotent")
		names, err = napitrace.Instances(os.Getpid())
		require.NoError(t, err)
		assert.Empty(t, names, "stop=%v: closed sessions leave no instance", stop)
	}
	// CloseAll, the emergency cleanup's: every session still open.
	t.Cleanup(napitrace.Reopen)
	for range 2 {
		_, err := napitrace.StartBusyPolls("bpt-none", 16)
		require.NoError(t, err)
	}
	names, err := napitrace.Instances(os.Getpid())
	require.NoError(t, err)
	assert.Len(t, names, 2)
	require.NoError(t, napitrace.CloseAll())
	names, err = napitrace.Instances(os.Getpid())
	require.NoError(t, err)
	assert.Empty(t, names, "CloseAll leaves no instance")
	_, err = napitrace.StartBusyPolls("bpt-none", 16)
	assert.ErrorIs(t, err, napitrace.ErrClosed, "no session after CloseAll")
	assert.Equal(t, before, testenv.MountPoints(t, "tracefs"))
}
