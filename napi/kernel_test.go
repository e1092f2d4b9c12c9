package napi

import (
	"errors"
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/netdev-go/busypolltest/busypoll/testnet"
)

// The selftest's NAPI settings (busy_poll_test.sh).
var selftestSettings = Settings{
	DeferHardIRQs:     new(uint32(100)),
	GROFlushTimeout:   new(50 * time.Microsecond),
	IRQSuspendTimeout: new(20 * time.Millisecond),
}

// TestKernelNAPI configures the NAPI of a veth end on the running kernel:
// list, set, read back, restore, and cross-check the NAPI id.
func TestKernelNAPI(t *testing.T) {
	v, c, fs, n := newKernelNAPI(t)
	srv := v.Pair.Server
	ifindex := uint32(srv.Index)
	id := n.ID
	t.Logf("%s (ifindex %d): NAPI %d, present: %v", srv.Name, ifindex, id, n.Present)

	snap, err := c.Snapshot(id)
	require.NoError(t, err)
	require.Equal(t, AttrDeferHardIRQs|AttrGROFlushTimeout|AttrIRQSuspendTimeout, snap.Attrs()&^AttrThreaded,
		"napi-get reports the settings napi-set takes")
	t.Cleanup(func() {
		if err := c.Restore(id, snap); err != nil {
			t.Errorf("restore NAPI %d to %v: %v", id, snap, err)
		}
	})

	t.Run("lists", func(t *testing.T) {
		one, err := c.NAPI(id)
		require.NoError(t, err)
		assert.Equal(t, n, one, "napi-get do and dump agree")

		all, err := c.NAPIs(0)
		require.NoError(t, err)
		assert.Equal(t, []NAPI{n}, all, "the namespace holds one NAPI: the server end's")

		cl := dialIn(t, v.Client)
		clientNAPIs, err := cl.NAPIs(uint32(v.Pair.Client.Index))
		require.NoError(t, err)
		assert.Empty(t, clientNAPIs, "%s has GRO off, so no NAPI", v.Pair.Client.Name)
	})

	t.Run("set and read back", func(t *testing.T) {
		t.Cleanup(func() { require.NoError(t, c.Restore(id, snap)) })
		want := selftestSettings
		require.NoError(t, c.SetNAPI(id, want))
		t.Logf("set NAPI %d: %v", id, want)

		got, err := c.NAPI(id)
		require.NoError(t, err)
		t.Logf("read back NAPI %d: defer-hard-irqs=%d gro-flush-timeout=%v irq-suspend-timeout=%v threaded=%v",
			id, got.DeferHardIRQs, got.GROFlushTimeout, got.IRQSuspendTimeout, got.Threaded)
		assert.Equal(t, uint32(100), got.DeferHardIRQs)
		assert.Equal(t, 50*time.Microsecond, got.GROFlushTimeout)
		assert.Equal(t, 20*time.Millisecond, got.IRQSuspendTimeout)
		assert.Equal(t, snap.Threaded, got.Settings().Threaded, "threaded untouched")

		dump, err := c.NAPIs(ifindex)
		require.NoError(t, err)
		assert.Equal(t, []NAPI{got}, dump, "the dump reads back the same")

		// Only the fields given are sent: the others keep their values.
		require.NoError(t, c.SetNAPI(id, Settings{IRQSuspendTimeout: new(time.Duration(0))}))
		got, err = c.NAPI(id)
		require.NoError(t, err)
		t.Logf("set irq-suspend-timeout=0 only, read back: defer-hard-irqs=%d gro-flush-timeout=%v irq-suspend-timeout=%v",
			got.DeferHardIRQs, got.GROFlushTimeout, got.IRQSuspendTimeout)
		assert.Equal(t, uint32(100), got.DeferHardIRQs)
		assert.Equal(t, 50*time.Microsecond, got.GROFlushTimeout)
		assert.Equal(t, time.Duration(0), got.IRQSuspendTimeout)

		// Beyond 2^32-1 ns the kernel takes and gives 8 bytes. With
		// defer-hard-irqs 0: a packet arriving meanwhile (IPv6 neighbour
		// discovery on the new link) would otherwise leave the NAPI's
		// interrupt masked behind a 5 s GRO flush timer
		// (napi_complete_done returns false and arms n->timer), and no
		// later napi-set cancels that timer: "incoming napi id" then
		// waited up to 5 s (seen: 4.98 s in the VM) for its first datagram.
		require.NoError(t, c.SetNAPI(id, Settings{DeferHardIRQs: new(uint32(0))}))
		big := 5*time.Second + time.Nanosecond
		require.NoError(t, c.SetNAPI(id, Settings{GROFlushTimeout: &big, IRQSuspendTimeout: &big}))
		got, err = c.NAPI(id)
		require.NoError(t, err)
		assert.Equal(t, big, got.GROFlushTimeout)
		assert.Equal(t, big, got.IRQSuspendTimeout)

		// The largest defer-hard-irqs, with the timeouts back at 0 first
		// (for the same reason).
		zero := time.Duration(0)
		require.NoError(t, c.SetNAPI(id, Settings{GROFlushTimeout: &zero, IRQSuspendTimeout: &zero}))
		require.NoError(t, c.SetNAPI(id, Settings{DeferHardIRQs: new(uint32(MaxDeferHardIRQs))}))
		got, err = c.NAPI(id)
		require.NoError(t, err)
		assert.Equal(t, uint32(MaxDeferHardIRQs), got.DeferHardIRQs)
	})

	t.Run("restore", func(t *testing.T) {
		require.NoError(t, c.SetNAPI(id, selftestSettings))
		require.NoError(t, c.Restore(id, snap))
		got, err := c.Snapshot(id)
		require.NoError(t, err)
		t.Logf("restored NAPI %d: %v", id, got)
		assert.Equal(t, snap, got)
	})

	t.Run("queues", func(t *testing.T) {
		qs, err := c.Queues(ifindex)
		require.NoError(t, err)
		t.Logf("queues of %s: %+v", srv.Name, qs)
		var rx, tx int
		for _, q := range qs {
			assert.Equal(t, ifindex, q.IfIndex)
			assert.Zero(t, q.ID, "one queue of each type")
			switch q.Type {
			case QueueRX:
				rx++
			case QueueTX:
				tx++
			}
			if q.NAPIID != 0 {
				assert.Equal(t, id, q.NAPIID, "queue-get names a NAPI that napi-get lists")
			}
		}
		assert.Equal(t, 1, rx, "rx queues")
		assert.Equal(t, 1, tx, "tx queues")
	})

	t.Run("queue napi-id", func(t *testing.T) {
		qs, err := c.Queues(ifindex)
		require.NoError(t, err)
		for _, q := range qs {
			if q.Type == QueueRX && q.NAPIID != 0 {
				assert.Equal(t, id, q.NAPIID)
				return
			}
		}
		t.Skipf("queue-get reports no napi-id for the rx queue of %s: veth does not link its queues to its NAPIs (drivers/net/veth.c never calls netif_queue_set_napi); the id is cross-checked by \"incoming napi id\"", srv.Name)
	})

	t.Run("incoming napi id", func(t *testing.T) {
		got := receiveNAPIID(t, v)
		t.Logf("SO_INCOMING_NAPI_ID of a UDP socket fed through %s: %d", srv.Name, got)
		assert.Equal(t, id, got, "napi-get's id is the NAPI that received the traffic")
	})

	t.Run("threaded", func(t *testing.T) {
		testenv.SkipIfNotSupported(t, fs.Missing(FeatureThreaded))
		t.Cleanup(func() { require.NoError(t, c.Restore(id, snap)) })
		require.NoError(t, c.SetNAPI(id, Settings{Threaded: new(ThreadedEnabled)}))
		got, err := c.NAPI(id)
		require.NoError(t, err)
		assert.Equal(t, ThreadedEnabled, got.Threaded)
		require.True(t, got.Has(AttrPID), "a threaded NAPI reports its thread; present: %v", got.Present)
		pids := napiThreadPIDs(t, srv.Name, id)
		t.Logf("threaded NAPI %d: pid %d; /proc has %v named for it", id, got.PID, pids)
		assert.Contains(t, pids, got.PID, "the pid is the NAPI's kernel thread")

		require.NoError(t, c.SetNAPI(id, Settings{Threaded: new(ThreadedDisabled)}))
		got, err = c.NAPI(id)
		require.NoError(t, err)
		assert.Equal(t, ThreadedDisabled, got.Threaded)
		assert.False(t, got.Has(AttrPID), "not threaded: no pid (got pid %d)", got.PID)
	})

	t.Run("threaded busy-poll", func(t *testing.T) {
		testenv.SkipIfNotSupported(t, fs.Missing(FeatureThreaded))
		t.Cleanup(func() { require.NoError(t, c.Restore(id, snap)) })
		err := c.SetNAPI(id, Settings{Threaded: new(ThreadedBusyPoll)})
		if fs.Has(FeatureThreadedBusyPoll) {
			require.NoError(t, err)
			got, err := c.NAPI(id)
			require.NoError(t, err)
			assert.Equal(t, ThreadedBusyPoll, got.Threaded)
			assert.True(t, got.Has(AttrPID))
			return
		}
		// The policy says the kernel has no busy-poll: it must refuse it.
		var e *Error
		require.ErrorAs(t, err, &e, "the kernel accepted threaded busy-poll although its policy max is %v", fs.MaxThreaded)
		t.Logf("kernel without busy-poll refuses it: %v", err)
		assert.Equal(t, "threaded", e.Attr)
		assert.NotEmpty(t, e.Message)
		assert.ErrorIs(t, err, unix.ERANGE)
		got, err := c.NAPI(id)
		require.NoError(t, err)
		assert.Equal(t, snap, got.Settings(), "a refused napi-set changes nothing")
	})

	t.Run("errors", func(t *testing.T) {
		// NAPI ids start above NR_CPUS: 1 is never one.
		_, err := c.NAPI(1)
		assert.ErrorIs(t, err, os.ErrNotExist)
		err = c.SetNAPI(1, Settings{DeferHardIRQs: new(uint32(0))})
		assert.ErrorIs(t, err, os.ErrNotExist)
		assert.EqualError(t, err, "napi: napi-set id 1: attribute id: no such file or directory")

		const noIfIndex = 1 << 30
		_, err = c.NAPIs(noIfIndex)
		assert.ErrorIs(t, err, os.ErrNotExist)
		assert.EqualError(t, err, fmt.Sprintf("napi: napi-get dump ifindex %d: no such device", noIfIndex))
		_, err = c.Queues(noIfIndex)
		assert.ErrorIs(t, err, os.ErrNotExist)

		// NAPI ids are scoped to the namespace (Linux 6.13, as napi-set).
		other := dialIn(t, v.Client)
		_, err = other.NAPI(id)
		assert.ErrorIs(t, err, os.ErrNotExist, "NAPI %d seen from %s", id, v.Client)
	})
}

