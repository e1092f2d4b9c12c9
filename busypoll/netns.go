package busypoll

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// threadNetNSPath is the calling thread's own network namespace. /proc/self
// would name the main thread's, which is not the one a locked goroutine runs in.
const threadNetNSPath = "/proc/thread-self/ns/net"

// ErrNetNSClosed is returned by NetNS methods called after Close.
var ErrNetNSClosed = errors.New("busypoll: network namespace already closed")

// ErrGoexit is returned by Do when f did not return but ended its goroutine
// with runtime.Goexit, as t.FailNow (a failed require, t.Fatal, t.Skip)
// does when called inside Do: f's work is unfinished.
var ErrGoexit = errors.New("busypoll: the function run in the namespace called runtime.Goexit (t.FailNow, t.Fatal, t.Skip or a failed require inside Do?) instead of returning")

var netnsSerial atomic.Uint64

// NetNS is an anonymous network namespace held only by an open file
// descriptor: it has no name under /run/netns, so it disappears with the last
// descriptor (and with the process, even one killed by SIGKILL), and two runs
// can never collide on a name. The label is for logs only.
//
// A NetNS never moves the calling goroutine's thread: Do runs code inside it
// on a fresh goroutine locked to its own OS thread.
type NetNS struct {
	label string

	mu sync.RWMutex
	fd int // -1 once closed
}

// NewNetNS creates a new, empty network namespace (it holds only a loopback
// device, which is down). label is made unique by appending the process id and
// a counter; it appears in errors and String.
func NewNetNS(label string) (*NetNS, error) {
	full := fmt.Sprintf("%s-%d-%d", label, os.Getpid(), netnsSerial.Add(1))
	fd := -1
	err := onLockedThread(func() (bool, error) {
		orig, err := unix.Open(threadNetNSPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return true, fmt.Errorf("open %s: %w", threadNetNSPath, err)
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			// The thread is still where it was.
			return true, fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
		}
		fd, err = unix.Open(threadNetNSPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if restoreErr := unix.Setns(orig, unix.CLONE_NEWNET); restoreErr != nil {
			if fd >= 0 {
				unix.Close(fd)
				fd = -1
			}
			return false, fmt.Errorf("return to the original namespace: %w", restoreErr)
		}
		if err != nil {
			return true, fmt.Errorf("open the new namespace: %w", err)
		}
		return true, nil
	})
	if err != nil {
		return nil, fmt.Errorf("busypoll: create network namespace %s: %w", full, err)
	}
	return &NetNS{label: full, fd: fd}, nil
}

// String returns the namespace's label.
func (n *NetNS) String() string { return n.label }

// FD returns the descriptor that holds the namespace, or -1 after Close. It
// stays owned by n: do not close it.
func (n *NetNS) FD() int {
	n.mu.RLock()
	defer n.mu.RUnlock()
	return n.fd
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
	if n.fd < 0 {
		return fmt.Errorf("%w: %s", ErrNetNSClosed, n.label)
	}
	err := onLockedThread(func() (bool, error) {
		orig, err := unix.Open(threadNetNSPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return true, fmt.Errorf("busypoll: namespace %s: open %s: %w", n.label, threadNetNSPath, err)
		}
		defer unix.Close(orig)
		if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			return true, fmt.Errorf("busypoll: enter namespace %s: %w", n.label, err)
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
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			return false, errors.Join(ferr, fmt.Errorf("busypoll: leave namespace %s (thread discarded): %w", n.label, err))
		}
		if panicked {
			panic(pval)
		}
		return true, ferr
	})
	if err == ErrGoexit { // onLockedThread's own, not one f returned
		return fmt.Errorf("busypoll: namespace %s: %w", n.label, err)
	}
	return err
}

// Close releases the descriptor. The namespace, and the devices in it, go
// away once nothing else (a socket, a process) holds it. Close is idempotent.
func (n *NetNS) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	if err != nil {
		return fmt.Errorf("busypoll: close namespace %s: %w", n.label, err)
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
