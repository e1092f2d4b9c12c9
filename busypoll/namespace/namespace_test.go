package namespace

import (
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// newTestNetNS creates a namespace that is released when the test ends.
func newTestNetNS(t *testing.T, label string) *NetNS {
	t.Helper()
	ns, err := New(label)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, ns.Close()) })
	return ns
}

// nsInode returns the inode of a namespace file.
func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Stat(path, &st))
	return st.Ino
}

func fdInode(t *testing.T, fd int) uint64 {
	t.Helper()
	var st unix.Stat_t
	require.NoError(t, unix.Fstat(fd, &st))
	return st.Ino
}

func TestNetNSDoSwitchesAndReturns(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns := newTestNetNS(t, "switch")
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := nsInode(t, threadNetNSPath)
	want := fdInode(t, ns.FD())
	require.NotEqual(t, before, want, "a new namespace must differ from the test's")

	for i := 0; i < 50; i++ {
		var inside uint64
		require.NoError(t, ns.Do(func() error {
			inside = nsInode(t, threadNetNSPath)
			return nil
		}))
		require.Equal(t, want, inside, "Do must run f inside the namespace")
	}
	assert.Equal(t, before, nsInode(t, threadNetNSPath), "the caller's thread must not move")

	// Threads that ran Do went back to the pool: every thread the runtime
	// hands out now must be in the original namespace.
	assertPoolThreadsIn(t, before)
}

// assertPoolThreadsIn checks that the threads the runtime hands out to 32
// goroutines at once are all in the network namespace with inode want.
func assertPoolThreadsIn(t *testing.T, want uint64) {
	t.Helper()
	var wg sync.WaitGroup
	got := make([]uint64, 32)
	for i := range got {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var st unix.Stat_t
			if unix.Stat(threadNetNSPath, &st) == nil {
				got[i] = st.Ino
			}
		})
	}
	wg.Wait()
	for i, ino := range got {
		assert.Equal(t, want, ino, "thread %d is in a foreign namespace", i)
	}
}

func TestNetNSDoPanicIsReraised(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns := newTestNetNS(t, "panic")
	assert.PanicsWithValue(t, "boom", func() {
		_ = ns.Do(func() error { panic("boom") })
	})
	assert.NoError(t, ns.Do(func() error { return nil }), "the namespace stays usable")
}

// TestNetNSDoGoexitIsAnError: an f that ends its goroutine (as a failed
// require does inside Do) must not look like success, and its thread, left
// in the namespace, must not come back to the pool.
func TestNetNSDoGoexitIsAnError(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns := newTestNetNS(t, "goexit")
	runtime.LockOSThread()
	before := nsInode(t, threadNetNSPath)
	runtime.UnlockOSThread()
	for range 20 {
		ran := false
		err := ns.Do(func() error {
			ran = true
			runtime.Goexit()
			return nil
		})
		require.True(t, ran)
		require.ErrorIs(t, err, ErrGoexit)
		assert.ErrorContains(t, err, "netns: namespace goexit-")
		assert.ErrorContains(t, err, "called runtime.Goexit")
	}
	assert.NoError(t, ns.Do(func() error { return nil }), "the namespace stays usable")
	// No thread of the pool was left inside the namespace.
	assertPoolThreadsIn(t, before)
}

func TestNetNSDoErrorOfNestedGoexitIsNotRewrapped(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns := newTestNetNS(t, "goexit-nested")
	err := ns.Do(func() error {
		return ns.Do(func() error { runtime.Goexit(); return nil })
	})
	require.ErrorIs(t, err, ErrGoexit)
	assert.Equal(t, 1, strings.Count(err.Error(), "netns: namespace"), "%v", err)
}

func TestNetNSDoReturnsError(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns := newTestNetNS(t, "err")
	err := ns.Do(func() error { return os.ErrDeadlineExceeded })
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
}

func TestNetNSClose(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns, err := New("close")
	require.NoError(t, err)
	assert.Contains(t, ns.String(), "close-")
	require.NoError(t, ns.Close())
	assert.NoError(t, ns.Close(), "Close is idempotent")
	assert.Equal(t, -1, ns.FD())
	assert.ErrorIs(t, ns.Do(func() error { return nil }), ErrClosed)
}

func TestNetNSLabelsAreUnique(t *testing.T) {
	testenv.NeedRootNetNS(t)
	a := newTestNetNS(t, "same")
	b := newTestNetNS(t, "same")
	assert.NotEqual(t, a.String(), b.String())
	assert.NotEqual(t, fdInode(t, a.FD()), fdInode(t, b.FD()))
}

func TestNetlinkAfterClose(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns, err := New("netlink-close")
	require.NoError(t, err)
	require.NoError(t, ns.Netlink(func(h *netlink.Handle) error {
		_, err := h.LinkByName("lo")
		return err
	}))
	require.NoError(t, ns.Close())
	called := false
	err = ns.Netlink(func(*netlink.Handle) error { called = true; return nil })
	assert.ErrorIs(t, err, ErrClosed)
	assert.False(t, called, "f must not run with a closed handle")
}

// TestNetlinkShowsKernelMessage: a request the kernel refuses carries the
// kernel's own extended error message (extack) in the error: a veth with
// more rx queues than the kernel allows (4096) is refused by rtnetlink with
// "Invalid number of receive queues".
func TestNetlinkShowsKernelMessage(t *testing.T) {
	testenv.NeedRootNetNS(t)
	ns := newTestNetNS(t, "extack")
	err := ns.Netlink(func(h *netlink.Handle) error {
		return h.LinkAdd(&netlink.Veth{
			LinkAttrs: netlink.LinkAttrs{Name: "bpt-extack0", NumRxQueues: 5000},
			PeerName:  "bpt-extack1",
		})
	})
	require.Error(t, err)
	t.Logf("kernel's refusal: %v", err)
	assert.ErrorIs(t, err, unix.EINVAL)
	assert.ErrorContains(t, err, "Invalid number of receive queues")
}

// TestNetlinkShowsKernelMessageConcurrently: namespaces created at the same
// time (their handles' sockets opened concurrently, reusing each other's
// descriptor numbers) all get the kernel's messages.
func TestNetlinkShowsKernelMessageConcurrently(t *testing.T) {
	testenv.NeedRootNetNS(t)
	var wg sync.WaitGroup
	errs := make([]error, 16)
	for i := range errs {
		wg.Go(func() {
			for range 10 {
				ns, err := New("extack-many")
				if err != nil {
					errs[i] = err
					return
				}
				err = ns.Netlink(func(h *netlink.Handle) error {
					return h.LinkAdd(&netlink.Veth{
						LinkAttrs: netlink.LinkAttrs{Name: "bpt-extack0", NumRxQueues: 5000},
						PeerName:  "bpt-extack1",
					})
				})
				ns.Close()
				errs[i] = err
				if err == nil || !strings.Contains(err.Error(), "Invalid number of receive queues") {
					return
				}
			}
		})
	}
	wg.Wait()
	for i, err := range errs {
		assert.ErrorContains(t, err, "Invalid number of receive queues", "goroutine %d", i)
	}
}
