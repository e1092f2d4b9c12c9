package niclend

// Ports lent by a test process are given back at the test's cleanup and
// also when the process is about to end without it, on a signal or before
// -test.timeout expires: ReturnAll is this package's part of the emergency
// cleanup that busypoll/emergency.Install runs. A veth stand-in would
// otherwise die with its namespace, and a real port come back with the
// test's settings.

import (
	"fmt"
	"os"
	"sync"
)

// emergency holds how to give back each port lent and not yet returned.
var emergency = struct {
	sync.Mutex
	done  bool // ReturnAll ran
	next  int
	funcs map[int]func() error
}{funcs: map[int]func() error{}}

// OnEmergency registers f, which gives a port back (Loan.Return), for
// ReturnAll, and returns a function that unregisters it; or false once
// ReturnAll has run: then no new port may be lent. Register before the port
// moves, so that no moment of the loan is unprotected.
func OnEmergency(f func() error) (forget func(), ok bool) {
	emergency.Lock()
	defer emergency.Unlock()
	if emergency.done {
		return func() {}, false
	}
	k := emergency.next
	emergency.next++
	emergency.funcs[k] = f
	return func() {
		emergency.Lock()
		defer emergency.Unlock()
		delete(emergency.funcs, k)
	}, true
}

// ReturnAll gives back every registered port and says so on stderr; why
// says what happened. Later registrations are refused.
func ReturnAll(why string) {
	emergency.Lock()
	defer emergency.Unlock()
	emergency.done = true
	if len(emergency.funcs) == 0 {
		return
	}
	fmt.Fprintf(os.Stderr, "niclend: %s: giving back %d lent port(s)\n", why, len(emergency.funcs))
	for k, f := range emergency.funcs {
		if err := f(); err != nil {
			fmt.Fprintf(os.Stderr, "niclend: %v\n", err)
		}
		delete(emergency.funcs, k)
	}
}
