package netdevsim

// The ownership record: netdevsim devices outlive the process that made them
// (a SIGKILL runs no cleanup at all), so every device is written down on disk
// before the kernel is asked to create it, and the next process that reaps
// (ReapOrphans) deletes the devices of owners that are gone.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// DefaultRecordDir is where a Bus keeps its ownership records unless
// SetRecordDir says otherwise. /run is a tmpfs: the records go away at
// reboot, as the devices do.
const DefaultRecordDir = "/run/busypolltest/netdevsim"

// recordLock is the lock file of a record folder: creators hold it shared
// from recording an id until new_device has answered, ReapOrphans holds it
// exclusive, so that reapers take turns and never run between a creator's
// record and its write. (The reaper does not depend on it: before deleting
// a device it reads the records again, and a live owner's record lists an
// id before the device exists. A kernel without file locking, ENOSYS, goes
// without.)
const recordLock = ".lock"

// owner identifies a process across pid reuse: its pid and its start time,
// field 22 of /proc/PID/stat (clock ticks after boot).
type owner struct {
	pid   int
	start uint64
}

// name is the record file's name, PID-START.json.
func (o owner) name() string { return fmt.Sprintf("%d-%d.json", o.pid, o.start) }

// String names the owner: its pid and start time.
func (o owner) String() string { return fmt.Sprintf("pid %d (started at tick %d)", o.pid, o.start) }

// parseRecordName parses PID-START.json; tmp reports the temporary name
// .PID-START.tmp of a record being written.
func parseRecordName(name string) (o owner, tmp, ok bool) {
	base, found := strings.CutSuffix(name, ".json")
	if !found {
		base, found = strings.CutSuffix(name, ".tmp")
		if !found {
			return owner{}, false, false
		}
		if base, found = strings.CutPrefix(base, "."); !found {
			return owner{}, false, false
		}
		tmp = true
	}
	p, s, found := strings.Cut(base, "-")
	if !found {
		return owner{}, false, false
	}
	pid, err1 := strconv.Atoi(p)
	start, err2 := strconv.ParseUint(s, 10, 64)
	if err1 != nil || err2 != nil || pid <= 0 || strconv.Itoa(pid) != p {
		return owner{}, false, false
	}
	return owner{pid: pid, start: start}, tmp, true
}

// record is the content of a record file.
type record struct {
	PID     int           `json:"pid"`
	Start   uint64        `json:"start"`
	Program string        `json:"program,omitempty"` // for people reading the folder
	Devices []recordEntry `json:"devices"`
}

// recordEntry is one device: its bus root and id.
type recordEntry struct {
	Bus string `json:"bus"`
	ID  int    `json:"id"`
}

// procStat is what /proc/PID/stat says about a process: its start time and
// its state (R, S, D, Z, X, ...).
type procStat struct {
	start uint64
	state byte
}

// parseProcStat parses the content of /proc/PID/stat. The command name
// (field 2) is in parentheses and may itself hold spaces and parentheses, so
// the fields are counted from the last ')'.
func parseProcStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("no ')' after the command name in %q", b)
	}
	// Fields after the name start with field 3, the state; field 22 is
	// the start time.
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 || len(f[0]) != 1 {
		return procStat{}, fmt.Errorf("%d fields after the command name, want at least 20, in %q", len(f), b)
	}
	start, err := strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return procStat{}, fmt.Errorf("start time (field 22) %q: %w", f[19], err)
	}
	return procStat{start: start, state: f[0][0]}, nil
}

// readProcStat reads proc/PID/stat ("self" for pid 0).
func readProcStat(proc string, pid int) (procStat, error) {
	p := "self"
	if pid != 0 {
		p = strconv.Itoa(pid)
	}
	b, err := os.ReadFile(filepath.Join(proc, p, "stat"))
	if err != nil {
		return procStat{}, err
	}
	st, err := parseProcStat(b)
	if err != nil {
		return procStat{}, fmt.Errorf("%s: %w", filepath.Join(proc, p, "stat"), err)
	}
	return st, nil
}

var selfOwner = sync.OnceValues(func() (owner, error) {
	st, err := readProcStat("/proc", 0)
	if err != nil {
		return owner{}, fmt.Errorf("netdevsim: read this process's start time: %w", err)
	}
	return owner{pid: os.Getpid(), start: st.start}, nil
})

