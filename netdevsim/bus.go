// Package netdevsim creates, links and deletes netdevsim devices through the
// kernel's /sys/bus/netdevsim bus files, without udev tools.
//
// The kernel creates a new device's netdevs in the network namespace of the
// thread that writes new_device, so NewDevice takes the target Namespace
// explicitly and writes from a thread inside it. It then finds the netdevs
// through rtnetlink inside that namespace (links whose parent device is
// netdevsimID on the netdevsim bus) rather than through
// /sys/bus/netdevsim/devices/netdevsimID/net, whose entries are tagged with
// the network namespace sysfs was mounted in and therefore hide netdevs of
// other namespaces.
//
// Facts used here come from drivers/net/netdevsim/bus.c:
//
//	new_device    "ID [PORTS [QUEUES]]"  ENOSPC id taken, EINVAL bad format or id > 2^31-1, EBUSY bus not ready
//	del_device    "ID"                   ENOENT unknown id
//	link_device   "FD:IFINDEX FD:IFINDEX" (fds of the writing process) EINVAL bad fd/ifindex/not netdevsim/self, EBUSY already linked
//	unlink_device "FD:IFINDEX"           EINVAL as above, and also when the port is not linked
//
// Devices outlive the process that created them (the kernel offers no way
// to tie them to a process). So NewDevice writes each device into an
// ownership record on disk before creating it (see ReapOrphans, which
// deletes the devices of owners that are gone: a process killed with
// SIGKILL), and keeps a registry of the process's devices, which DeleteAll
// and EmergencyCleanup (installed with busypoll/emergency) use when a signal
// or a test timeout would skip the normal cleanup. Random ids keep
// concurrent and later runs from colliding.
package netdevsim

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultRoot is where the kernel puts the netdevsim bus.
const DefaultRoot = "/sys/bus/netdevsim"

// Names of the bus files, relative to the root.
const (
	fileNew    = "new_device"
	fileDel    = "del_device"
	fileLink   = "link_device"
	fileUnlink = "unlink_device"
	dirDevices = "devices"
)

// Namespace is a network namespace held by a file descriptor of this process.
// busypoll/namespace.NetNS satisfies it. A nil Namespace means the namespace of
// the calling goroutine's thread.
type Namespace interface {
	// FD returns the namespace's file descriptor (a nsfs fd, as from
	// /proc/PID/ns/net), valid while the Namespace is open.
	FD() int
	// Do runs f on an OS thread switched into the namespace and switches
	// back afterwards.
	Do(f func() error) error
}

// Endpoint names a netdevsim port by its namespace and ifindex, the way
// link_device and unlink_device want it.
type Endpoint struct {
	// NS is the namespace the netdev lives in; nil means the current one.
	NS Namespace
	// IfIndex is the netdev's ifindex inside NS.
	IfIndex int
}

// Bus is a netdevsim bus rooted at a sysfs directory.
type Bus struct {
	root string

	// Hooks, replaced by tests.
	sysWrite func(ns Namespace, path, data string) (op string, err error)
	netdevs  func(ns Namespace, id int) ([]netdev, error)
	randID   func() int
	euid     func() int
	load     func() error
	proc     string // procfs mount point
	modDir   string // /lib/modules/RELEASE; empty: from uname
	self     func() (owner, error)
	procStat func(pid int) (procStat, error)

	records string // ownership record folder; "" for none

	loadOnce sync.Once
	loadErr  error
}

// NewBus returns a Bus whose files live under root (DefaultRoot on a real
// system; tests point it at a fake directory).
func NewBus(root string) *Bus {
	b := &Bus{
		root: root,
		sysWrite: func(ns Namespace, path, data string) (string, error) {
			return writeInNS(ns, path, data, writeFile)
		},
		netdevs: listNetdevs,
		randID:  randomID,
		euid:    os.Geteuid,
		load:    autoload,
		proc:    "/proc",
		self:    selfOwner,
		records: DefaultRecordDir,
	}
	b.procStat = func(pid int) (procStat, error) { return readProcStat(b.proc, pid) }
	return b
}

// SetRecordDir sets the folder of b's ownership records (DefaultRecordDir
// unless set; see NewDevice and ReapOrphans). Tests point it at a
// temporary folder. The empty string turns the records off, so that a
// device of a process killed with SIGKILL is left on the bus for good: that
// is only for showing what the records are for. Set it before b creates
// devices.
func (b *Bus) SetRecordDir(dir string) { b.records = dir }

