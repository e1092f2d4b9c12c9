// Package napitrace counts who polled a network device's NAPI, from the
// kernel's napi:napi_poll tracepoint: for each task (thread id) the packets
// its NAPI polls returned ("work"). It records in a private tracefs instance
// of its own, so that it neither reads nor disturbs the host's tracing.
//
// The tracepoint (include/trace/events/napi.h) carries the NAPI's address,
// the device name, work and budget, but no NAPI id; the task that polled is
// the event's common_pid. It fires in __napi_poll (softirq and threaded NAPI,
// also threaded busy poll) and in the epoll/socket busy-poll loop.
package napitrace

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrUnavailable is matched by Start's error where the kernel or host cannot
// trace: no tracefs (CONFIG_TRACING), no napi:napi_poll event, or no way to
// mount tracefs privately (a kernel without fsopen, Linux 5.2). It matches
// errors.ErrUnsupported.
var ErrUnavailable = fmt.Errorf("napi:napi_poll tracing unavailable: %w", errors.ErrUnsupported)

// hostTracefs is where the kernel expects tracefs: used as it is where
// tracefs is mounted there, never mounted or unmounted by this package.
const hostTracefs = "/sys/kernel/tracing"

// instancePrefix starts the names of this package's tracefs instances:
// "busypolltest-PID-N".
const instancePrefix = "busypolltest-"

var seq atomic.Int64

// Session records napi:napi_poll events of one device in a tracefs instance
// of its own.
type Session struct {
	root  *os.File // tracefs: the host's mount, or a detached mount of the session's own
	inst  string   // the instance's folder, relative to root
	event string   // its events/napi/napi_poll folder, relative to root
	once  sync.Once
	err   error // of cleanup
}

// Key is one NAPI (the address the trace prints for it, hashed by the
// kernel but the same for one NAPI within a boot) polled by one task.
type Key struct {
	NAPI string
	TID  int
}

// Softirq is the TID under which polls that ran in softirq (or hardirq)
// context are counted: the trace names the task they interrupted, which did
// not do the work.
const Softirq = -1

// Polls is what a session recorded.
type Polls struct {
	// Work is the packets polled, by NAPI and task id.
	Work map[Key]uint64
	// Comm names each task, as the trace shows it.
	Comm map[int]string
	// Events counts the events read.
	Events int
	// Polls counts the events by NAPI and task, also those that polled
	// nothing.
	Polls map[Key]int
	// Lost counts events the kernel dropped (a full buffer).
	Lost uint64
}

// Total is the packets polled by every task, of every NAPI.
func (p Polls) Total() uint64 {
	var n uint64
	for _, w := range p.Work {
		n += w
	}
	return n
}

// NAPIsOf returns the NAPIs that task tid polled packets of.
func (p Polls) NAPIsOf(tid int) []string {
	var out []string
	for k := range p.Work {
		if k.TID == tid {
			out = append(out, k.NAPI)
		}
	}
	sort.Strings(out)
	return out
}

// TaskPolls counts the polls made in task context (not softirq), of any
// NAPI, and the packets they returned.
func (p Polls) TaskPolls() (polls int, work uint64) {
	for k, n := range p.Polls {
		if k.TID != Softirq {
			polls += n
			work += p.Work[k]
		}
	}
	return polls, work
}

// ByTask returns the packets of NAPI napi polled by each task. Another
// device of the same name (in another namespace) has another NAPI, so it
// does not count.
func (p Polls) ByTask(napi string) map[int]uint64 {
	out := map[int]uint64{}
	for k, w := range p.Work {
		if k.NAPI == napi {
			out[k.TID] += w
		}
	}
	return out
}

// Start creates a tracefs instance that records the napi:napi_poll events of
// the device named dev (a name is per network namespace: two namespaces'
// devices of the same name both count, so give the device a name unique on
// the host) that polled at least one packet, and starts recording. Stale
// instances of processes that are gone are removed first. Stop ends it and
// removes the instance; Close does that without reading, and is safe after
// Stop: register it as a cleanup right after Start.
//
// Where tracefs is not mounted at /sys/kernel/tracing, the session uses a
// mount of its own that is attached nowhere (fsopen and fsmount): no path
// of the host changes, another process cannot see or unmount it, and it
// disappears when the session closes it or the process dies.
func Start(dev string) (*Session, error) { return start(dev, "work > 0 && ") }

// StartBusyPolls is Start for the polls of budget budget, also those that
// found nothing: the polls of an epoll busy loop, whose budget is the epoll
// instance's (busy_poll_budget), where the device's own polls use its NAPI
// weight (64).
func StartBusyPolls(dev string, budget int) (*Session, error) {
	return start(dev, fmt.Sprintf("budget == %d && ", budget))
}

