package netdevsim

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Limits of NewDevice.
const (
	// MaxID is the largest device id the kernel accepts (INT_MAX).
	MaxID = 1<<31 - 1
	// MinRandomID is the smallest id NewDevice picks. Ids below it are left
	// to people and scripts that choose their own (the kernel selftests use
	// ids under 1024).
	MinRandomID = 1 << 20
	// MaxPorts is the largest port count NewDevice accepts. netdevsim
	// numbers its VF ports from 128, so more physical ports make no sense.
	MaxPorts = 128
	// MaxQueues is the largest queue count per port NewDevice accepts. Each
	// queue has its own NAPI instance and page pool in netdevsim.
	MaxQueues = 256
	// IDAttempts is how many random ids NewDevice tries before giving up
	// when the kernel says they are taken (ENOSPC).
	IDAttempts = 16
	// DefaultWait bounds NewDevice's wait for the netdevs when ctx has no
	// deadline.
	DefaultWait = 10 * time.Second
)

// Port is one netdev of a device.
type Port struct {
	// Index is the port's position on its device, 0 to ports-1 in the
	// kernel's creation order (ifindex order).
	Index int
	// Name is the netdev's name when NewDevice found it. In a namespace
	// where udev runs (the initial one) it may be renamed afterwards;
	// IfIndex stays valid.
	Name string
	// IfIndex is the netdev's ifindex inside the device's namespace.
	IfIndex int
}

// Device is a netdevsim device created by NewDevice. Delete it when done,
// for example with t.Cleanup(func() { dev.Delete() }).
type Device struct {
	// ID is the device's id on the bus (its folder is devices/netdevsimID).
	ID int
	// NS is the namespace the device's netdevs were created in (nil: the
	// namespace of the thread that called NewDevice).
	NS Namespace
	// Ports are the device's netdevs, sorted by Index.
	Ports []Port

	bus     *Bus
	mu      sync.Mutex
	deleted bool
}

// Endpoint returns port i of the device as a link endpoint. It panics if i
// is out of range, like an index expression.
func (d *Device) Endpoint(i int) Endpoint {
	return Endpoint{NS: d.NS, IfIndex: d.Ports[i].IfIndex}
}

// NewDevice creates a netdevsim device with the given number of ports and
// queues per port, whose netdevs are born in ns (nil: the calling thread's
// namespace). It picks a random free id itself, retrying when the kernel
// says an id is taken, and waits until all netdevs are visible through
// rtnetlink in ns, at most until ctx's deadline (DefaultWait if it has
// none). If it fails after the kernel created the device, it deletes it.
//
// Before each new_device write, the id is added to this process's
// ownership record in the Bus's record folder (SetRecordDir), fsync'd, so
// that a later ReapOrphans deletes the device if this process dies without
// deleting it; Delete takes it out again. From before that write until
// Delete, the device is also in the process's registry (Live, DeleteAll).
// After DeleteAll, NewDevice fails with ErrClosed.
func (b *Bus) NewDevice(ctx context.Context, ns Namespace, ports, queues int) (*Device, error) {
	if ports < 1 || ports > MaxPorts {
		return nil, fmt.Errorf("netdevsim: port count %d out of range: must be 1..%d", ports, MaxPorts)
	}
	if queues < 1 || queues > MaxQueues {
		return nil, fmt.Errorf("netdevsim: queue count %d out of range: must be 1..%d", queues, MaxQueues)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWait)
		defer cancel()
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("netdevsim: create device: %w", err)
	}

	var errs []error
	for range IDAttempts {
		d := &Device{ID: b.randID(), NS: ns, bus: b}
		err := b.create(d, ports, queues)
		if errors.Is(err, unix.ENOSPC) {
			errs = append(errs, err)
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := d.wait(ctx, ports, queues); err != nil {
			if derr := d.Delete(); derr != nil {
				err = errors.Join(err, fmt.Errorf("netdevsim: and deleting the half-made device failed, it is left on the bus: %w", derr))
			}
			return nil, err
		}
		return d, nil
	}
	return nil, fmt.Errorf("netdevsim: no free device id after %d random tries: %w", IDAttempts, errors.Join(errs...))
}

