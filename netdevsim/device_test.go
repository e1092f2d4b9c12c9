package netdevsim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// ids returns a randID hook that hands out ids in order, then fails the test.
func ids(t *testing.T, list ...int) func() int {
	var mu sync.Mutex
	return func() int {
		mu.Lock()
		defer mu.Unlock()
		require.NotEmpty(t, list, "NewDevice asked for more ids than the test planned")
		id := list[0]
		list = list[1:]
		return id
	}
}

func TestNewDeviceWritesFromInsideNamespace(t *testing.T) {
	tests := []struct {
		name          string
		ports, queues int
	}{
		{"one port one queue", 1, 1},
		{"three ports four queues", 3, 4},
		{"limits", MaxPorts, MaxQueues},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFake(t)
			ns := k.newNS("a")
			d, err := k.bus.NewDevice(context.Background(), ns, tt.ports, tt.queues)
			require.NoError(t, err)
			t.Cleanup(func() { assert.NoError(t, d.Delete()) })

			assert.GreaterOrEqual(t, d.ID, MinRandomID)
			assert.LessOrEqual(t, d.ID, MaxID)
			assert.Equal(t, []fakeWrite{{
				file: fileNew,
				data: fmt.Sprintf("%d %d %d", d.ID, tt.ports, tt.queues),
				ns:   ns,
			}}, k.log(), "one write of ID PORTS QUEUES, from a thread inside the namespace")
			assert.Equal(t, 1, ns.dos)
			assert.Same(t, ns, d.NS)
			require.Len(t, d.Ports, tt.ports)
			for i, p := range d.Ports {
				assert.Equal(t, i, p.Index)
				assert.Equal(t, p.IfIndex, d.Endpoint(i).IfIndex)
				assert.Equal(t, "eth"+strconv.Itoa(p.IfIndex), p.Name)
			}
			assert.DirExists(t, k.bus.DevicePath(d.ID))
		})
	}
}

func TestNewDeviceNilNamespaceWritesFromCallingThread(t *testing.T) {
	k := newFake(t)
	d, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Delete()) })
	w := k.log()
	require.Len(t, w, 1)
	assert.Nil(t, w[0].ns)
	assert.Nil(t, d.NS)
}

func TestNewDeviceRetriesTakenIDs(t *testing.T) {
	k := newFake(t)
	k.bus.randID = ids(t, 1000001, 1000002)
	first, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	second, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, first.Delete()); assert.NoError(t, second.Delete()) })

	k.bus.randID = ids(t, 1000001, 1000002, 1000001, 1000003)
	d, err := k.bus.NewDevice(context.Background(), nil, 2, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Delete()) })
	assert.Equal(t, 1000003, d.ID)

	var tried []string
	for _, w := range k.log()[2:] {
		tried = append(tried, w.file+": "+w.data)
	}
	assert.Equal(t, []string{
		"new_device: 1000001 2 1",
		"new_device: 1000002 2 1",
		"new_device: 1000001 2 1",
		"new_device: 1000003 2 1",
	}, tried)
}

func TestNewDeviceGivesUpWhenAllIDsAreTaken(t *testing.T) {
	k := newFake(t)
	k.bus.randID = ids(t, 7)
	taken, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, taken.Delete()) })

	k.bus.randID = func() int { return 7 }
	_, err = k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.Error(t, err)
	assert.ErrorIs(t, err, unix.ENOSPC)
	assert.ErrorContains(t, err, fmt.Sprintf("no free device id after %d random tries", IDAttempts))
	assert.ErrorContains(t, err, "the device id is already taken")
	assert.Len(t, k.log(), 1+IDAttempts)
}

func TestNewDeviceConcurrentCallsGetDistinctIDs(t *testing.T) {
	k := newFake(t)
	// A tiny id range forces collisions between the callers.
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(1, 2))
	k.bus.randID = func() int {
		mu.Lock()
		defer mu.Unlock()
		return 1 + r.IntN(12)
	}
	const callers = 6
	devs := make([]*Device, callers)
	errs := make([]error, callers)
	var wg sync.WaitGroup
	for i := range callers {
		wg.Go(func() { devs[i], errs[i] = k.bus.NewDevice(context.Background(), nil, 1, 1) })
	}
	wg.Wait()
	seen := map[int]bool{}
	for i := range callers {
		if devs[i] != nil {
			t.Cleanup(func() { assert.NoError(t, devs[i].Delete()) })
		}
	}
	for i := range callers {
		require.NoError(t, errs[i])
		assert.False(t, seen[devs[i].ID], "id %d handed out twice", devs[i].ID)
		seen[devs[i].ID] = true
	}
}