func start(dev, cond string) (*Session, error) {
	if strings.ContainsAny(dev, "\"\\\n") || dev == "" {
		return nil, fmt.Errorf("napitrace: device name %q cannot be used in a trace filter", dev)
	}
	root, err := openTracefs()
	if err != nil {
		return nil, err
	}
	s := &Session{root: root}
	ok := false
	defer func() {
		if !ok {
			_ = s.Close()
		}
	}()
	removeStale(root)
	if _, err := s.stat("events/napi/napi_poll"); err == unix.ENOENT {
		return nil, fmt.Errorf("%w: tracefs has no events/napi/napi_poll (kernel without CONFIG_TRACEPOINTS/CONFIG_EVENT_TRACING?)", ErrUnavailable)
	}
	inst := fmt.Sprintf("instances/%s%d-%d", instancePrefix, os.Getpid(), seq.Add(1))
	// Made and registered under the lock, so that CloseAll sees every
	// instance there is and none is made after it.
	live.Lock()
	if live.closed {
		live.Unlock()
		return nil, ErrClosed
	}
	if err := unix.Mkdirat(int(root.Fd()), inst, 0o700); err != nil {
		live.Unlock()
		return nil, fmt.Errorf("napitrace: create tracefs instance %s: %w", inst, err)
	}
	s.inst = inst
	live.sessions[s] = struct{}{}
	live.Unlock()
	s.event = inst + "/events/napi/napi_poll"
	if err := s.write(s.event+"/filter", fmt.Sprintf("%sdev_name == \"%s\"", cond, dev)); err != nil {
		return nil, err
	}
	if err := s.write(s.event+"/enable", "1"); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// Stop stops recording, reads what was recorded and removes the instance.
func (s *Session) Stop() (Polls, error) {
	if err := s.write(s.event+"/enable", "0"); err != nil {
		_ = s.Close()
		return Polls{}, err
	}
	p, err := s.read()
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	return p, err
}

// Close removes the instance, recording or not, and lets go of tracefs. It
// does its work once; later calls return the first one's error.
func (s *Session) Close() error {
	s.once.Do(func() {
		live.Lock()
		delete(live.sessions, s)
		live.Unlock()
		if s.inst != "" {
			// Removing an instance also stops its events.
			if e := unix.Unlinkat(int(s.root.Fd()), s.inst, unix.AT_REMOVEDIR); e != nil && e != unix.ENOENT {
				s.err = fmt.Errorf("napitrace: remove tracefs instance %s: %w", s.inst, e)
			}
		}
		if e := s.root.Close(); e != nil && s.err == nil {
			s.err = fmt.Errorf("napitrace: %w", e)
		}
	})
	return s.err
}

// live holds the sessions whose instance exists, for CloseAll.
var live = struct {
	sync.Mutex
	sessions map[*Session]struct{}
	closed   bool // CloseAll ran
}{sessions: map[*Session]struct{}{}}

// ErrClosed is Start's error after CloseAll.
var ErrClosed = errors.New("napitrace: no new trace sessions: this process closed them all because it is about to end")

// CloseAll closes every session of this process that is not closed yet,
// and makes later Starts fail with ErrClosed: for a process about to end
// without its cleanup (a signal, a test binary's timeout), since an
// instance outlives the process that made it. It returns the sessions'
// errors.
func CloseAll() error {
	live.Lock()
	live.closed = true
	ss := make([]*Session, 0, len(live.sessions))
	for s := range live.sessions {
		ss = append(ss, s)
	}
	live.Unlock()
	var errs []error
	for _, s := range ss {
		errs = append(errs, s.Close())
	}
	return errors.Join(errs...)
}

func (s *Session) read() (Polls, error) {
	f, err := s.open(s.inst+"/trace", unix.O_RDONLY)
	if err != nil {
		return Polls{}, fmt.Errorf("napitrace: %w", err)
	}
	defer f.Close()
	p, err := Parse(f)
	if err != nil {
		return Polls{}, fmt.Errorf("napitrace: %s: %w", s.inst, err)
	}
	return p, nil
}

func (s *Session) open(rel string, flags int) (*os.File, error) {
	return openAt(s.root, rel, flags)
}

func (s *Session) stat(rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := unix.Fstatat(int(s.root.Fd()), rel, &st, 0)
	return st, err
}

func (s *Session) write(rel, v string) error {
	f, err := s.open(rel, unix.O_WRONLY|unix.O_TRUNC)
	if err == nil {
		_, err = f.WriteString(v)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("napitrace: write %q to %s: %w", v, rel, err)
	}
	return nil
}

func openAt(root *os.File, rel string, flags int) (*os.File, error) {
	fd, err := unix.Openat(int(root.Fd()), rel, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: rel, Err: err}
	}
	return os.NewFile(uintptr(fd), rel), nil
}