// create records d, writes new_device for it and, if that did not create
// it, takes it out of the record again. From before the record until after
// the deletion, d is in the registry that DeleteAll empties; d.mu is held
// throughout create, so that DeleteAll waits for the write's outcome.
func (b *Bus) create(d *Device, ports, queues int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := register(d); err != nil {
		d.deleted = true
		return err
	}
	created := false
	defer func() {
		if !created {
			d.deleted = true
			unregister(d)
		}
	}()
	l, err := b.ledger()
	if err != nil {
		return err
	}
	if l != nil {
		unlock, err := lockRecords(l.dir, unix.LOCK_SH, true)
		if err != nil {
			return err
		}
		defer unlock()
		if err := l.add(b.root, d.ID); err != nil {
			return fmt.Errorf("netdevsim: record device %d before creating it: %w", d.ID, err)
		}
	}
	err = b.write(d.NS, fileNew, fmt.Sprintf("%d %d %d", d.ID, ports, queues))
	if err == nil {
		created = true
		return nil
	}
	// The kernel made no device (ENOSPC: the id is someone else's, which
	// must not stay in this record).
	if l != nil {
		if rerr := l.remove(b.root, d.ID); rerr != nil {
			err = errors.Join(err, fmt.Errorf("netdevsim: and taking id %d out of the record failed: %w", d.ID, rerr))
		}
	}
	return err
}

// wait polls rtnetlink in the device's namespace until all its netdevs are
// there, then fills in d.Ports.
func (d *Device) wait(ctx context.Context, ports, queues int) error {
	delay := time.Millisecond
	for {
		d.mu.Lock()
		deleted := d.deleted
		d.mu.Unlock()
		if deleted {
			// DeleteAll took it while it was coming up.
			return fmt.Errorf("netdevsim: device %d was deleted while its netdevs were awaited: %w", d.ID, ErrClosed)
		}
		devs, err := d.bus.netdevs(d.NS, d.ID)
		if err != nil {
			return fmt.Errorf("netdevsim: find the netdevs of device %d: %w", d.ID, err)
		}
		if len(devs) == ports {
			for _, nd := range devs {
				if nd.rxQueues != 0 && nd.rxQueues != queues {
					return fmt.Errorf("netdevsim: device %d: netdev %s has %d rx queues, asked for %d: this kernel's netdevsim ignores the QUEUES field of new_device",
						d.ID, nd.Name, nd.rxQueues, queues)
				}
				d.Ports = append(d.Ports, nd.Port)
			}
			return nil
		}
		if len(devs) > ports {
			return fmt.Errorf("netdevsim: device %d has %d netdevs, asked for %d", d.ID, len(devs), ports)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			hint := ""
			if len(devs) == 0 {
				hint = " (a kernel older than 5.16 does not report IFLA_PARENT_DEV_NAME, by which they are found)"
			}
			return fmt.Errorf("netdevsim: device %d: %d of %d netdevs appeared in its namespace before the wait ended%s: %w",
				d.ID, len(devs), ports, hint, ctx.Err())
		case <-t.C:
		}
		delay = min(2*delay, 50*time.Millisecond)
	}
}

// Delete removes the device from the bus and with it its netdevs. It is
// idempotent: after one successful call, later calls do nothing, and a
// device the kernel no longer knows (ENOENT) counts as deleted. It does not
// depend on the calling thread's namespace, so it is safe in t.Cleanup.
func (d *Device) Delete() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.deleted {
		return nil
	}
	if err := d.bus.DeleteDevice(d.ID); err != nil {
		return err
	}
	d.deleted = true
	unregister(d)
	l, err := d.bus.ledger()
	if err == nil && l != nil {
		err = l.remove(d.bus.root, d.ID)
	}
	if err != nil {
		return fmt.Errorf("netdevsim: device %d is deleted, but its ownership record is not updated: %w", d.ID, err)
	}
	return nil
}

// DeleteDevice removes the device id from the bus, whoever created it (for
// example one left behind by a killed process). An id the kernel does not
// know (ENOENT) counts as deleted. It does not touch the ownership records.
func (b *Bus) DeleteDevice(id int) error {
	_, err := b.deleteDevice(id)
	return err
}

// deleteDevice is DeleteDevice, reporting whether the kernel knew the id.
func (b *Bus) deleteDevice(id int) (existed bool, err error) {
	err = b.write(nil, fileDel, strconv.Itoa(id))
	var e *Error
	if errors.As(err, &e) && e.Op == "write" && errors.Is(err, unix.ENOENT) {
		return false, nil
	}
	return err == nil, err
}

// randomID picks an id in [MinRandomID, MaxID].
func randomID() int {
	return MinRandomID + rand.IntN(MaxID-MinRandomID+1)
}