// gone reports whether the owner o no longer runs, and why; an error means
// it cannot be told, and the owner counts as alive.
func (b *Bus) gone(o owner) (bool, string, error) {
	st, err := b.procStat(o.pid)
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
		return true, "no such process", nil
	}
	if err != nil {
		return false, "", err
	}
	switch {
	case st.start != o.start:
		return true, fmt.Sprintf("pid %d now belongs to a process started at tick %d", o.pid, st.start), nil
	case st.state == 'Z' || st.state == 'X':
		return true, fmt.Sprintf("exited (state %c: not yet reaped by its parent)", st.state), nil
	}
	return false, "", nil
}

// ledger is this process's record file in one folder. All Buses of the
// process that share the folder share it.
type ledger struct {
	dir string
	who owner

	mu      sync.Mutex
	entries []recordEntry
}

var ledgers = struct {
	sync.Mutex
	m map[string]*ledger
}{m: map[string]*ledger{}}

// ledger returns the record of b's process in b's folder, nil when records
// are off.
func (b *Bus) ledger() (*ledger, error) {
	if b.records == "" {
		return nil, nil
	}
	who, err := b.self()
	if err != nil {
		return nil, err
	}
	key := b.records + "\x00" + who.name()
	ledgers.Lock()
	defer ledgers.Unlock()
	l := ledgers.m[key]
	if l == nil {
		l = &ledger{dir: b.records, who: who}
		ledgers.m[key] = l
	}
	return l, nil
}

// add records device id of bus root, durably, before it is created.
func (l *ledger) add(root string, id int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := recordEntry{Bus: root, ID: id}
	if slices.Contains(l.entries, e) {
		return nil
	}
	next := append(slices.Clone(l.entries), e)
	if err := writeRecord(l.dir, l.who, next); err != nil {
		return err
	}
	l.entries = next
	return nil
}

// remove takes device id of bus root out of the record, after it was
// deleted or never created. The file goes away with its last device.
func (l *ledger) remove(root string, id int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := recordEntry{Bus: root, ID: id}
	i := slices.Index(l.entries, e)
	if i < 0 {
		return nil
	}
	next := slices.Delete(slices.Clone(l.entries), i, i+1)
	if err := writeRecord(l.dir, l.who, next); err != nil {
		return err
	}
	l.entries = next
	return nil
}

// writeRecord replaces the record of o in dir with entries, atomically
// (a temporary file, fsync'd, renamed over the old one, and the folder
// fsync'd), or removes it when entries is empty.
func writeRecord(dir string, o owner, entries []recordEntry) error {
	final := filepath.Join(dir, o.name())
	if len(entries) == 0 {
		if err := os.Remove(final); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("netdevsim: remove record: %w", err)
		}
		return syncDir(dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("netdevsim: record folder: %w", err)
	}
	prog, _ := os.Executable()
	b, err := json.Marshal(record{PID: o.pid, Start: o.start, Program: prog, Devices: entries})
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".%d-%d.tmp", o.pid, o.start))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("netdevsim: write record: %w", err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("netdevsim: write record %s: %w", final, err)
	}
	return syncDir(dir)
}

func syncDir(dir string) error {
	f, err := os.Open(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netdevsim: record folder: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("netdevsim: fsync record folder %s: %w", dir, err)
	}
	return nil
}

// lockRecords takes the folder's lock file, shared or exclusive, creating
// folder and file if create is set. It returns a function that releases it,
// or nil and no error when the folder does not exist and create is not set.
func lockRecords(dir string, how int, create bool) (func(), error) {
	if create {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("netdevsim: record folder: %w", err)
		}
	}
	path := filepath.Join(dir, recordLock)
	flags := unix.O_RDWR | unix.O_CLOEXEC
	if create {
		flags |= unix.O_CREAT
	}
	fd, err := unix.Open(path, flags, 0o644)
	if err == unix.ENOENT && !create {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("netdevsim: open %s: %w", path, err)
	}
	for {
		err = unix.Flock(fd, how)
		if err != unix.EINTR {
			break
		}
	}
	if err == unix.ENOSYS {
		// A kernel without CONFIG_FILE_LOCKING: ReapOrphans looks at the
		// records again before each deletion, which is enough.
		unix.Close(fd)
		return func() {}, nil
	}
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netdevsim: lock %s: %w", path, err)
	}
	// Closing the descriptor releases the lock.
	return func() { unix.Close(fd) }, nil
}