// openTracefs returns the root folder of tracefs: the host's mount at
// /sys/kernel/tracing where there is one (this package never mounts or
// unmounts anything there), else a new mount of tracefs attached to no
// path, which closing the folder releases. A second mount of tracefs is the
// same file system (one superblock), so its instances are the host's too:
// their names are unique per process, and removeStale clears those of
// dead processes whichever mount they were made through.
func openTracefs() (*os.File, error) {
	var sfs unix.Statfs_t
	if err := unix.Statfs(hostTracefs, &sfs); err == nil && sfs.Type == unix.TRACEFS_MAGIC {
		f, err := os.OpenFile(hostTracefs, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return nil, fmt.Errorf("napitrace: %w", err)
		}
		return f, nil
	}
	fsfd, err := unix.Fsopen("tracefs", unix.FSOPEN_CLOEXEC)
	switch {
	case err == unix.ENODEV:
		return nil, fmt.Errorf("%w: the kernel has no tracefs (CONFIG_TRACING)", ErrUnavailable)
	case err == unix.ENOSYS:
		return nil, fmt.Errorf("%w: tracefs is not mounted at %s and the kernel has no fsopen (Linux 5.2) to mount it privately", ErrUnavailable, hostTracefs)
	case err != nil:
		return nil, fmt.Errorf("napitrace: fsopen tracefs: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return nil, fmt.Errorf("napitrace: create a tracefs mount: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV|unix.MOUNT_ATTR_NOEXEC)
	if err != nil {
		return nil, fmt.Errorf("napitrace: fsmount tracefs: %w", err)
	}
	return os.NewFile(uintptr(mfd), "tracefs"), nil
}

// removeStale removes the instances of this package whose process is gone.
func removeStale(root *os.File) {
	for _, name := range instanceNames(root) {
		pid, _ := instancePID(name)
		if pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); err == unix.ESRCH {
			_ = unix.Unlinkat(int(root.Fd()), "instances/"+name, unix.AT_REMOVEDIR)
		}
	}
}

// instanceNames lists the instances of this package.
func instanceNames(root *os.File) []string {
	d, err := openAt(root, "instances", unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return nil
	}
	defer d.Close()
	names, _ := d.Readdirnames(-1)
	var out []string
	for _, n := range names {
		if _, ok := instancePID(n); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// instancePID is the process id in an instance name of this package.
func instancePID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, instancePrefix)
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
	return pid, err == nil
}

// Instances returns the names of the tracefs instances this package made
// for process pid and that still exist ("busypolltest-PID-N"): none once
// every session of pid is closed.
func Instances(pid int) ([]string, error) {
	root, err := openTracefs()
	if err != nil {
		return nil, err
	}
	defer root.Close()
	var out []string
	for _, n := range instanceNames(root) {
		if p, _ := instancePID(n); p == pid {
			out = append(out, n)
		}
	}
	return out, nil
}

// eventLine matches a napi_poll line of a trace file:
//
//	napi/bpt-sv-8193-412     [001] .....  123.456789: napi_poll: napi poll on napi struct 00000000c0ffee00 for device bpt-sv work 16 budget 64
//
// The task's name may hold spaces and dashes; its id is the number before
// the CPU field. The flags after it say the context: their third character
// is 's' in softirq, 'h' or 'H' in hardirq ("irqs-off/BH-disabled,
// need-resched, hardirq/softirq, preempt-depth, migrate-disable").
var eventLine = regexp.MustCompile(`^\s*(.*)-(\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[\d+\]\s+(\S+)\s.*\bnapi_poll: napi poll on napi struct (\S+) for device \S+ work (-?\d+) budget (-?\d+)`)

// lostLine matches the trace's note about dropped events.
var lostLine = regexp.MustCompile(`^#\s*entries-in-buffer/entries-written:\s*(\d+)/(\d+)`)

// Parse reads a tracefs trace file of napi_poll events.
func Parse(r io.Reader) (Polls, error) {
	p := Polls{Work: map[Key]uint64{}, Comm: map[int]string{}, Polls: map[Key]int{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			if m := lostLine.FindStringSubmatch(line); m != nil {
				in, _ := strconv.ParseUint(m[1], 10, 64)
				written, _ := strconv.ParseUint(m[2], 10, 64)
				if written > in {
					p.Lost = written - in
				}
			}
			continue
		}
		if strings.Contains(line, "LOST") && strings.Contains(line, "EVENTS") {
			p.Lost++ // "CPU:1 [LOST 12 EVENTS]": at least one
			continue
		}
		m := eventLine.FindStringSubmatch(line)
		if m == nil {
			if strings.TrimSpace(line) == "" {
				continue
			}
			return p, fmt.Errorf("unexpected trace line %q", line)
		}
		pid, err := strconv.Atoi(m[2])
		if err != nil {
			return p, fmt.Errorf("trace line %q: task id: %w", line, err)
		}
		work, err := strconv.ParseInt(m[5], 10, 64)
		if err != nil {
			return p, fmt.Errorf("trace line %q: work: %w", line, err)
		}
		p.Events++
		tid := pid
		if flags := m[3]; len(flags) >= 3 && strings.ContainsRune("sShHzZ", rune(flags[2])) {
			tid = Softirq
		}
		k := Key{NAPI: m[4], TID: tid}
		p.Polls[k]++
		p.Comm[tid] = strings.TrimSpace(m[1])
		if tid == Softirq {
			p.Comm[tid] = "softirq"
		}
		if work > 0 {
			p.Work[k] += uint64(work)
		}
	}
	return p, sc.Err()
}