// RecordDir returns the folder of b's ownership records, "" if off.
func (b *Bus) RecordDir() string { return b.records }

// Root returns the bus directory.
func (b *Bus) Root() string { return b.root }

// DevicePath returns the sysfs directory of device id,
// ROOT/devices/netdevsimID. It exists while the device does.
func (b *Bus) DevicePath(id int) string {
	return filepath.Join(b.root, dirDevices, fmt.Sprintf("netdevsim%d", id))
}

// Link connects two netdevsim ports so that what one transmits the other
// receives. The ports may live in different namespaces; their fds are
// looked up in this process's fd table by the kernel.
func (b *Bus) Link(a, c Endpoint) error {
	if err := checkIfIndex("link", a.IfIndex); err != nil {
		return err
	}
	if err := checkIfIndex("link", c.IfIndex); err != nil {
		return err
	}
	fa, closeA, err := nsFD(a.NS)
	if err != nil {
		return err
	}
	defer closeA()
	fc, closeC, err := nsFD(c.NS)
	if err != nil {
		return err
	}
	defer closeC()
	data := fmt.Sprintf("%d:%d %d:%d", fa, a.IfIndex, fc, c.IfIndex)
	err = b.write(nil, fileLink, data)
	runtime.KeepAlive(a.NS)
	runtime.KeepAlive(c.NS)
	return err
}

// Unlink disconnects a linked port from its peer. Unlinking a port that is
// not linked fails with EINVAL (the kernel does not tell the cases apart).
func (b *Bus) Unlink(a Endpoint) error {
	if err := checkIfIndex("unlink", a.IfIndex); err != nil {
		return err
	}
	fa, closeA, err := nsFD(a.NS)
	if err != nil {
		return err
	}
	defer closeA()
	err = b.write(nil, fileUnlink, fmt.Sprintf("%d:%d", fa, a.IfIndex))
	runtime.KeepAlive(a.NS)
	return err
}

func checkIfIndex(op string, ifindex int) error {
	if ifindex < 1 || ifindex > MaxID {
		return fmt.Errorf("netdevsim: %s: ifindex %d out of range: must be 1..%d", op, ifindex, MaxID)
	}
	return nil
}

// nsFD returns the fd of ns, or, for a nil ns, a freshly opened fd of the
// calling thread's namespace and a function that closes it.
func nsFD(ns Namespace) (int, func(), error) {
	if ns != nil {
		fd := ns.FD()
		if fd < 0 {
			return 0, nil, fmt.Errorf("netdevsim: namespace fd %d is invalid (closed namespace?)", fd)
		}
		return fd, func() {}, nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("netdevsim: open the current network namespace: %w", err)
	}
	return fd, func() { unix.Close(fd) }, nil
}

// write writes data to the bus file name, from a thread in ns (nil: the
// calling thread), and explains a failure.
func (b *Bus) write(ns Namespace, name, data string) error {
	path := filepath.Join(b.root, name)
	op, err := b.sysWrite(ns, path, data)
	if err != nil {
		return &Error{Op: op, File: path, Data: data, Err: err}
	}
	return nil
}

// writeInNS is the real sysWrite with write = writeFile: open, one
// write(2), close, all on one thread inside ns, because new_device creates
// the netdevs in the network namespace of the thread that writes.
func writeInNS(ns Namespace, path, data string, write func(path, data string) (string, error)) (string, error) {
	var op string
	do := func() error {
		var err error
		op, err = write(path, data)
		return err
	}
	if ns == nil {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		return op, do()
	}
	var (
		werr error
		ran  bool
	)
	err := ns.Do(func() error {
		ran = true
		werr = do()
		return nil
	})
	if !ran {
		// The thread never entered the namespace: nothing was written.
		return "enter the namespace to write", err
	}
	// The write happened (or failed) inside the namespace; report its
	// outcome, which decides whether a device exists. A failure to switch
	// back after it is the Namespace's to handle (it lets the runtime
	// discard the thread).
	return op, werr
}

// writeFile writes data to a sysfs attribute in a single write(2), as the
// kernel's store functions see each write as one command. It neither creates
// nor truncates the file.
func writeFile(path, data string) (op string, err error) {
	var fd int
	for {
		fd, err = unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return "open", err
	}
	defer unix.Close(fd)
	var n int
	for {
		n, err = unix.Write(fd, []byte(data))
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		return "write", err
	}
	if n != len(data) {
		return "write", fmt.Errorf("short write: %d of %d bytes", n, len(data))
	}
	return "write", nil
}
