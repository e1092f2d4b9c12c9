package netdevsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// fakeProcs is what the reaper's /proc says: running processes by pid.
type fakeProcs struct {
	mu sync.Mutex
	m  map[int]procStat
}

func (p *fakeProcs) stat(pid int) (procStat, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	st, ok := p.m[pid]
	if !ok {
		return procStat{}, fs.ErrNotExist
	}
	return st, nil
}

func (p *fakeProcs) set(pid int, st procStat) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.m[pid] = st
}

// deadPID and deadStart name the owner of a simulated killed run.
const (
	deadPID   = 4242
	deadStart = 77
	livePID   = 5151
	liveStart = 88
	realStart = 999
)

// busAs returns another Bus on k's bus and record folder whose process is
// o, and whose /proc is procs. The fake kernel serves both.
func (k *fakeKernel) busAs(o owner, procs *fakeProcs) *Bus {
	b := NewBus(k.root)
	b.records = k.bus.records
	b.sysWrite = k.bus.sysWrite
	b.netdevs = k.bus.netdevs
	b.self = func() (owner, error) { return o, nil }
	b.procStat = procs.stat
	return b
}

// newReapFake returns a fake kernel whose k.bus is this process (pid 1000,
// alive), and the fake /proc that knows it.
func newReapFake(t *testing.T) (*fakeKernel, *fakeProcs) {
	t.Helper()
	k := newFake(t)
	procs := &fakeProcs{m: map[int]procStat{1000: {start: realStart, state: 'R'}}}
	k.bus.self = func() (owner, error) { return owner{pid: 1000, start: realStart}, nil }
	k.bus.procStat = procs.stat
	return k, procs
}

// madeRecordDir makes k's record folder with its lock file, as a bus that
// has recorded a device leaves it, and returns its path.
func madeRecordDir(t *testing.T, k *fakeKernel) string {
	t.Helper()
	dir := k.bus.records
	require.NoError(t, os.MkdirAll(dir, 0o755))
	unlock, err := lockRecords(dir, unix.LOCK_SH, true)
	require.NoError(t, err)
	unlock()
	return dir
}

// recordOf reads the record of o in k's folder; nil if there is none.
func recordOf(t *testing.T, k *fakeKernel, o owner) *record {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k.bus.records, o.name()))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var r record
	require.NoError(t, json.Unmarshal(b, &r))
	return &r
}

func idsOf(r *record) []int {
	if r == nil {
		return nil
	}
	var ids []int
	for _, e := range r.Devices {
		ids = append(ids, e.ID)
	}
	return ids
}

// handMade creates device id on k's bus the way a person would: a write of
// new_device that no record knows of.
func handMade(t *testing.T, k *fakeKernel, id int) {
	t.Helper()
	require.NoError(t, k.bus.write(nil, fileNew, fmt.Sprintf("%d 1 1", id)))
	t.Cleanup(func() { _ = k.bus.DeleteDevice(id) })
}

func TestRecordIsWrittenBeforeNewDeviceAndRemovedAfterDelete(t *testing.T) {
	k, _ := newReapFake(t)
	me := owner{pid: 1000, start: realStart}
	k.bus.randID = ids(t, 3000001, 3000002)
	var atWrite [][]int
	inner := k.bus.sysWrite
	k.bus.sysWrite = func(ns Namespace, path, data string) (string, error) {
		if filepath.Base(path) == fileNew {
			atWrite = append(atWrite, idsOf(recordOf(t, k, me)))
		}
		return inner(ns, path, data)
	}
	a, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	b, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	assert.Equal(t, [][]int{{3000001}, {3000001, 3000002}}, atWrite, "the record lists each id when its new_device is written")

	r := recordOf(t, k, me)
	require.NotNil(t, r)
	assert.Equal(t, 1000, r.PID)
	assert.Equal(t, uint64(realStart), r.Start)
	assert.Equal(t, []recordEntry{{Bus: k.root, ID: 3000001}, {Bus: k.root, ID: 3000002}}, r.Devices)

	require.NoError(t, a.Delete())
	assert.Equal(t, []int{3000002}, idsOf(recordOf(t, k, me)))
	require.NoError(t, b.Delete())
	assert.Nil(t, recordOf(t, k, me), "the record goes away with its last device")
	names, err := os.ReadDir(k.bus.records)
	require.NoError(t, err)
	for _, n := range names {
		assert.Equal(t, recordLock, n.Name(), "only the lock file is left")
	}
}