// receiveNAPIID sends UDP datagrams from the client end to the server end
// and returns the SO_INCOMING_NAPI_ID of the receiving socket.
func receiveNAPIID(t *testing.T, v testnet.Veth) uint32 {
	t.Helper()
	var rc *net.UDPConn
	require.NoError(t, v.Server.Do(func() error {
		var err error
		rc, err = net.ListenUDP("udp4", &net.UDPAddr{IP: v.Pair.Server.Addr.Addr().AsSlice()})
		return err
	}))
	t.Cleanup(func() { _ = rc.Close() })
	var sc *net.UDPConn
	require.NoError(t, v.Client.Do(func() error {
		var err error
		sc, err = net.DialUDP("udp4", nil, rc.LocalAddr().(*net.UDPAddr))
		return err
	}))
	t.Cleanup(func() { _ = sc.Close() })

	// The first datagrams may wait for ARP: send until one arrives.
	buf := make([]byte, 64)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := sc.Write([]byte("napi"))
		require.NoError(t, err)
		require.NoError(t, rc.SetReadDeadline(time.Now().Add(100*time.Millisecond)))
		if _, _, err = rc.ReadFromUDP(buf); err == nil {
			break
		}
		var ne net.Error
		require.True(t, errors.As(err, &ne) && ne.Timeout(), "read: %v", err)
		require.True(t, time.Now().Before(deadline), "no datagram arrived through the veth pair in 5 s")
	}

	raw, err := rc.SyscallConn()
	require.NoError(t, err)
	var id int
	var serr error
	require.NoError(t, raw.Control(func(fd uintptr) {
		id, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_INCOMING_NAPI_ID)
	}))
	require.NoError(t, serr, "getsockopt(SO_INCOMING_NAPI_ID)")
	return uint32(id)
}

