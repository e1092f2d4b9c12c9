// Package namespace holds anonymous network namespaces for tests: it creates
// them, runs code inside them on a thread of their own (NetNS.Do), and keeps
// one rtnetlink handle per namespace (NetNS.Netlink).
package namespace

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// threadNetNSPath is the calling thread's own network namespace. /proc/self
// would name the main thread's, which is not the one a locked goroutine runs in.
const threadNetNSPath = "/proc/thread-self/ns/net"

// ErrClosed is returned by NetNS methods called after Close.
var ErrClosed = errors.New("netns: network namespace already closed")

// ErrGoexit is returned by Do when f did not return but ended its goroutine
// with runtime.Goexit, as t.FailNow (a failed require, t.Fatal, t.Skip)
// does when called inside Do: f's work is unfinished.
var ErrGoexit = errors.New("netns: the function run in the namespace called runtime.Goexit (t.FailNow, t.Fatal, t.Skip or a failed require inside Do?) instead of returning")

var serial atomic.Uint64

// NetNS is an anonymous network namespace held only by an open file
// descriptor: it has no name under /run/netns, so it disappears with the last
// descriptor (and with the process, even one killed by SIGKILL), and two runs
// can never collide on a name. The label is for logs only.
//
// A NetNS never moves the calling goroutine's thread: Do runs code inside it
// on a fresh goroutine locked to its own OS thread. Its rtnetlink handle
// (Netlink) was opened inside it, so it can be used from any goroutine.
type NetNS struct {
	label string

	mu sync.RWMutex
	ns netns.NsHandle  // -1 once closed
	h  *netlink.Handle // nil once closed
}

// New creates a new, empty network namespace (it holds only a loopback
// device, which is down) and an rtnetlink handle in it. label is made unique
// by appending the process id and a counter; it appears in errors and String.
func New(label string) (*NetNS, error) {
	full := fmt.Sprintf("%s-%d-%d", label, os.Getpid(), serial.Add(1))
	n := &NetNS{label: full, ns: -1}
	err := onLockedThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("open the thread's namespace: %w", err)
		}
		defer orig.Close()
		created, newErr := netns.New() // unshare(CLONE_NEWNET), then open it
		var h *netlink.Handle
		if newErr == nil {
			h, newErr = openHandle()
		}
		// netns.New can fail after unshare: move back in every case.
		if err := netns.Set(orig); err != nil {
			created.Close()
			if h != nil {
				h.Close()
			}
			return false, errors.Join(newErr, fmt.Errorf("return to the original namespace: %w", err))
		}
		if newErr != nil {
			created.Close()
			return true, newErr
		}
		n.ns, n.h = created, h
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("netns: create network namespace %s: %w", full, err)
	}
	return n, nil
}

// openHandle opens an rtnetlink handle in the calling thread's namespace
// with the kernel's extended error messages (extack) switched on, so that a
// refused request's error says why (e.g. "Invalid number of receive queues").
//
// vishvananda/netlink v1.3.1 switches extack on (nl.EnableErrorMessageReporting)
// only for the sockets it opens per request, not for a Handle's sockets, and
// it exposes no descriptor of a Handle. So openHandle switches it on for
// every rtnetlink socket of the process whose inode it had not seen before
// NewHandle: the Handle's (a new socket has a new inode, whatever descriptor
// number it reuses), and at worst one that another goroutine opened at the
// same time, which then just reports errors in more detail.
func openHandle() (*netlink.Handle, error) {
	open, err := openInodes()
	if err != nil {
		return nil, err
	}
	before := make(map[inode]bool, len(open))
	for _, ino := range open {
		before[ino] = true
	}
	h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("open rtnetlink handle: %w", err)
	}
	after, err := openInodes()
	if err != nil {
		h.Close()
		return nil, err
	}
	enabled := 0
	for fd, ino := range after {
		if before[ino] || !isRouteSocket(fd) {
			continue
		}
		err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
		switch err {
		case nil:
			enabled++
		case unix.EBADF, unix.ENOTSOCK, unix.ENOPROTOOPT:
			// Another goroutine's socket, closed (and its number
			// perhaps reused) since it was listed: not ours, which
			// nobody else can close.
		default:
			h.Close()
			return nil, fmt.Errorf("switch on NETLINK_EXT_ACK: %w", err)
		}
	}
	if enabled == 0 {
		h.Close()
		return nil, errors.New("open rtnetlink handle: found no new rtnetlink socket to switch extended error messages on")
	}
	return h, nil
}

// inode identifies an open file: its device and inode number.
type inode struct{ dev, ino uint64 }