func TestRecordDropsAnIDTheKernelRefused(t *testing.T) {
	k, _ := newReapFake(t)
	me := owner{pid: 1000, start: realStart}
	handMade(t, k, 3000007)
	k.bus.randID = ids(t, 3000007, 3000008)
	d, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Delete()) })
	assert.Equal(t, []int{3000008}, idsOf(recordOf(t, k, me)), "the taken id is not this process's: out of the record")
}

func TestRecordFailureStopsNewDevice(t *testing.T) {
	k, _ := newReapFake(t)
	// A file where the folder should be: nothing can be recorded.
	k.bus.records = filepath.Join(t.TempDir(), "file")
	require.NoError(t, os.WriteFile(k.bus.records, nil, 0o644))
	k.bus.randID = ids(t, 3000009)
	_, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.Error(t, err)
	assert.ErrorContains(t, err, "record folder")
	assert.Empty(t, k.log(), "no new_device without a record")
	assert.NotContains(t, Live(), 3000009)
}

func TestRecordsOff(t *testing.T) {
	k, _ := newReapFake(t)
	k.bus.SetRecordDir("")
	assert.Equal(t, "", k.bus.RecordDir())
	d, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Delete()) })
	assert.NoDirExists(t, filepath.Join(filepath.Dir(k.root), "records"))
	got, err := k.bus.ReapOrphans()
	assert.NoError(t, err)
	assert.Empty(t, got)
}

// TestReapAfterCrash simulates a run killed with SIGKILL after creating two
// devices: their record stays, and the next run's ReapOrphans deletes them.
func TestReapAfterCrash(t *testing.T) {
	tests := []struct {
		name    string
		proc    *procStat // what /proc says of the dead pid now; nil: nothing
		wantWhy string
	}{
		{"pid gone", nil, "no such process"},
		{"pid reused", &procStat{start: deadStart + 5, state: 'S'}, "pid 4242 now belongs to a process started at tick 82"},
		{"zombie", &procStat{start: deadStart, state: 'Z'}, "exited (state Z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, procs := newReapFake(t)
			dead := owner{pid: deadPID, start: deadStart}
			crashed := k.busAs(dead, procs)
			crashed.randID = ids(t, 3000011, 3000012)
			for range 2 {
				_, err := crashed.NewDevice(context.Background(), nil, 1, 1)
				require.NoError(t, err)
			}
			// The process is gone: its Devices are never deleted, and
			// not in this process's registry either (it was another).
			forgetAll(crashed)
			if tt.proc != nil {
				procs.set(deadPID, *tt.proc)
			}
			require.DirExists(t, k.bus.DevicePath(3000011))

			got, err := k.bus.ReapOrphans()
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Equal(t, deadPID, got[0].PID)
			assert.Equal(t, uint64(deadStart), got[0].Start)
			assert.Contains(t, got[0].Why, tt.wantWhy)
			assert.Equal(t, []int{3000011, 3000012}, got[0].Deleted)
			assert.True(t, got[0].Removed)
			assert.Contains(t, got[0].String(), "deleted its devices [3000011 3000012]")
			t.Log(got[0])
			assert.NoDirExists(t, k.bus.DevicePath(3000011))
			assert.NoDirExists(t, k.bus.DevicePath(3000012))
			assert.Nil(t, recordOf(t, k, dead), "the stale record is removed")

			again, err := k.bus.ReapOrphans()
			require.NoError(t, err)
			assert.Empty(t, again, "nothing left to reap")
		})
	}
}

// forgetAll takes the devices of b out of this process's registry: they
// stand for another process's.
func forgetAll(b *Bus) {
	registry.Lock()
	defer registry.Unlock()
	for d := range registry.devs {
		if d.bus == b {
			delete(registry.devs, d)
		}
	}
}

