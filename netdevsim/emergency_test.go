package netdevsim

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll/emergency"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
)

// reopen undoes DeleteAll's refusal when the test ends.
func reopen(t *testing.T) {
	t.Cleanup(ResetClosed)
}

func TestLiveCoversTheWholeLifeOfADevice(t *testing.T) {
	k := newFake(t)
	k.bus.randID = ids(t, 3100001)
	var atWrite []int
	inner := k.bus.sysWrite
	k.bus.sysWrite = func(ns Namespace, path, data string) (string, error) {
		if filepath.Base(path) == fileNew {
			atWrite = Live()
		}
		return inner(ns, path, data)
	}
	d, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	assert.Contains(t, atWrite, 3100001, "registered before new_device is written")
	assert.Contains(t, Live(), 3100001)
	require.NoError(t, d.Delete())
	assert.NotContains(t, Live(), 3100001, "gone from the registry after Delete")
}

func TestLiveForgetsFailedCreations(t *testing.T) {
	k := newFake(t)
	k.hide = true
	k.bus.randID = ids(t, 3100002)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	_, err := k.bus.NewDevice(ctx, nil, 1, 1)
	require.Error(t, err)
	assert.NotContains(t, Live(), 3100002)
}

func TestDeleteAllDeletesAndRefusesNewDevices(t *testing.T) {
	reopen(t)
	k := newFake(t)
	k.bus.randID = ids(t, 3100011, 3100012, 3100013)
	a, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	_, err = k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	require.NoError(t, a.Delete())

	got, err := DeleteAll("a test says so")
	require.NoError(t, err)
	assert.Equal(t, []int{3100012}, got, "only what is still there")
	assert.NoDirExists(t, k.bus.DevicePath(3100012))
	assert.Empty(t, Live())

	_, err = k.bus.NewDevice(context.Background(), nil, 1, 1)
	assert.ErrorIs(t, err, ErrClosed)
	assert.ErrorContains(t, err, "(a test says so)")
	assert.Len(t, k.log(), 4, "no new_device after DeleteAll")
}

// TestDeleteAllWaitsForACreationUnderWay: a signal that arrives while
// new_device is being written must not miss the device.
func TestDeleteAllWaitsForACreationUnderWay(t *testing.T) {
	reopen(t)
	k := newFake(t)
	k.bus.randID = ids(t, 3100021)
	entered, release := make(chan struct{}), make(chan struct{})
	inner := k.bus.sysWrite
	k.bus.sysWrite = func(ns Namespace, path, data string) (string, error) {
		if filepath.Base(path) == fileNew {
			close(entered)
			<-release
		}
		return inner(ns, path, data)
	}
	created := make(chan error, 1)
	go func() {
		_, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
		created <- err
	}()
	select {
	case <-entered:
	case err := <-created:
		t.Fatalf("NewDevice returned before writing new_device: %v", err)
	}
	deleted := make(chan []int, 1)
	go func() {
		ids, err := DeleteAll("signal")
		assert.NoError(t, err)
		deleted <- ids
	}()
	select {
	case <-deleted:
		t.Fatal("DeleteAll returned while new_device was still being written")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	assert.Equal(t, []int{3100021}, <-deleted)
	// NewDevice fails with ErrClosed if DeleteAll took the device while
	// the netdevs were awaited, and succeeds if it took it later: in both
	// cases the device is gone.
	if err := <-created; err != nil {
		assert.ErrorIs(t, err, ErrClosed)
	}
	assert.NoDirExists(t, k.bus.DevicePath(3100021))
	assert.Empty(t, Live())
}

func TestEmergencyWatchdogDeletesAndKeepsProtecting(t *testing.T) {
	reopen(t)
	k := newFake(t)
	k.bus.randID = ids(t, 3100031, 3100032)
	d, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	stop := emergency.Install(200*time.Millisecond, EmergencyCleanup) // fires 20 ms early
	defer stop()
	require.Eventually(t, func() bool { return len(Live()) == 0 }, 5*time.Second, 5*time.Millisecond)
	assert.NoDirExists(t, k.bus.DevicePath(d.ID))
	_, err = k.bus.NewDevice(context.Background(), nil, 1, 1)
	assert.ErrorIs(t, err, ErrClosed, "a device made after the watchdog fired would be left behind")
	assert.ErrorContains(t, err, "-test.timeout is about to expire")
	stop()
	stop()
}

func TestEmergencyStopDisarms(t *testing.T) {
	k := newFake(t)
	k.bus.randID = ids(t, 3100041)
	stop := emergency.Install(50*time.Millisecond, EmergencyCleanup)
	stop()
	d, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	assert.Contains(t, Live(), d.ID)
	require.NoError(t, d.Delete())
}

// TestEmergencyReport: the cleanup says what it deleted, and what failed.
func TestEmergencyReport(t *testing.T) {
	var out testenv.SyncBuffer
	emergencyReportTo(&out, "got terminated", func(string) ([]int, error) { return []int{7}, nil })
	assert.Equal(t, "netdevsim: got terminated: deleted 1 netdevsim device(s) of this process [7]; no new ones will be made\n", out.String())
}
