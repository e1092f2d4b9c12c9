package netdevsim_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/netdev-go/busypolltest/busypoll/testnet"
	"github.com/netdev-go/busypolltest/netdevsim"
)

// TestNetdevsimNamespacePlumbing needs root but not netdevsim: against a fake bus
// directory it checks that new_device is written from a thread inside the
// target namespace, that the netdevs are looked for there with rtnetlink,
// and that del_device is written from the caller's namespace.
func TestNetdevsimNamespacePlumbing(t *testing.T) {
	testenv.NeedRootNetNS(t)
	root := t.TempDir()
	for _, f := range []string{"new_device", "del_device", "link_device", "unlink_device"} {
		require.NoError(t, os.WriteFile(filepath.Join(root, f), nil, 0o600))
	}
	ns := testnet.NetNS(t, "nsim-plumbing")
	inNS, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", ns.FD()))
	require.NoError(t, err)
	here, err := os.Readlink("/proc/thread-self/ns/net")
	require.NoError(t, err)
	require.NotEqual(t, here, inNS)

	var (
		mu      sync.Mutex
		threads = map[string]string{}
	)
	bus := netdevsim.NewBus(root)
	bus.SetRecordDir(t.TempDir())
	bus.SetRandID(func() int { return 1234567 })
	bus.SetFileWriter(func(path, data string) (string, error) {
		l, err := os.Readlink("/proc/thread-self/ns/net")
		if err != nil {
			return "write", err
		}
		mu.Lock()
		threads[filepath.Base(path)] = l
		mu.Unlock()
		return "write", nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err = bus.NewDevice(ctx, ns, 1, 1)
	require.Error(t, err, "no kernel behind the fake bus: no netdevs can appear")
	assert.True(t, errors.Is(err, context.DeadlineExceeded), "%v", err)
	assert.ErrorContains(t, err, "device 1234567: 0 of 1 netdevs appeared")

	assert.Equal(t, map[string]string{"new_device": inNS, "del_device": here}, threads)
}