func TestReapLeavesLiveOwnersAlone(t *testing.T) {
	k, procs := newReapFake(t)
	live := owner{pid: livePID, start: liveStart}
	procs.set(livePID, procStat{start: liveStart, state: 'S'})
	other := k.busAs(live, procs)
	other.randID = ids(t, 3000021)
	d, err := other.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, d.Delete()) })
	mine, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, mine.Delete()) })

	got, err := k.bus.ReapOrphans()
	require.NoError(t, err)
	assert.Empty(t, got)
	assert.DirExists(t, k.bus.DevicePath(3000021), "a live owner's device")
	assert.DirExists(t, k.bus.DevicePath(mine.ID), "this process's own device")
	assert.Equal(t, []int{3000021}, idsOf(recordOf(t, k, live)))
}

func TestReapNeverTouchesHandMadeDevices(t *testing.T) {
	k, procs := newReapFake(t)
	handMade(t, k, 5)
	handMade(t, k, 3000031)
	dead := owner{pid: deadPID, start: deadStart}
	crashed := k.busAs(dead, procs)
	crashed.randID = ids(t, 3000032)
	_, err := crashed.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	forgetAll(crashed)

	got, err := k.bus.ReapOrphans()
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, []int{3000032}, got[0].Deleted)
	assert.DirExists(t, k.bus.DevicePath(5), "made by hand: no record lists it")
	assert.DirExists(t, k.bus.DevicePath(3000031), "made by hand: no record lists it")
	var dels []string
	for _, w := range k.log() {
		if w.file == fileDel {
			dels = append(dels, w.data)
		}
	}
	assert.Equal(t, []string{"3000032"}, dels, "the only del_device written")
}

func TestReapPartialRecords(t *testing.T) {
	k, procs := newReapFake(t)
	dir := madeRecordDir(t, k)

	// Owner A was killed between recording 3000042 and writing its
	// new_device (or after deleting it, before updating the record):
	// 3000041 exists, 3000042 does not.
	a := owner{pid: 4301, start: 1}
	handMade(t, k, 3000041)
	require.NoError(t, writeRecord(dir, a, []recordEntry{{k.root, 3000041}, {k.root, 3000042}}))

	// Owner B was killed while rewriting its record: the temporary file
	// is there beside its last complete record.
	b := owner{pid: 4302, start: 2}
	handMade(t, k, 3000043)
	require.NoError(t, writeRecord(dir, b, []recordEntry{{k.root, 3000043}}))
	require.NoError(t, os.WriteFile(filepath.Join(dir, ".4302-2.tmp"), []byte(`{"pid":4302,"sta`), 0o644))

	// Owner C's record is cut short (not something this package writes:
	// the rename is atomic); left in place and reported.
	c := owner{pid: 4303, start: 3}
	require.NoError(t, os.WriteFile(filepath.Join(dir, c.name()), []byte(`{"pid":4303,"start":3,"devi`), 0o644))

	// Owner D recorded 3000044, which a live owner holds now.
	d := owner{pid: 4304, start: 4}
	live := owner{pid: livePID, start: liveStart}
	procs.set(livePID, procStat{start: liveStart, state: 'R'})
	handMade(t, k, 3000044)
	require.NoError(t, writeRecord(dir, d, []recordEntry{{k.root, 3000044}}))
	require.NoError(t, writeRecord(dir, live, []recordEntry{{k.root, 3000044}}))

	// Owner E recorded a device of another bus too.
	e := owner{pid: 4305, start: 5}
	handMade(t, k, 3000045)
	require.NoError(t, writeRecord(dir, e, []recordEntry{{k.root, 3000045}, {"/elsewhere", 3000046}}))

	// Files that are no records are ignored.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README"), nil, 0o644))

	got, err := k.bus.ReapOrphans()
	require.Error(t, err)
	assert.ErrorContains(t, err, c.name()+" of pid 4303 (started at tick 3) is unreadable, left in place")
	byPID := map[int][]Orphan{}
	for _, o := range got {
		byPID[o.PID] = append(byPID[o.PID], o)
		t.Log(o)
	}
	require.Len(t, byPID[4301], 1)
	assert.Equal(t, []int{3000041}, byPID[4301][0].Deleted)
	assert.Equal(t, []int{3000042}, byPID[4301][0].Gone)
	assert.True(t, byPID[4301][0].Removed)

	require.Len(t, byPID[4302], 2, "the record and the temporary file")
	assert.Equal(t, []int{3000043}, byPID[4302][0].Deleted)
	assert.Contains(t, byPID[4302][1].Why, "an unfinished record write")
	assert.NoFileExists(t, filepath.Join(dir, ".4302-2.tmp"))

	assert.Empty(t, byPID[4303])
	assert.FileExists(t, filepath.Join(dir, c.name()))

	require.Len(t, byPID[4304], 1)
	assert.Equal(t, []int{3000044}, byPID[4304][0].Claimed)
	assert.Empty(t, byPID[4304][0].Deleted)
	assert.DirExists(t, k.bus.DevicePath(3000044), "the live owner's device")
	assert.Equal(t, []int{3000044}, idsOf(recordOf(t, k, live)))

	require.Len(t, byPID[4305], 1)
	assert.Equal(t, []int{3000045}, byPID[4305][0].Deleted)
	assert.Equal(t, 1, byPID[4305][0].Other)
	assert.False(t, byPID[4305][0].Removed)
	assert.Equal(t, []recordEntry{{"/elsewhere", 3000046}}, recordOf(t, k, e).Devices, "left for a Bus of that root")

	for _, o := range []owner{a, b, d} {
		assert.Nil(t, recordOf(t, k, o), "record of %v", o)
	}
	assert.FileExists(t, filepath.Join(dir, "README"))
}

