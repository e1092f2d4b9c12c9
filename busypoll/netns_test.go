package busypoll

import (
	"errors"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// needRootNetNS skips a test that creates namespaces unless it may.
func needRootNetNS(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped with -short: creates network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN) to create network namespaces")
	}
}

// skipIfNoVeth skips when NewVethPair failed because the kernel has no veth.
func skipIfNoVeth(t *testing.T, err error) {
	t.Helper()
	if errors.Is(err, ErrNoVeth) {
		t.Skipf("%v", err)
	}
}

// newTestNetNS creates a namespace that is released when the test ends.
func newTestNetNS(t *testing.T, label string) *NetNS {
	t.Helper()
	ns, err := NewNetNS(label)
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
	needRootNetNS(t)
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
	var wg sync.WaitGroup
	got := make([]uint64, 32)
	for i := range got {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			var st unix.Stat_t
			if unix.Stat(threadNetNSPath, &st) == nil {
				got[i] = st.Ino
			}
		}()
	}
	wg.Wait()
	for i, ino := range got {
		assert.Equal(t, before, ino, "thread %d is in a foreign namespace", i)
	}
}

func TestNetNSDoPanicIsReraised(t *testing.T) {
	needRootNetNS(t)
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
	needRootNetNS(t)
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
		assert.ErrorContains(t, err, "busypoll: namespace goexit-")
		assert.ErrorContains(t, err, "called runtime.Goexit")
	}
	assert.NoError(t, ns.Do(func() error { return nil }), "the namespace stays usable")
	// No thread of the pool was left inside the namespace.
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
		assert.Equal(t, before, ino, "thread %d is in a foreign namespace", i)
	}
}

func TestNetNSDoErrorOfNestedGoexitIsNotRewrapped(t *testing.T) {
	needRootNetNS(t)
	ns := newTestNetNS(t, "goexit-nested")
	err := ns.Do(func() error {
		return ns.Do(func() error { runtime.Goexit(); return nil })
	})
	require.ErrorIs(t, err, ErrGoexit)
	assert.Equal(t, 1, strings.Count(err.Error(), "busypoll: namespace"), "%v", err)
}

func TestNetNSDoReturnsError(t *testing.T) {
	needRootNetNS(t)
	ns := newTestNetNS(t, "err")
	err := ns.Do(func() error { return os.ErrDeadlineExceeded })
	assert.ErrorIs(t, err, os.ErrDeadlineExceeded)
}

func TestNetNSClose(t *testing.T) {
	needRootNetNS(t)
	ns, err := NewNetNS("close")
	require.NoError(t, err)
	assert.Contains(t, ns.String(), "close-")
	require.NoError(t, ns.Close())
	assert.NoError(t, ns.Close(), "Close is idempotent")
	assert.Equal(t, -1, ns.FD())
	assert.ErrorIs(t, ns.Do(func() error { return nil }), ErrNetNSClosed)
}

func TestNetNSLabelsAreUnique(t *testing.T) {
	needRootNetNS(t)
	a := newTestNetNS(t, "same")
	b := newTestNetNS(t, "same")
	assert.NotEqual(t, a.String(), b.String())
	assert.NotEqual(t, fdInode(t, a.FD()), fdInode(t, b.FD()))
}

func TestNewVethPair(t *testing.T) {
	needRootNetNS(t)
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
	needRootNetNS(t)
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
