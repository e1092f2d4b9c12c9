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
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// ErrUnavailable is matched by Start's error where the kernel or host cannot
// trace: no tracefs (CONFIG_TRACING), no napi:napi_poll event, or tracefs not
// mounted and not mountable. It matches errors.ErrUnsupported.
var ErrUnavailable = fmt.Errorf("napi:napi_poll tracing unavailable: %w", errors.ErrUnsupported)

// Where tracefs is usually mounted.
var tracefsRoots = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// instancePrefix starts the names of this package's tracefs instances:
// "busypolltest-PID-N".
const instancePrefix = "busypolltest-"

var seq atomic.Int64

// Session records napi:napi_poll events of one device with work > 0.
type Session struct {
	dir     string // the instance's folder
	event   string // its events/napi/napi_poll folder
	mounted string // tracefs mount point this session made, if any
	once    sync.Once
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
// devices of the same name both count) that polled at least one packet, and
// starts recording. Stale instances of processes that are gone are removed
// first. Stop ends it; the instance is removed then.
func Start(dev string) (*Session, error) { return start(dev, "work > 0 && ") }

// StartBusyPolls is Start for the polls of budget budget, also those that
// found nothing: the polls of an epoll busy loop, whose budget is the epoll
// instance's (busy_poll_budget), where the device's own polls use its NAPI
// weight (64).
func StartBusyPolls(dev string, budget int) (*Session, error) {
	return start(dev, fmt.Sprintf("budget == %d && ", budget))
}

func start(dev, cond string) (*Session, error) {
	root, mounted, err := tracefs()
	if err != nil {
		return nil, err
	}
	s := &Session{mounted: mounted}
	ok := false
	defer func() {
		if !ok {
			s.cleanup()
		}
	}()
	removeStale(root)
	if _, err := os.Stat(filepath.Join(root, "events/napi/napi_poll")); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no events/napi/napi_poll (kernel without CONFIG_TRACEPOINTS/CONFIG_EVENT_TRACING?)", ErrUnavailable, root)
	}
	s.dir = filepath.Join(root, "instances", fmt.Sprintf("%s%d-%d", instancePrefix, os.Getpid(), seq.Add(1)))
	if err := os.Mkdir(s.dir, 0o700); err != nil {
		s.dir = ""
		return nil, fmt.Errorf("napitrace: create tracefs instance: %w", err)
	}
	s.event = filepath.Join(s.dir, "events/napi/napi_poll")
	filter := fmt.Sprintf("%sdev_name == \"%s\"", cond, dev)
	if strings.ContainsAny(dev, "\"\\\n") || dev == "" {
		return nil, fmt.Errorf("napitrace: device name %q cannot be used in a trace filter", dev)
	}
	if err := write(filepath.Join(s.event, "filter"), filter); err != nil {
		return nil, err
	}
	if err := write(filepath.Join(s.event, "enable"), "1"); err != nil {
		return nil, err
	}
	ok = true
	return s, nil
}

// Stop stops recording, reads what was recorded and removes the instance.
func (s *Session) Stop() (Polls, error) {
	if err := write(filepath.Join(s.event, "enable"), "0"); err != nil {
		s.cleanup()
		return Polls{}, err
	}
	p, err := s.read()
	if cerr := s.cleanup(); err == nil {
		err = cerr
	}
	return p, err
}

func (s *Session) read() (Polls, error) {
	f, err := os.Open(filepath.Join(s.dir, "trace"))
	if err != nil {
		return Polls{}, fmt.Errorf("napitrace: %w", err)
	}
	defer f.Close()
	p, err := Parse(f)
	if err != nil {
		return Polls{}, fmt.Errorf("napitrace: %s: %w", f.Name(), err)
	}
	return p, nil
}

// cleanup removes the instance and unmounts what Start mounted.
func (s *Session) cleanup() error {
	var err error
	s.once.Do(func() {
		if s.dir != "" {
			if e := unix.Rmdir(s.dir); e != nil && e != unix.ENOENT {
				err = fmt.Errorf("napitrace: remove tracefs instance %s: %w", s.dir, e)
			}
		}
		if s.mounted != "" {
			if e := unix.Unmount(s.mounted, unix.MNT_DETACH); e != nil && err == nil {
				err = fmt.Errorf("napitrace: unmount %s: %w", s.mounted, e)
			}
		}
	})
	return err
}

// tracefs finds a mounted tracefs, or mounts one at /sys/kernel/tracing (the
// kernel's own mount point for it), which the caller unmounts when done.
func tracefs() (root, mounted string, err error) {
	for _, r := range tracefsRoots {
		if _, err := os.Stat(filepath.Join(r, "instances")); err == nil {
			return r, "", nil
		}
	}
	r := tracefsRoots[0]
	if _, err := os.Stat(r); err != nil {
		return "", "", fmt.Errorf("%w: no %s (kernel without CONFIG_TRACING?)", ErrUnavailable, r)
	}
	if err := unix.Mount("nodev", r, "tracefs", 0, ""); err != nil {
		if err == unix.ENODEV {
			return "", "", fmt.Errorf("%w: the kernel has no tracefs (CONFIG_TRACING)", ErrUnavailable)
		}
		return "", "", fmt.Errorf("napitrace: mount tracefs on %s: %w", r, err)
	}
	return r, r, nil
}

// removeStale removes the instances of this package whose process is gone.
func removeStale(root string) {
	entries, err := os.ReadDir(filepath.Join(root, "instances"))
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), instancePrefix)
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(strings.SplitN(rest, "-", 2)[0])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if err := unix.Kill(pid, 0); err == unix.ESRCH {
			_ = unix.Rmdir(filepath.Join(root, "instances", e.Name()))
		}
	}
}

func write(path, s string) error {
	if err := os.WriteFile(path, []byte(s), 0); err != nil {
		return fmt.Errorf("napitrace: write %q to %s: %w", s, path, err)
	}
	return nil
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
