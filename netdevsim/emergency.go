package netdevsim

// The in-process half of "nothing left behind": every device of the process,
// from before its new_device write until after its deletion, is in one
// registry, which DeleteAll empties when the process is about to end in a
// way that skips the normal cleanup (a signal, a test binary's
// -test.timeout).

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"sync"
	"syscall"
	"time"
)

// ErrClosed is returned by NewDevice after DeleteAll: the process is
// deleting its devices because it is about to end, and makes no new ones
// (they would be left behind).
var ErrClosed = errors.New("netdevsim: no new devices: this process deleted all its devices because it is about to end")

var registry = struct {
	sync.Mutex
	devs   map[*Device]struct{}
	closed string // why DeleteAll ran; "" while devices may be made
}{devs: map[*Device]struct{}{}}

// register adds d, whose creation is about to start, or refuses after
// DeleteAll.
func register(d *Device) error {
	registry.Lock()
	defer registry.Unlock()
	if registry.closed != "" {
		return fmt.Errorf("%w (%s)", ErrClosed, registry.closed)
	}
	registry.devs[d] = struct{}{}
	return nil
}

// unregister removes d once it is deleted or was never created.
func unregister(d *Device) {
	registry.Lock()
	defer registry.Unlock()
	delete(registry.devs, d)
}

// Live returns the ids of the devices this process has created, or is
// creating, and not yet deleted, on any Bus, in ascending order.
func Live() []int {
	registry.Lock()
	defer registry.Unlock()
	var ids []int
	for d := range registry.devs {
		ids = append(ids, d.ID)
	}
	slices.Sort(ids)
	return ids
}

// DeleteAll deletes every device this process has created or is creating
// (waiting for a new_device write under way to answer) and not deleted,
// and from then on makes NewDevice fail with ErrClosed. It is for a
// process about to end in a way that skips its normal cleanup; why is for
// the errors of later NewDevice calls. It returns the ids it deleted.
// Calling it again deletes what is left (devices whose deletion failed).
func DeleteAll(why string) ([]int, error) {
	registry.Lock()
	if registry.closed == "" {
		registry.closed = why
	}
	devs := make([]*Device, 0, len(registry.devs))
	for d := range registry.devs {
		devs = append(devs, d)
	}
	registry.Unlock()
	slices.SortFunc(devs, func(a, b *Device) int { return a.ID - b.ID })
	var (
		ids  []int
		errs []error
	)
	for _, d := range devs {
		// Delete waits for a creation under way: NewDevice holds d.mu
		// from before its record and new_device write until both are done.
		wasCreated, err := d.deleteForEmergency()
		if err != nil {
			errs = append(errs, err)
		} else if wasCreated {
			ids = append(ids, d.ID)
		}
	}
	return ids, errors.Join(errs...)
}

// deleteForEmergency is Delete, reporting whether there was a device to
// delete (a creation that failed leaves none).
func (d *Device) deleteForEmergency() (bool, error) {
	d.mu.Lock()
	already := d.deleted
	d.mu.Unlock()
	if already {
		unregister(d)
		return false, nil
	}
	return true, d.Delete()
}

// emergencySignals end a test binary without its cleanup: ^C, kill, a
// closed terminal, and SIGQUIT, which the go command sends to a test binary
// that outlives -timeout by a minute.
var emergencySignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// InstallEmergencyCleanup makes a test binary delete its devices when it
// would otherwise leave them behind: on SIGINT, SIGTERM and SIGHUP it
// deletes them all (DeleteAll), writes what it did to stderr and exits with
// status 2; on SIGQUIT it first prints every goroutine's stack, as the
// runtime's SIGQUIT handler would, then does the same; the cleanup after a
// signal gets at most EmergencyLimit;
// and if timeout (the binary's -test.timeout) is positive, it deletes them
// all shortly before it expires (a tenth of it, at most 5 s, before),
// since the testing package's timeout panic runs no cleanup. After that,
// NewDevice fails, so later devices are not left behind either. The
// messages say "interrupted by SIGNAL" and "-test.timeout is about to
// expire". stop undoes it.
//
// Each function in also runs first, with the reason, in both cases: the
// test binary's other things to put back (lent ports, say).
func InstallEmergencyCleanup(timeout time.Duration, also ...func(why string)) (stop func()) {
	first := func(why string) {
		for _, f := range also {
			f(why)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, emergencySignals...)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			onSignal(os.Stderr, s, EmergencyLimit, first, DeleteAll)
			signal.Reset(emergencySignals...)
			fmt.Fprintf(os.Stderr, "netdevsim: interrupted by %v\n", s)
			os.Exit(2)
		case <-done:
		}
	}()
	var watchdog *time.Timer
	if timeout > 0 {
		margin := min(timeout/10, 5*time.Second)
		watchdog = time.AfterFunc(timeout-margin, func() {
			first("-test.timeout is about to expire")
			emergencyReport("-test.timeout is about to expire", DeleteAll)
		})
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			signal.Stop(sigs)
			close(done)
			if watchdog != nil {
				watchdog.Stop()
			}
		})
	}
}

// EmergencyLimit bounds the emergency cleanup after a signal: a cleanup
// stuck in the kernel (rtnl, sysfs) must not keep the process from
// ending. After it the process exits without it.
const EmergencyLimit = 10 * time.Second

// onSignal is what a signal in emergencySignals does, writing to w: for
// SIGQUIT first every goroutine's stack, as the runtime's own SIGQUIT
// handler prints it ("SIGQUIT: quit" and the dump), so that a hang in the
// cleanup cannot keep it from the user; then the cleanup (first, then
// deleteAll), given at most limit. It reports whether the cleanup
// finished.
func onSignal(w io.Writer, s os.Signal, limit time.Duration, first func(string), deleteAll func(string) ([]int, error)) bool {
	why := "got " + s.String()
	if s == syscall.SIGQUIT {
		fmt.Fprintf(w, "netdevsim: %v: the goroutine dump follows\nSIGQUIT: quit\n\n%s\n", s, allStacks())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		first(why)
		emergencyReportTo(w, why, deleteAll)
	}()
	select {
	case <-done:
		return true
	case <-time.After(limit):
		fmt.Fprintf(w, "netdevsim: %s: the emergency cleanup did not finish within %v; ending without it (netdevsim devices may be left: the next run reaps them)\n", why, limit)
		return false
	}
}

// allStacks is every goroutine's stack.
func allStacks() []byte {
	buf := make([]byte, 1<<16)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return buf[:n]
		}
		buf = make([]byte, 2*len(buf))
	}
}

// emergencyReport runs deleteAll and says on stderr what it did.
func emergencyReport(why string, deleteAll func(string) ([]int, error)) {
	emergencyReportTo(os.Stderr, why, deleteAll)
}

// emergencyReportTo runs deleteAll and says on w what it did.
func emergencyReportTo(w io.Writer, why string, deleteAll func(string) ([]int, error)) {
	ids, err := deleteAll(why)
	msg := fmt.Sprintf("netdevsim: %s: deleted %d netdevsim device(s) of this process %v; no new ones will be made", why, len(ids), ids)
	if err != nil {
		msg += fmt.Sprintf("; failed: %v", err)
	}
	fmt.Fprintln(w, msg)
}
