package niclend

// Ports lent by a test process are given back on SIGINT, SIGTERM and before
// -test.timeout expires (ReturnAll, called from the process's emergency
// cleanup), as well as at the test's cleanup: a veth stand-in would
// otherwise die with its namespace, and a real port come back with the
// test's settings.

import (
	"fmt"
	"os"
	"sync"
)

// emergency holds the loans of the ports lent, which are given
// back on SIGINT, SIGTERM and before -test.timeout expires, as well as at
// cleanup: a veth stand-in would otherwise die with its namespace, and a
// real port come back with the test's settings.
var emergency = struct {
	sync.Mutex
	done  bool // ReturnAll ran
	next  int
	funcs map[int]func() error
}{funcs: map[int]func() error{}}

// OnEmergency registers f, which gives a port back, and returns a function that unregisters it,
// or false once the emergency cleanup has run.
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

// ReturnAll gives back every lent port; why says what happened. Later
// loans are refused.
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