func TestNewDeviceRejectsBadInput(t *testing.T) {
	tests := []struct {
		ports, queues int
		want          string
	}{
		{0, 1, "port count 0 out of range: must be 1..128"},
		{-3, 1, "port count -3 out of range: must be 1..128"},
		{MaxPorts + 1, 1, "port count 129 out of range: must be 1..128"},
		{1, 0, "queue count 0 out of range: must be 1..256"},
		{1, -1, "queue count -1 out of range: must be 1..256"},
		{1, MaxQueues + 1, "queue count 257 out of range: must be 1..256"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			k := newFake(t)
			_, err := k.bus.NewDevice(context.Background(), nil, tt.ports, tt.queues)
			assert.EqualError(t, err, "netdevsim: "+tt.want)
			assert.Empty(t, k.log(), "nothing written")
		})
	}
}

func TestNewDeviceKernelErrors(t *testing.T) {
	tests := []struct {
		errno   unix.Errno
		meaning string
		is      error
	}{
		{unix.EBUSY, "the netdevsim bus is not ready", unix.EBUSY},
		{unix.EINVAL, `the kernel rejected the format "ID PORTS QUEUES" or the id (at most 2147483647)`, unix.EINVAL},
		{unix.ENOMEM, "out of memory", unix.ENOMEM},
		{unix.EACCES, "writable by root only", os.ErrPermission},
		{unix.EPERM, "writable by root only", os.ErrPermission},
	}
	for _, tt := range tests {
		t.Run(unix.ErrnoName(tt.errno), func(t *testing.T) {
			k := newFake(t)
			k.bus.randID = ids(t, 4242424)
			k.failNext(fileNew, tt.errno)
			_, err := k.bus.NewDevice(context.Background(), nil, 2, 3)
			require.Error(t, err)
			assert.ErrorIs(t, err, tt.is)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, Error{Op: "write", File: filepath.Join(k.root, fileNew), Data: "4242424 2 3", Err: tt.errno}, *e)
			assert.ErrorContains(t, err, fmt.Sprintf(`netdevsim: write %s (writing "4242424 2 3"): %s (%s): `,
				filepath.Join(k.root, fileNew), unix.ErrnoName(tt.errno), tt.errno.Error()))
			assert.ErrorContains(t, err, tt.meaning)
			assert.Len(t, k.log(), 1, "no retry, no delete")
		})
	}
}

func TestNewDeviceWithoutBusFile(t *testing.T) {
	k := newFake(t)
	require.NoError(t, os.Remove(filepath.Join(k.root, fileNew)))
	_, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.Error(t, err)
	assert.ErrorIs(t, err, os.ErrNotExist)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "open", e.Op)
	assert.ErrorContains(t, err, "netdevsim is not loaded")
	assert.NoFileExists(t, filepath.Join(k.root, fileNew), "the write must not create the file")
}

func TestNewDeviceNamespaceNotEntered(t *testing.T) {
	k := newFake(t)
	b := k.bus
	b.sysWrite = func(ns Namespace, path, data string) (string, error) {
		return writeInNS(ns, path, data, k.writeFile)
	}
	_, err := b.NewDevice(context.Background(), failingNS{}, 1, 1)
	require.Error(t, err)
	assert.ErrorContains(t, err, "enter the namespace to write")
	assert.ErrorContains(t, err, "setns refused")
	assert.Empty(t, k.log())
}

type failingNS struct{}

func (failingNS) FD() int               { return 0 }
func (failingNS) Do(func() error) error { return errors.New("setns refused") }

func TestNewDeviceWaitEndsAndDeletes(t *testing.T) {
	k := newFake(t)
	k.hide = true
	k.bus.randID = ids(t, 55)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := k.bus.NewDevice(ctx, k.newNS("a"), 2, 1)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "device 55: 0 of 2 netdevs appeared in its namespace before the wait ended")
	assert.Less(t, time.Since(start), 5*time.Second)
	w := k.log()
	require.Len(t, w, 2)
	assert.Equal(t, fakeWrite{file: fileDel, data: "55"}, w[1], "the half-made device is deleted")
	assert.NoDirExists(t, k.bus.DevicePath(55))
}