func TestReapKeepsWhatItCouldNotDelete(t *testing.T) {
	k, procs := newReapFake(t)
	dead := owner{pid: deadPID, start: deadStart}
	crashed := k.busAs(dead, procs)
	crashed.randID = ids(t, 3000051)
	_, err := crashed.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	forgetAll(crashed)

	k.failNext(fileDel, unix.EBUSY)
	got, err := k.bus.ReapOrphans()
	assert.ErrorIs(t, err, unix.EBUSY)
	assert.ErrorContains(t, err, "device 3000051 of gone owner pid 4242")
	require.Len(t, got, 1)
	assert.Equal(t, []int{3000051}, got[0].Kept)
	assert.False(t, got[0].Removed)
	assert.Equal(t, []int{3000051}, idsOf(recordOf(t, k, dead)), "kept for the next run")

	got, err = k.bus.ReapOrphans()
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, []int{3000051}, got[0].Deleted)
	assert.Nil(t, recordOf(t, k, dead))
}

func TestReapWithoutFolder(t *testing.T) {
	k, _ := newReapFake(t)
	k.bus.records = filepath.Join(t.TempDir(), "never-made")
	got, err := k.bus.ReapOrphans()
	assert.NoError(t, err)
	assert.Empty(t, got)
	assert.NoDirExists(t, k.bus.records, "reaping creates nothing")
}

func TestReapUnknownOwnerStateProtects(t *testing.T) {
	k, procs := newReapFake(t)
	dead := owner{pid: deadPID, start: deadStart}
	crashed := k.busAs(dead, procs)
	crashed.randID = ids(t, 3000061)
	_, err := crashed.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	forgetAll(crashed)
	t.Cleanup(func() { _ = k.bus.DeleteDevice(3000061) })
	k.bus.procStat = func(pid int) (procStat, error) {
		if pid == deadPID {
			return procStat{}, unix.EACCES
		}
		return procs.stat(pid)
	}
	got, err := k.bus.ReapOrphans()
	assert.ErrorIs(t, err, unix.EACCES)
	assert.ErrorContains(t, err, "cannot tell whether its owner runs, left alone")
	assert.Empty(t, got)
	assert.DirExists(t, k.bus.DevicePath(3000061))
}