// TestKernelLinkFlap takes the server end down and up: the NAPI disappears
// while the link is down and a NAPI is back after. It logs whether the id
// and the settings survive, which the callers' link-flap scenario relies on.
func TestKernelLinkFlap(t *testing.T) {
	v, c, _, n := newKernelNAPI(t)
	srv := v.Pair.Server
	ifindex := uint32(srv.Index)
	require.NoError(t, c.SetNAPI(n.ID, selftestSettings))
	before, err := c.NAPI(n.ID)
	require.NoError(t, err)

	require.NoError(t, srv.SetUp(false))
	ns, err := c.NAPIs(ifindex)
	require.NoError(t, err)
	assert.Empty(t, ns, "a link that is down has no NAPI")
	_, err = c.NAPI(before.ID)
	assert.ErrorIs(t, err, os.ErrNotExist, "NAPI %d while %s is down", before.ID, srv.Name)

	require.NoError(t, srv.SetUp(true))
	ns, err = c.NAPIs(ifindex)
	require.NoError(t, err)
	require.Len(t, ns, 1, "the NAPI is back with the link")
	after := ns[0]
	t.Logf("NAPI before down/up: id %d %v; after: id %d %v", before.ID, before.Settings(), after.ID, after.Settings())
	if after.ID == before.ID {
		t.Logf("the NAPI id survived the link flap")
	} else {
		t.Logf("the link flap gave a new NAPI id: configure the NAPI again")
	}
	if !after.Settings().Equal(before.Settings()) {
		t.Logf("the link flap changed the settings: configure the NAPI again")
	}
}