func TestNewDeviceReportsCleanupFailure(t *testing.T) {
	k := newFake(t)
	k.hide = true
	k.bus.randID = ids(t, 56)
	k.failNext(fileDel, unix.EBUSY)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	_, err := k.bus.NewDevice(ctx, nil, 1, 1)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorIs(t, err, unix.EBUSY)
	assert.ErrorContains(t, err, "it is left on the bus")
	assert.Contains(t, Live(), 56, "still registered, for DeleteAll")
}

func TestNewDeviceCanceledContext(t *testing.T) {
	k := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := k.bus.NewDevice(ctx, nil, 1, 1)
	assert.ErrorIs(t, err, context.Canceled)
	assert.Empty(t, k.log())
}

func TestNewDeviceQueueCountIgnoredByKernel(t *testing.T) {
	k := newFake(t)
	k.rxQueues = 1
	k.bus.randID = ids(t, 57)
	_, err := k.bus.NewDevice(context.Background(), nil, 1, 4)
	require.Error(t, err)
	assert.ErrorContains(t, err, "has 1 rx queues, asked for 4: this kernel's netdevsim ignores the QUEUES field")
	assert.NoDirExists(t, k.bus.DevicePath(57))
}

func TestNewDeviceLookupError(t *testing.T) {
	k := newFake(t)
	k.bus.randID = ids(t, 58)
	k.bus.netdevs = func(Namespace, int) ([]netdev, error) { return nil, unix.EPROTONOSUPPORT }
	_, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	assert.ErrorIs(t, err, unix.EPROTONOSUPPORT)
	assert.ErrorContains(t, err, "find the netdevs of device 58")
	assert.NoDirExists(t, k.bus.DevicePath(58))
}

func TestDeleteIsIdempotent(t *testing.T) {
	k := newFake(t)
	k.bus.randID = ids(t, 60)
	d, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	require.NoError(t, d.Delete())
	require.NoError(t, d.Delete())
	assert.Equal(t, []fakeWrite{{file: fileNew, data: "60 1 1"}, {file: fileDel, data: "60"}}, k.log(),
		"one del_device write, the second Delete is a no-op")
	assert.NoDirExists(t, k.bus.DevicePath(60))
}

func TestDeleteOfDeviceGoneAlready(t *testing.T) {
	k := newFake(t)
	d := &Device{ID: 61, bus: k.bus}
	require.NoError(t, d.Delete(), "ENOENT from del_device means the device is gone")
	require.NoError(t, d.Delete())
	assert.Len(t, k.log(), 1)
}

func TestDeleteFailureCanBeRetried(t *testing.T) {
	k := newFake(t)
	k.bus.randID = ids(t, 62)
	d, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	k.failNext(fileDel, unix.EBUSY)
	err = d.Delete()
	assert.ErrorIs(t, err, unix.EBUSY)
	assert.ErrorContains(t, err, fmt.Sprintf(`netdevsim: write %s (writing "62"): EBUSY (device or resource busy): the netdevsim bus is not ready`,
		filepath.Join(k.root, fileDel)))
	assert.DirExists(t, k.bus.DevicePath(62))
	require.NoError(t, d.Delete())
	assert.NoDirExists(t, k.bus.DevicePath(62))
}

func TestDeleteWithoutBusFileFails(t *testing.T) {
	k := newFake(t)
	require.NoError(t, os.Remove(filepath.Join(k.root, fileDel)))
	d := &Device{ID: 63, bus: k.bus}
	err := d.Delete()
	assert.ErrorIs(t, err, os.ErrNotExist, "a missing del_device is not a deleted device")
	assert.ErrorContains(t, err, "no such bus file")
}

func TestDeleteConcurrentWritesOnce(t *testing.T) {
	k := newFake(t)
	k.bus.randID = ids(t, 64)
	d, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { assert.NoError(t, d.Delete()) })
	}
	wg.Wait()
	assert.Len(t, k.log(), 2)
}
