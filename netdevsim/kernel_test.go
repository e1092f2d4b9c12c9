package netdevsim_test

// Tests against the running kernel's netdevsim. They need root and a kernel
// with netdevsim (built in, or a module that can be loaded); otherwise they
// skip and say which is missing. They run in namespaces they create.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/netdev-go/busypolltest/busypoll/namespace"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/netdev-go/busypolltest/busypoll/testnet"
	"github.com/netdev-go/busypolltest/netdevsim"
)

// requireNetdevsim skips unless the kernel tests can run here.
func requireNetdevsim(t *testing.T) *netdevsim.Bus {
	t.Helper()
	testenv.NeedRoot(t, "creates netdevsim devices in the running kernel (writes to /sys/bus/netdevsim) and network namespaces")
	if err := netdevsim.Available(); err != nil {
		if errors.Is(err, netdevsim.ErrUnavailable) {
			t.Skip(err)
		}
		t.Fatal(err)
	}
	bus := netdevsim.Default()
	reap(t, bus)
	return bus
}

// reap deletes what killed runs left behind (ReapOrphans) and logs it.
func reap(t *testing.T, bus *netdevsim.Bus) {
	t.Helper()
	orphans, err := bus.ReapOrphans()
	for _, o := range orphans {
		t.Log(o)
	}
	require.NoError(t, err, "reap the devices of killed runs")
}

// newNS creates a namespace closed at cleanup.
// linkByIndex looks a link up through the rtnetlink handle of ns.
func linkByIndex(ns *namespace.NetNS, ifindex int) (l netlink.Link, err error) {
	err = ns.Netlink(func(h *netlink.Handle) error {
		l, err = h.LinkByIndex(ifindex)
		return err
	})
	return l, err
}

// newDevice creates a device deleted at cleanup (before its namespace is
// closed: cleanups run last-in first-out), and checks it is really gone.
func newDevice(t *testing.T, bus *netdevsim.Bus, ns netdevsim.Namespace, ports, queues int) *netdevsim.Device {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	d, err := bus.NewDevice(ctx, ns, ports, queues)
	require.NoError(t, err)
	t.Cleanup(func() {
		assert.NoError(t, d.Delete())
		assert.False(t, onBus(t, bus, d.ID), "device %d left on the bus", d.ID)
	})
	return d
}

// onBus reports whether device id is on the bus. Its entry under devices/
// is a symlink, so testify's DirExists (which uses Lstat) would not do.
func onBus(t *testing.T, bus *netdevsim.Bus, id int) bool {
	t.Helper()
	_, err := os.Stat(bus.DevicePath(id))
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	require.NoError(t, err)
	return true
}

