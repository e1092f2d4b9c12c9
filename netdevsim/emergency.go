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
	"slices"
	"sync"
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

// EmergencyCleanup deletes every device of this process (DeleteAll) and
// says on stderr what it did, with why. It is netdevsim's part of a test
// binary's emergency cleanup (busypoll/emergency.Install), for a process
// about to end without its normal cleanup: after it, NewDevice fails, so
// later devices are not left behind either.
func EmergencyCleanup(why string) { emergencyReportTo(os.Stderr, why, DeleteAll) }

// emergencyReportTo runs deleteAll and says on w what it did.
func emergencyReportTo(w io.Writer, why string, deleteAll func(string) ([]int, error)) {
	ids, err := deleteAll(why)
	msg := fmt.Sprintf("netdevsim: %s: deleted %d netdevsim device(s) of this process %v; no new ones will be made", why, len(ids), ids)
	if err != nil {
		msg += fmt.Sprintf("; failed: %v", err)
	}
	fmt.Fprintln(w, msg)
}