// openInodes returns the inodes of the process's open descriptors, by
// descriptor, without the one it reads them through.
func openInodes() (map[int]inode, error) {
	dir, err := os.Open("/proc/self/fd")
	if err != nil {
		return nil, fmt.Errorf("list open descriptors: %w", err)
	}
	defer dir.Close()
	names, err := dir.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("list open descriptors: %w", err)
	}
	self := int(dir.Fd())
	inodes := make(map[int]inode, len(names))
	for _, name := range names {
		fd, err := strconv.Atoi(name)
		if err != nil || fd == self {
			continue
		}
		var st unix.Stat_t
		if unix.Fstat(fd, &st) == nil { // closed meanwhile: skip
			inodes[fd] = inode{dev: st.Dev, ino: st.Ino}
		}
	}
	return inodes, nil
}

// isRouteSocket reports whether fd is a NETLINK_ROUTE socket.
func isRouteSocket(fd int) bool {
	dom, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN)
	if err != nil || dom != unix.AF_NETLINK {
		return false
	}
	proto, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PROTOCOL)
	return err == nil && proto == unix.NETLINK_ROUTE
}

// String returns the namespace's label.
func (n *NetNS) String() string { return n.label }

// FD returns the descriptor that holds the namespace, or -1 after Close. It
// stays owned by n: do not close it.
func (n *NetNS) FD() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return int(n.ns)
}

// Netlink runs f with the namespace's rtnetlink handle, from the calling
// goroutine: the handle's socket was opened inside the namespace and stays
// there. The handle is valid only while f runs (Close closes it, and a
// closed vishvananda handle would silently talk to the caller's namespace),
// so f must not keep it.
func (n *NetNS) Netlink(f func(h *netlink.Handle) error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if n.h == nil {
		return fmt.Errorf("%w: %s", ErrClosed, n.label)
	}
	return f(n.h)
}

// Do runs f on a new goroutine whose OS thread has been moved into the
// namespace, and waits for it. Everything f creates that is bound to a
// namespace at creation (sockets, netlink handles) stays in this namespace
// after Do returns.
//
// After f, the thread is moved back to the namespace it came from. If that
// fails the goroutine exits without unlocking the thread, so that the Go
// runtime terminates the thread instead of reusing it: no other goroutine of
// the process ever runs in a foreign namespace. A panic in f is re-raised in
// the caller after the thread has been dealt with. If f ends its goroutine
// with runtime.Goexit instead of returning, Do returns an error wrapping
// ErrGoexit (never nil), and the thread, whose namespace was not restored,
// is discarded.
func (n *NetNS) Do(f func() error) error {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if !n.ns.IsOpen() {
		return fmt.Errorf("%w: %s", ErrClosed, n.label)
	}
	err := onLockedThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("netns: namespace %s: open the thread's namespace: %w", n.label, err)
		}
		defer orig.Close()
		if err := netns.Set(n.ns); err != nil {
			return true, fmt.Errorf("netns: enter namespace %s: %w", n.label, err)
		}
		var (
			ferr     error
			panicked bool
			pval     any
		)
		func() {
			defer func() {
				if r := recover(); r != nil {
					panicked, pval = true, r
				}
			}()
			ferr = f()
		}()
		if err := netns.Set(orig); err != nil {
			return false, errors.Join(ferr, fmt.Errorf("netns: leave namespace %s (thread discarded): %w", n.label, err))
		}
		if panicked {
			panic(pval)
		}
		return true, ferr
	})
	if err == ErrGoexit { // onLockedThread's own, not one f returned
		return fmt.Errorf("netns: namespace %s: %w", n.label, err)
	}
	return err
}

// Close closes the rtnetlink handle and releases the descriptor. The
// namespace, and the devices in it, go away once nothing else (a socket, a
// process) holds it. Close is idempotent.
func (n *NetNS) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.h != nil {
		n.h.Close()
		n.h = nil
	}
	if !n.ns.IsOpen() {
		return nil
	}
	err := n.ns.Close()
	n.ns = -1
	if err != nil {
		return fmt.Errorf("netns: close namespace %s: %w", n.label, err)
	}
	return nil
}

// onLockedThread runs f on a new goroutine locked to its OS thread. f reports
// whether the thread is clean (back in its original namespace); a thread that
// is not stays locked, so the runtime terminates it when the goroutine exits.
// A panic is re-raised in the caller; the thread it happened on is discarded
// too, since nothing says where its namespace was left. So is the thread of
// an f that called runtime.Goexit, which makes the caller's error wrap
// ErrGoexit.
func onLockedThread(f func() (clean bool, err error)) error {
	type result struct {
		err      error
		panicked bool
		value    any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var (
			res      result
			clean    bool
			returned bool
		)
		defer func() {
			if r := recover(); r != nil {
				res = result{panicked: true, value: r}
				clean = false
			} else if !returned {
				// runtime.Goexit: recover returns nil, and f never
				// got to say whether the thread is clean.
				res = result{err: ErrGoexit}
				clean = false
			}
			if clean {
				runtime.UnlockOSThread()
			}
			done <- res
		}()
		clean, res.err = f()
		returned = true
	}()
	res := <-done
	if res.panicked {
		panic(res.value)
	}
	return res.err
}