// waitLowerUp polls until the link's IFF_LOWER_UP equals want, or fails.
func waitLowerUp(t *testing.T, ns *namespace.NetNS, ifindex int, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		l, err := linkByIndex(ns, ifindex)
		require.NoError(t, err)
		up := l.Attrs().RawFlags&unix.IFF_LOWER_UP != 0
		if up == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("link %s (ifindex %d): IFF_LOWER_UP is %t after 10s, want %t (flags %v, operstate %v)",
				l.Attrs().Name, ifindex, up, want, l.Attrs().Flags, l.Attrs().OperState)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNetdevsimKernelLifecycle(t *testing.T) {
	bus := requireNetdevsim(t)
	nsA := testnet.NetNS(t, "nsim-a")
	nsB := testnet.NetNS(t, "nsim-b")

	a := newDevice(t, bus, nsA, 1, 1)
	b := newDevice(t, bus, nsB, 2, 3)
	require.Len(t, a.Ports, 1)
	require.Len(t, b.Ports, 2)
	assert.NotEqual(t, a.ID, b.ID)
	assert.True(t, onBus(t, bus, a.ID), "device %d on the bus", a.ID)
	assert.True(t, onBus(t, bus, b.ID), "device %d on the bus", b.ID)

	// The netdevs were born in the namespaces of the writing threads, with
	// the queue counts asked for, and nowhere else.
	for _, c := range []struct {
		d      *netdevsim.Device
		ns     *namespace.NetNS
		queues int
	}{{a, nsA, 1}, {b, nsB, 3}} {
		for _, p := range c.d.Ports {
			l, err := linkByIndex(c.ns, p.IfIndex)
			require.NoError(t, err)
			assert.Equal(t, p.Name, l.Attrs().Name)
			assert.Equal(t, fmt.Sprintf("netdevsim%d", c.d.ID), l.Attrs().ParentDev)
			assert.Equal(t, "netdevsim", l.Attrs().ParentDevBus)
			assert.Equal(t, c.queues, l.Attrs().NumRxQueues,
				"rx queues of %s (0: the kernel sends no IFLA_NUM_RX_QUEUES, which rtnetlink reports only with CONFIG_RPS)", l.Attrs().Name)
		}
	}
	host, err := netlink.LinkList()
	require.NoError(t, err)
	for _, l := range host {
		assert.NotContains(t, []string{fmt.Sprintf("netdevsim%d", a.ID), fmt.Sprintf("netdevsim%d", b.ID)},
			l.Attrs().ParentDev, "netdev %s of our device in the test's own namespace", l.Attrs().Name)
	}

	// Up first: whether linking alone raises carrier differs between kernels.
	la, err := linkByIndex(nsA, a.Ports[0].IfIndex)
	require.NoError(t, err)
	require.NoError(t, nsA.Netlink(func(h *netlink.Handle) error { return h.LinkSetUp(la) }))
	lb, err := linkByIndex(nsB, b.Ports[1].IfIndex)
	require.NoError(t, err)
	require.NoError(t, nsB.Netlink(func(h *netlink.Handle) error { return h.LinkSetUp(lb) }))

	ea, eb := a.Endpoint(0), b.Endpoint(1)
	require.NoError(t, bus.Link(ea, eb))
	waitLowerUp(t, nsA, ea.IfIndex, true)
	waitLowerUp(t, nsB, eb.IfIndex, true)

	err = bus.Link(ea, b.Endpoint(0))
	assert.ErrorIs(t, err, unix.EBUSY, "linking a linked port")
	assert.ErrorContains(t, err, "already linked")

	err = bus.Link(b.Endpoint(0), netdevsim.Endpoint{NS: nsA, IfIndex: 1}) // loopback
	assert.ErrorIs(t, err, unix.EINVAL, "linking to a device that is not a netdevsim")

	require.NoError(t, bus.Unlink(ea))
	err = bus.Unlink(ea)
	assert.ErrorIs(t, err, unix.EINVAL, "unlinking a port that is not linked")
	l, err := linkByIndex(nsA, ea.IfIndex)
	require.NoError(t, err)
	t.Logf("after unlink: %s flags %v (carrier after unlink differs between kernels)", l.Attrs().Name, l.Attrs().Flags)

	require.NoError(t, a.Delete())
	require.NoError(t, a.Delete(), "second Delete")
	assert.False(t, onBus(t, bus, a.ID), "device %d still on the bus after Delete", a.ID)
	_, err = linkByIndex(nsA, ea.IfIndex)
	assert.Error(t, err, "netdev of a deleted device still in its namespace")
}

func TestNetdevsimKernelErrnos(t *testing.T) {
	bus := requireNetdevsim(t)
	nsA := testnet.NetNS(t, "nsim-errno")
	a := newDevice(t, bus, nsA, 1, 1)

	// A second bus whose first pick is taken must move on to a free id.
	other := netdevsim.NewBus(netdevsim.DefaultRoot)
	picks := []int{a.ID, a.ID}
	other.SetRandID(func() int {
		if len(picks) > 0 {
			id := picks[0]
			picks = picks[1:]
			return id
		}
		return netdevsim.MinRandomID + int(time.Now().UnixNano()%(1<<30))
	})
	b := newDevice(t, other, nsA, 1, 1)
	assert.NotEqual(t, a.ID, b.ID)
	assert.Empty(t, picks, "both taken picks were tried")

	tests := []struct {
		file, data string
		errno      unix.Errno
	}{
		{"new_device", fmt.Sprintf("%d 1 1", a.ID), unix.ENOSPC},
		{"new_device", "not-a-number", unix.EINVAL},
		{"new_device", "2147483648", unix.EINVAL},
		{"del_device", fmt.Sprintf("%d", netdevsim.MaxID), unix.ENOENT},
		{"link_device", "1:1", unix.EINVAL},
		{"link_device", fmt.Sprintf("%d:%d %d:%d", nsA.FD(), a.Ports[0].IfIndex, nsA.FD(), a.Ports[0].IfIndex), unix.EINVAL},
		{"unlink_device", fmt.Sprintf("%d:%d", nsA.FD(), a.Ports[0].IfIndex), unix.EINVAL},
	}
	for _, tt := range tests {
		t.Run(tt.file+" "+tt.data, func(t *testing.T) {
			err := bus.WriteBusFile(tt.file, tt.data)
			assert.ErrorIs(t, err, tt.errno)
			t.Log(err)
		})
	}
}

// TestNetdevsimKernelReapsOrphans creates a device as a process that cannot
// be running (a pid above the kernel's PID_MAX_LIMIT), as if that process
// had been killed with SIGKILL holding it, and checks that ReapOrphans
// deletes it from the real bus, and nothing else.
func TestNetdevsimKernelReapsOrphans(t *testing.T) {
	bus := requireNetdevsim(t)
	ns := testnet.NetNS(t, "nsim-orphan")
	mine := newDevice(t, bus, ns, 1, 1)

	killed := netdevsim.NewBus(netdevsim.DefaultRoot)
	killed.SetOwner(1<<22+1, 12345)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	orphan, err := killed.NewDevice(ctx, ns, 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { _ = bus.DeleteDevice(orphan.ID) }) // only if the reaper failed
	require.True(t, onBus(t, bus, orphan.ID))

	// Made by hand: an id no record lists.
	hand := netdevsim.MinRandomID - 1 - int(time.Now().UnixNano()%1000)
	require.NoError(t, ns.Do(func() error { return bus.WriteBusFile("new_device", fmt.Sprintf("%d 1 1", hand)) }))
	t.Cleanup(func() { assert.NoError(t, bus.DeleteDevice(hand)) })

	orphans, err := bus.ReapOrphans()
	require.NoError(t, err)
	var deleted []int
	for _, o := range orphans {
		t.Log(o)
		deleted = append(deleted, o.Deleted...)
	}
	assert.Equal(t, []int{orphan.ID}, deleted)
	assert.False(t, onBus(t, bus, orphan.ID), "the dead owner's device is deleted")
	assert.True(t, onBus(t, bus, mine.ID), "this process's own device is left alone")
	assert.True(t, onBus(t, bus, hand), "a device made by hand is left alone")
	assert.NoError(t, orphan.Delete(), "deleting it again is harmless")
}
