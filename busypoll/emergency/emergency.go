// Package emergency runs a test binary's last-resort cleanups: what the
// process made that outlives it (netdevsim devices, lent ports, tracefs
// instances) must go also when it ends in a way that skips t.Cleanup, on a
// signal or when the testing package's -test.timeout panics. Each owner
// provides its cleanup (netdevsim.EmergencyCleanup, niclend.ReturnAll,
// napitrace.CloseAll); the test binary's TestMain installs them here.
package emergency

import (
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Signals end a test binary without its cleanup: ^C, kill, a closed
// terminal, and SIGQUIT, which the go command sends to a test binary that
// outlives -timeout by a minute.
var Signals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// Limit bounds the cleanups after a signal: one stuck in the kernel (rtnl,
// sysfs) must not keep the process from ending.
const Limit = 10 * time.Second

// Install makes the process run cleanups, in order and with the reason,
// when it would otherwise end without its cleanup: on a signal in Signals
// (then it writes what happened to stderr and exits with status 2; on
// SIGQUIT it first prints every goroutine's stack, as the runtime's own
// handler would; the cleanups get at most Limit), and, if timeout (the
// binary's -test.timeout) is positive, shortly before it expires (a tenth
// of it, at most 5 s, before). The messages say "interrupted by SIGNAL"
// and "-test.timeout is about to expire". stop undoes it.
func Install(timeout time.Duration, cleanups ...func(why string)) (stop func()) {
	all := func(why string) {
		for _, f := range cleanups {
			f(why)
		}
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, Signals...)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			onSignal(os.Stderr, s, Limit, all)
			signal.Reset(Signals...)
			fmt.Fprintf(os.Stderr, "busypolltest: interrupted by %v\n", s)
			os.Exit(2)
		case <-done:
		}
	}()
	var watchdog *time.Timer
	if timeout > 0 {
		margin := min(timeout/10, 5*time.Second)
		watchdog = time.AfterFunc(timeout-margin, func() { all("-test.timeout is about to expire") })
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

// onSignal is what a signal in Signals does, writing to w: for SIGQUIT
// first every goroutine's stack ("SIGQUIT: quit" and the dump, as the
// runtime prints it), so that a hang in the cleanup cannot keep it from
// the user; then cleanup, given at most limit. It reports whether the
// cleanup finished.
func onSignal(w io.Writer, s os.Signal, limit time.Duration, cleanup func(why string)) bool {
	why := "got " + s.String()
	if s == syscall.SIGQUIT {
		fmt.Fprintf(w, "busypolltest: %v: the goroutine dump follows\nSIGQUIT: quit\n\n%s\n", s, allStacks())
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		cleanup(why)
	}()
	select {
	case <-done:
		return true
	case <-time.After(limit):
		fmt.Fprintf(w, "busypolltest: %s: the emergency cleanup did not finish within %v; ending without it (netdevsim devices may be left: the next run reaps them)\n", why, limit)
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