// Orphan is what ReapOrphans did about one record of an owner that is gone.
type Orphan struct {
	// PID and Start identify the owner.
	PID   int
	Start uint64
	// Why says how the owner is known to be gone.
	Why string
	// Record is the record file.
	Record string
	// Deleted lists the devices deleted.
	Deleted []int
	// Gone lists recorded devices that were not on the bus (never created,
	// or deleted before their owner could update its record).
	Gone []int
	// Claimed lists recorded ids that a live owner has recorded since:
	// the dead owner's device is not there, and the live one's is left
	// alone.
	Claimed []int
	// Kept lists devices whose deletion failed; they stay in the record
	// for the next run. The error returned by ReapOrphans says why.
	Kept []int
	// Other counts devices of other bus roots, left in the record for a
	// Bus of that root.
	Other int
	// Removed reports whether the record file (or an unfinished temporary
	// one) was removed.
	Removed bool
}

// String describes o in one line, for a test log.
func (o Orphan) String() string {
	s := fmt.Sprintf("netdevsim: owner pid %d (started at tick %d) is gone (%s):", o.PID, o.Start, o.Why)
	if len(o.Deleted) > 0 {
		s += fmt.Sprintf(" deleted its devices %v;", o.Deleted)
	}
	if len(o.Gone) > 0 {
		s += fmt.Sprintf(" recorded devices %v were not on the bus;", o.Gone)
	}
	if len(o.Claimed) > 0 {
		s += fmt.Sprintf(" ids %v are recorded by a live owner now, left alone;", o.Claimed)
	}
	if len(o.Kept) > 0 {
		s += fmt.Sprintf(" deleting %v failed, kept in the record;", o.Kept)
	}
	if o.Other > 0 {
		s += fmt.Sprintf(" %d device(s) of other buses kept in the record;", o.Other)
	}
	if o.Removed {
		s += " removed " + o.Record
	} else {
		s += " kept " + o.Record
	}
	return s
}

// ReapOrphans deletes the devices that processes which are gone recorded
// for this bus (see NewDevice) and removes their records, and returns what
// it did, for the log. An owner is gone when its pid does not run, runs a
// process with another start time (the pid was reused), or is a zombie.
//
// It never deletes a device that no dead owner recorded: a device made by
// hand, or by a program not using this package, is never touched, nor is
// an id that a live owner has recorded. Records of live owners, and
// devices of other bus roots, are left as they are. A record file that
// cannot be parsed is left in place and reported in the error, with its
// name. Call it before creating devices; it is cheap when there is
// nothing to do.
func (b *Bus) ReapOrphans() ([]Orphan, error) {
	if b.records == "" {
		return nil, nil
	}
	unlock, err := lockRecords(b.records, unix.LOCK_EX, false)
	if err != nil || unlock == nil {
		// No lock file: no process ever recorded a device here.
		return nil, err
	}
	defer unlock()
	sc, err := b.scanRecords()
	if err != nil {
		return nil, err
	}
	errs := sc.errs
	var out []Orphan
	for _, d := range sc.dead {
		orph := Orphan{PID: d.o.pid, Start: d.o.start, Why: sc.why[d.o], Record: d.path}
		var left []recordEntry
		for _, e := range d.rec.Devices {
			if e.Bus != b.root {
				orph.Other++
				left = append(left, e)
				continue
			}
			if _, claimed := sc.live[e]; claimed {
				orph.Claimed = append(orph.Claimed, e.ID)
				continue
			}
			if _, err := os.Stat(b.DevicePath(e.ID)); errors.Is(err, fs.ErrNotExist) {
				orph.Gone = append(orph.Gone, e.ID)
				continue
			}
			// The id is on the bus. If a live owner made it, its record
			// listed the id before the device existed, so a fresh look at
			// the records now sees it (this also holds where the kernel
			// has no file locking).
			if now, err := b.scanRecords(); err == nil {
				if _, claimed := now.live[e]; claimed {
					orph.Claimed = append(orph.Claimed, e.ID)
					continue
				}
			}
			existed, err := b.deleteDevice(e.ID)
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("netdevsim: device %d of gone owner %s: %w", e.ID, d.o, err))
				orph.Kept = append(orph.Kept, e.ID)
				left = append(left, e)
			case existed:
				orph.Deleted = append(orph.Deleted, e.ID)
			default:
				orph.Gone = append(orph.Gone, e.ID)
			}
		}
		if len(left) == len(d.rec.Devices) && len(left) > 0 {
			// Nothing changed.
		} else if err := writeRecord(b.records, d.o, left); err != nil {
			errs = append(errs, err)
		} else {
			orph.Removed = len(left) == 0
		}
		out = append(out, orph)
	}
	for _, tf := range sc.temps {
		orph := Orphan{PID: tf.o.pid, Start: tf.o.start, Why: sc.why[tf.o] + "; an unfinished record write", Record: tf.path}
		if err := os.Remove(tf.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, fmt.Errorf("netdevsim: remove %s: %w", tf.path, err))
		} else {
			orph.Removed = true
		}
		out = append(out, orph)
	}
	if err := syncDir(b.records); err != nil {
		errs = append(errs, err)
	}
	return out, errors.Join(errs...)
}