func TestParseProcStat(t *testing.T) {
	fields := func(comm string, state byte, start string) string {
		f := []string{"1234", "(" + comm + ")", string(state)}
		for i := 4; i <= 52; i++ {
			v := fmt.Sprint(i * 10)
			if i == 22 {
				v = start
			}
			f = append(f, v)
		}
		return strings.Join(f, " ") + "\n"
	}
	st, err := parseProcStat([]byte(fields("busypolltest.te", 'S', "12345")))
	require.NoError(t, err)
	assert.Equal(t, procStat{start: 12345, state: 'S'}, st)

	st, err = parseProcStat([]byte(fields("a) (b c", 'Z', "7")))
	require.NoError(t, err, "a command name with spaces and parentheses")
	assert.Equal(t, procStat{start: 7, state: 'Z'}, st)

	_, err = parseProcStat([]byte("1234 (short) S 1 2"))
	assert.ErrorContains(t, err, "fields after the command name")
	_, err = parseProcStat([]byte("garbage"))
	assert.ErrorContains(t, err, "no ')'")
	_, err = parseProcStat([]byte(fields("x", 'S', "-1")))
	assert.ErrorContains(t, err, "start time (field 22)")

	me, err := selfOwner()
	require.NoError(t, err)
	assert.Equal(t, os.Getpid(), me.pid)
	st, err = readProcStat("/proc", os.Getpid())
	require.NoError(t, err)
	assert.Equal(t, me.start, st.start, "/proc/self/stat and /proc/PID/stat agree")
	assert.NotZero(t, me.start)

	b := NewBus(t.TempDir())
	isGone, _, err := b.gone(me)
	require.NoError(t, err)
	assert.False(t, isGone, "this process runs")
	isGone, why, err := b.gone(owner{pid: me.pid, start: me.start + 1})
	require.NoError(t, err)
	assert.True(t, isGone, "a record of an earlier process with this pid")
	assert.Contains(t, why, "now belongs to a process started at tick")
	isGone, why, err = b.gone(owner{pid: 1<<22 + 1, start: 1}) // above PID_MAX_LIMIT
	require.NoError(t, err)
	assert.True(t, isGone)
	assert.Equal(t, "no such process", why)
}

func TestParseRecordName(t *testing.T) {
	for name, want := range map[string]struct {
		o       owner
		tmp, ok bool
	}{
		"123-456.json":  {owner{123, 456}, false, true},
		".123-456.tmp":  {owner{123, 456}, true, true},
		"123-456.tmp":   {ok: false},
		"123.json":      {ok: false},
		"0-1.json":      {ok: false},
		"0123-1.json":   {ok: false},
		"-1-1.json":     {ok: false},
		"123-x.json":    {ok: false},
		".lock":         {ok: false},
		"123-456.json~": {ok: false},
	} {
		o, tmp, ok := parseRecordName(name)
		assert.Equal(t, want.ok, ok, name)
		if want.ok {
			assert.Equal(t, want.o, o, name)
			assert.Equal(t, want.tmp, tmp, name)
		}
	}
}

// TestReapLooksAgainBeforeDeleting: a live owner that records an id and
// creates it after the reaper read the folder (possible where the kernel
// has no file locking) still keeps its device: its record listed the id
// before the device existed, and the reaper reads the records again
// before each deletion.
func TestReapLooksAgainBeforeDeleting(t *testing.T) {
	k, procs := newReapFake(t)
	dir := madeRecordDir(t, k)
	dead := owner{pid: deadPID, start: deadStart}
	live := owner{pid: livePID, start: liveStart}
	procs.set(livePID, procStat{start: liveStart, state: 'R'})
	require.NoError(t, writeRecord(dir, dead, []recordEntry{{k.root, 3000071}}))
	var once sync.Once
	k.bus.procStat = func(pid int) (procStat, error) {
		if pid == deadPID {
			// The folder is listed already: the live owner records
			// 3000071 and creates it now.
			once.Do(func() {
				require.NoError(t, writeRecord(dir, live, []recordEntry{{k.root, 3000071}}))
				handMade(t, k, 3000071)
			})
		}
		return procs.stat(pid)
	}
	got, err := k.bus.ReapOrphans()
	require.NoError(t, err)
	require.Len(t, got, 1)
	assert.Equal(t, []int{3000071}, got[0].Claimed)
	assert.Empty(t, got[0].Deleted)
	assert.DirExists(t, k.bus.DevicePath(3000071), "the live owner's device")
}
