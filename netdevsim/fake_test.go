package netdevsim

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// fakeKernel emulates drivers/net/netdevsim/bus.c on top of a directory:
// every write really goes through writeInNS and writeFile to a file of the
// directory, and is then consumed and answered the way the kernel would.
type fakeKernel struct {
	t    *testing.T
	root string
	bus  *Bus

	fileMu  sync.Mutex // serializes writes to the bus files
	mu      sync.Mutex
	current *fakeNS // namespace the writing thread is in (set by fakeNS.Do)
	writes  []fakeWrite
	devs    map[int]*fakeDev
	peers   map[int]int // ifindex -> peer ifindex
	fail    map[string][]error
	ifindex int // last ifindex handed out

	hide     bool // netdevs never show up in rtnetlink
	rxQueues int  // if set, the rx queue count every netdev reports
}

type fakeWrite struct {
	file, data string
	ns         *fakeNS
}

type fakeDev struct {
	ns      *fakeNS
	queues  int
	ifindex []int
}

// fakeNS is a Namespace whose fd is a real open file of this process.
type fakeNS struct {
	k    *fakeKernel
	name string
	fd   int
	dos  int
}

func (n *fakeNS) FD() int { return n.fd }

func (n *fakeNS) Do(f func() error) error {
	n.k.mu.Lock()
	n.dos++
	n.k.current = n
	n.k.mu.Unlock()
	defer func() {
		n.k.mu.Lock()
		n.k.current = nil
		n.k.mu.Unlock()
	}()
	return f()
}

// newFake returns a fake kernel with a complete bus under a temp dir.
func newFake(t *testing.T) *fakeKernel {
	t.Helper()
	root := filepath.Join(t.TempDir(), "netdevsim")
	require.NoError(t, os.MkdirAll(filepath.Join(root, dirDevices), 0o755))
	for _, f := range []string{fileNew, fileDel, fileLink, fileUnlink} {
		require.NoError(t, os.WriteFile(filepath.Join(root, f), nil, 0o600))
	}
	k := &fakeKernel{
		t:     t,
		root:  root,
		devs:  map[int]*fakeDev{},
		peers: map[int]int{},
		fail:  map[string][]error{},
	}
	b := NewBus(root)
	b.records = filepath.Join(filepath.Dir(root), "records")
	b.sysWrite = func(ns Namespace, path, data string) (string, error) {
		return writeInNS(ns, path, data, k.writeFile)
	}
	b.netdevs = k.netdevs
	k.bus = b
	// Devices a test left on purpose (a failed delete) must not reach
	// the registry of later tests.
	t.Cleanup(func() { forgetAll(b) })
	return k
}

func (k *fakeKernel) newNS(name string) *fakeNS {
	k.t.Helper()
	f, err := os.Open(os.DevNull)
	require.NoError(k.t, err)
	k.t.Cleanup(func() { f.Close() })
	return &fakeNS{k: k, name: name, fd: int(f.Fd())}
}

// failNext makes the next writes to file fail with errs, in order.
func (k *fakeKernel) failNext(file string, errs ...error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fail[file] = append(k.fail[file], errs...)
}

func (k *fakeKernel) log() []fakeWrite {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]fakeWrite(nil), k.writes...)
}

// writeFile does the real write, then plays the kernel's part.
// Unlike sysfs, a plain file is shared by all writers, so writes are
// serialized here. Only assert is used: callers may be other goroutines.
func (k *fakeKernel) writeFile(path, data string) (string, error) {
	k.fileMu.Lock()
	defer k.fileMu.Unlock()
	op, err := writeFile(path, data)
	if err != nil {
		return op, err
	}
	got, err := os.ReadFile(path)
	assert.NoError(k.t, err)
	assert.NoError(k.t, os.Truncate(path, 0))
	assert.Equal(k.t, data, string(got), "bytes that reached %s", path)

	file := filepath.Base(path)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.writes = append(k.writes, fakeWrite{file: file, data: data, ns: k.current})
	if q := k.fail[file]; len(q) > 0 {
		k.fail[file] = q[1:]
		return "write", q[0]
	}
	return "write", k.store(file, data)
}

// store answers a write the way bus.c does.
func (k *fakeKernel) store(file, data string) error {
	switch file {
	case fileNew:
		var id, ports, queues int
		if n, _ := fmt.Sscanf(data, "%d %d %d", &id, &ports, &queues); n != 3 || id < 0 || id > MaxID {
			return unix.EINVAL
		}
		if k.devs[id] != nil {
			return unix.ENOSPC
		}
		d := &fakeDev{ns: k.current, queues: queues}
		for range ports {
			k.ifindex++
			d.ifindex = append(d.ifindex, k.ifindex)
		}
		k.devs[id] = d
		return os.Mkdir(filepath.Join(k.root, dirDevices, "netdevsim"+strconv.Itoa(id)), 0o755)
	case fileDel:
		id, err := strconv.Atoi(data)
		if err != nil {
			return unix.EINVAL
		}
		d := k.devs[id]
		if d == nil {
			return unix.ENOENT
		}
		for _, i := range d.ifindex {
			if p, ok := k.peers[i]; ok {
				delete(k.peers, p)
				delete(k.peers, i)
			}
		}
		delete(k.devs, id)
		return os.Remove(filepath.Join(k.root, dirDevices, "netdevsim"+strconv.Itoa(id)))
	case fileLink:
		var fa, ia, fb, ib int
		if n, _ := fmt.Sscanf(data, "%d:%d %d:%d", &fa, &ia, &fb, &ib); n != 4 {
			return unix.EINVAL
		}
		if !k.valid(fa, ia) || !k.valid(fb, ib) || ia == ib {
			return unix.EINVAL
		}
		if _, ok := k.peers[ia]; ok {
			return unix.EBUSY
		}
		if _, ok := k.peers[ib]; ok {
			return unix.EBUSY
		}
		k.peers[ia], k.peers[ib] = ib, ia
		return nil
	case fileUnlink:
		var fa, ia int
		if n, _ := fmt.Sscanf(data, "%d:%d", &fa, &ia); n != 2 {
			return unix.EINVAL
		}
		p, ok := k.peers[ia]
		if !k.valid(fa, ia) || !ok {
			return unix.EINVAL
		}
		delete(k.peers, p)
		delete(k.peers, ia)
		return nil
	}
	return unix.EINVAL
}

// valid reports whether fd is open in this process and ifindex is a port.
func (k *fakeKernel) valid(fd, ifindex int) bool {
	if _, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0); err != nil {
		return false
	}
	for _, d := range k.devs {
		for _, i := range d.ifindex {
			if i == ifindex {
				return true
			}
		}
	}
	return false
}

// netdevs is the fake Bus.netdevs: what rtnetlink would show in ns.
func (k *fakeKernel) netdevs(ns Namespace, id int) ([]netdev, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	d := k.devs[id]
	if k.hide || d == nil {
		return nil, nil
	}
	var want *fakeNS
	if ns != nil {
		want = ns.(*fakeNS)
	}
	if d.ns != want {
		return nil, nil
	}
	var out []netdev
	for i, ifindex := range d.ifindex {
		q := d.queues
		if k.rxQueues != 0 {
			q = k.rxQueues
		}
		out = append(out, netdev{
			Port:      Port{Index: i, Name: "eth" + strconv.Itoa(ifindex), IfIndex: ifindex},
			parent:    "netdevsim" + strconv.Itoa(id),
			parentBus: "netdevsim",
			rxQueues:  q,
		})
	}
	return out, nil
}