// TestKernelUnprivileged reads from the running kernel as a normal user and
// checks that napi-set is refused with an error matching os.ErrPermission.
func TestKernelUnprivileged(t *testing.T) {
	testenv.NeedNonRoot(t, "checks that napi-set without CAP_NET_ADMIN fails with EPERM (as root, TestKernelNAPI runs)")
	c := dialCurrent(t)
	defer c.Close()

	fs, err := c.Features()
	require.NoError(t, err, "the policy dump needs no privileges")
	t.Logf("kernel %s: %v", testenv.KernelRelease(t), fs)
	testenv.SkipIfNotSupported(t, fs.Missing(FeatureNAPISet))
	ns, err := c.NAPIs(0)
	require.NoError(t, err, "napi-get needs no privileges")
	t.Logf("NAPIs in this namespace: %d", len(ns))

	// The permission check comes before the id lookup.
	err = c.SetNAPI(1, Settings{DeferHardIRQs: new(uint32(0))})
	require.EqualError(t, err, "napi: napi-set id 1: operation not permitted")
	assert.ErrorIs(t, err, os.ErrPermission)
}

func TestDialBadNamespace(t *testing.T) {
	f, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer f.Close()
	// setns(2) refuses a descriptor that is not a network namespace
	// (EINVAL), or the whole call without CAP_SYS_ADMIN (EPERM).
	_, err = Dial(int(f.Fd()))
	require.Error(t, err)
	assert.ErrorContains(t, err, fmt.Sprintf("napi: open generic netlink socket in network namespace fd %d: ", f.Fd()))
}