// foundRecord is a record file found by scanRecords.
type foundRecord struct {
	o    owner
	path string
	rec  record
}

// recordScan is what the record folder says.
type recordScan struct {
	dead  []foundRecord         // records of owners that are gone
	temps []foundRecord         // unfinished temporary files of owners that are gone
	why   map[owner]string      // how each gone owner is known to be gone
	live  map[recordEntry]owner // devices recorded by owners that run (or may)
	errs  []error               // records left alone, and why
}

// scanRecords reads every record of the folder and sorts them by whether
// their owner is gone.
func (b *Bus) scanRecords() (recordScan, error) {
	sc := recordScan{why: map[owner]string{}, live: map[recordEntry]owner{}}
	names, err := os.ReadDir(b.records)
	if err != nil {
		return sc, fmt.Errorf("netdevsim: read the record folder: %w", err)
	}
	for _, de := range names {
		o, tmp, ok := parseRecordName(de.Name())
		if !ok {
			continue
		}
		path := filepath.Join(b.records, de.Name())
		isGone, reason, err := b.gone(o)
		if err != nil {
			sc.errs = append(sc.errs, fmt.Errorf("netdevsim: record %s: cannot tell whether its owner runs, left alone: %w", path, err))
			if !tmp {
				// Its devices may be alive: protect them.
				if rec, err := readRecord(path, o); err == nil {
					for _, e := range rec.Devices {
						sc.live[e] = o
					}
				}
			}
			continue
		}
		if tmp {
			if isGone {
				sc.why[o] = reason
				sc.temps = append(sc.temps, foundRecord{o: o, path: path})
			}
			continue
		}
		rec, err := readRecord(path, o)
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed meanwhile (its owner deleted its last device)
		}
		if err != nil {
			sc.errs = append(sc.errs, fmt.Errorf("netdevsim: record %s of %s is unreadable, left in place (check the bus for its devices and remove it by hand): %w", path, o, err))
			continue
		}
		if !isGone {
			for _, e := range rec.Devices {
				sc.live[e] = o
			}
			continue
		}
		sc.why[o] = reason
		sc.dead = append(sc.dead, foundRecord{o: o, path: path, rec: rec})
	}
	return sc, nil
}

// readRecord reads and checks the record file of o.
func readRecord(path string, o owner) (record, error) {
	var rec record
	b, err := os.ReadFile(path)
	if err != nil {
		return rec, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&rec); err != nil {
		return rec, fmt.Errorf("parse: %w", err)
	}
	if rec.PID != o.pid || rec.Start != o.start {
		return rec, fmt.Errorf("it names pid %d started at tick %d, its file name %s", rec.PID, rec.Start, o)
	}
	for _, e := range rec.Devices {
		if e.ID < 0 || e.ID > MaxID || e.Bus == "" {
			return rec, fmt.Errorf("bad device entry %+v", e)
		}
	}
	return rec, nil
}
