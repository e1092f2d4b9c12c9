// Package lifecycle holds the tests that run the root test binary in child
// processes and check what a run leaves behind when it is interrupted,
// fails, is killed or runs beside another: the child-process harness and
// the bodies of TestBusyPollLeavesNothing, TestBusyPollFailedRunLeavesNoTrace,
// TestBusyPollConcurrentNetdevsim, TestBusyPollConcurrentTraceIsolated and
// TestBusyPollKilledRunIsReaped, which the root package calls by those
// names. Each re-runs os.Args[0], so it works only from that binary.
package lifecycle

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll/drvenv"
	"github.com/netdev-go/busypolltest/busypoll/link"
	"github.com/netdev-go/busypolltest/busypoll/scenario"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/netdev-go/busypolltest/napi/napitrace"
	"github.com/netdev-go/busypolltest/netdevsim"
)

// LeavesNothing is TestBusyPollLeavesNothing: it runs TestBusyPoll's
// netdevsim setup in a child process, stops it there with SIGINT, SIGTERM or
// an expiring -test.timeout (none of which runs t.Cleanup), and checks that
// the child's netdevsim devices and its ownership record are gone all the
// same.
func LeavesNothing(t *testing.T) {
	requireNetdevsimParent(t)
	tests := []struct {
		name    string
		args    []string
		signal  os.Signal // nil: wait for -test.timeout
		wantErr string
	}{
		{"SIGINT", nil, syscall.SIGINT, "interrupted by interrupt"},
		{"SIGTERM", nil, syscall.SIGTERM, "interrupted by terminated"},
		{"SIGHUP", nil, syscall.SIGHUP, "interrupted by hangup"},
		// The go command's kill of a test binary that outlived -timeout:
		// the devices go, and the goroutine dump still comes.
		{"SIGQUIT", nil, syscall.SIGQUIT, "goroutine dump follows\nSIGQUIT: quit"},
		// The watchdog fires a tenth before: 2.7 s, five times what the
		// setup takes under emulation (about 0.5 s).
		{"test timeout", []string{"-test.timeout=3s"}, nil, "-test.timeout is about to expire"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startChild(t, true, append([]string{"-test.run=^TestBusyPoll$/^netdevsim$/^plain$"}, tt.args...)...)
			ids := c.holding(t)
			if tt.signal != nil {
				require.NoError(t, c.cmd.Process.Signal(tt.signal))
			}
			err := c.wait()
			assert.Error(t, err, "the child must not pass")
			assert.Contains(t, c.stderr.String(), tt.wantErr)
			for _, id := range ids {
				_, err := os.Stat(netdevsim.Default().DevicePath(id))
				assert.ErrorIs(t, err, os.ErrNotExist, "netdevsim%d of the stopped child is still on the bus", id)
			}
			assert.Empty(t, recordsOf(t, c.cmd.Process.Pid), "the stopped child's ownership record is left")
		})
	}
}

// hostTracefsMounted tells whether anything is mounted at
// /sys/kernel/tracing in this process's mount namespace.
func hostTracefsMounted(t *testing.T) bool {
	t.Helper()
	return slices.Contains(testenv.MountPoints(t, ""), "/sys/kernel/tracing")
}

// FailedRunLeavesNoTrace is TestBusyPollFailedRunLeavesNoTrace: it runs
// TestBusyPoll/veth/plain in a child process that fails right after a
// napi:napi_poll session starts (a failing require, which ends the subtest at
// once), and checks, while the child is still alive after its tests (so no
// concurrent run can reap a leftover first), that it left no tracefs instance
// and mounted nothing at /sys/kernel/tracing. Its second case leaves the
// session out of the cleanup and must find the instance left: the check sees
// a leak.
func FailedRunLeavesNoTrace(t *testing.T) {
	testenv.NeedRoot(t, "runs TestBusyPoll in a child: network namespaces, napi-set, tracefs")
	if os.Getenv(scenario.FailAfterTraceEnv) != "" || os.Getenv(drvenv.HoldEnv) != "" {
		t.Skip("this is the child run")
	}
	probe, err := napitrace.StartBusyPolls("bpt-none", scenario.DefaultBusyPollBudget)
	if errors.Is(err, napitrace.ErrUnavailable) {
		t.Skipf("cannot trace: %v", err)
	}
	require.NoError(t, err)
	require.NoError(t, probe.Close())
	mounted := hostTracefsMounted(t)
	for _, tt := range []struct {
		mode     string
		wantLeft bool
	}{{"1", false}, {"leak", true}} {
		t.Run(scenario.FailAfterTraceEnv+"="+tt.mode, func(t *testing.T) {
			t.Setenv(scenario.FailAfterTraceEnv, tt.mode)
			c := startChild(t, false, "-test.run=^TestBusyPoll$/^veth$/^plain$", "-busypoll.backend=veth")
			deadline := time.Now().Add(childTimeout)
			for !strings.Contains(c.stdout.String(), scenario.RunDone) && time.Now().Before(deadline) {
				select {
				case <-c.outDone:
					deadline = time.Now()
				case <-time.After(20 * time.Millisecond):
				}
			}
			out := c.stdout.String()
			require.Contains(t, out, scenario.RunDone+" 1", "the child must fail; stdout:\n%s\nstderr:\n%s", out, c.stderr.String())
			require.Contains(t, out, "failing with a trace session running")
			left, err := napitrace.Instances(c.cmd.Process.Pid)
			require.NoError(t, err)
			require.NoError(t, c.cmd.Process.Kill())
			_ = c.wait()
			if tt.wantLeft {
				assert.NotEmpty(t, left, "without its cleanup the session's instance stays, and this test sees it")
				// The next session removes instances of dead processes.
				s, err := napitrace.StartBusyPolls("bpt-none", scenario.DefaultBusyPollBudget)
				require.NoError(t, err)
				require.NoError(t, s.Close())
				left, err = napitrace.Instances(c.cmd.Process.Pid)
				require.NoError(t, err)
				assert.Empty(t, left, "the next session reaps a dead process's instance")
			} else {
				assert.Empty(t, left, "the failed child left tracefs instances")
			}
			assert.Equal(t, mounted, hostTracefsMounted(t), "/sys/kernel/tracing mounted before: %v", mounted)
		})
	}
}

// childTimeout is the -test.timeout of child runs.
const childTimeout = 5 * time.Minute

// requireNetdevsimParent skips unless a test that runs TestBusyPoll's
// netdevsim setup in child processes can run here, and in those children.
func requireNetdevsimParent(t *testing.T) {
	t.Helper()
	testenv.NeedRoot(t, "creates netdevsim devices")
	if os.Getenv(drvenv.HoldEnv) != "" {
		t.Skip("this is the child run")
	}
	if err := netdevsim.Available(); err != nil {
		t.Skipf("%v", err)
	}
}

// child is a run of this test binary in a child process.
type child struct {
	cmd            *exec.Cmd
	stdout, stderr testenv.SyncBuffer
	ids            chan []int    // the ids of its HOLDING line
	outDone        chan struct{} // its stdout reached EOF
	waited         bool
}

// startChild starts this test binary with args (and -test.v, and
// -test.timeout unless args set one); with hold, it stops after the
// netdevsim setup and prints the device ids (holdIfAsked). The child is
// killed and waited for at cleanup, and its devices are deleted there by
// id if the test has not seen them gone (the parent's own safety net).
func startChild(t *testing.T, hold bool, args ...string) *child {
	t.Helper()
	all := []string{"-test.v", "-test.count=1"}
	if !strings.Contains(strings.Join(args, " "), "-test.timeout") {
		all = append(all, "-test.timeout="+childTimeout.String())
	}
	c := &child{cmd: exec.Command(os.Args[0], append(all, args...)...),
		ids: make(chan []int, 1), outDone: make(chan struct{})}
	c.cmd.Env = os.Environ()
	if hold {
		c.cmd.Env = append(c.cmd.Env, drvenv.HoldEnv+"=1")
	}
	c.cmd.Stderr = &c.stderr
	out, err := c.cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, c.cmd.Start())
	// Read stdout to its end before Wait, as os/exec requires of a pipe.
	go func() {
		defer close(c.outDone)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(&c.stdout, line)
			if rest, ok := strings.CutPrefix(line, "HOLDING "); ok {
				var ids []int
				for _, f := range strings.Fields(strings.Trim(rest, "[]")) {
					id, err := strconv.Atoi(f)
					if err != nil {
						break
					}
					ids = append(ids, id)
				}
				select {
				case c.ids <- ids:
				default: // only the first counts
				}
			}
		}
		_, _ = io.Copy(io.Discard, out)
	}()
	t.Cleanup(func() {
		if !c.waited {
			_ = c.cmd.Process.Kill()
			_ = c.wait()
		}
	})
	return c
}

// holding waits until the child holds its devices, checks they exist, and
// returns their ids. At cleanup, any of them still on the bus is deleted.
func (c *child) holding(t *testing.T) []int {
	t.Helper()
	var ids []int
	select {
	case ids = <-c.ids:
	case <-c.outDone:
		select {
		case ids = <-c.ids: // sent just before the end
		default:
		}
	case <-time.After(childTimeout):
	}
	require.Len(t, ids, 2, "the child did not reach the hold point; stdout:\n%s\nstderr:\n%s", c.stdout.String(), c.stderr.String())
	t.Cleanup(func() {
		for _, id := range ids { // only if a check failed
			if _, err := os.Stat(netdevsim.Default().DevicePath(id)); err == nil {
				t.Logf("deleting netdevsim%d, left by the child", id)
				assert.NoError(t, netdevsim.Default().DeleteDevice(id))
			}
		}
	})
	for _, id := range ids {
		require.DirExists(t, netdevsim.Default().DevicePath(id)+"/", "the child's device exists while it holds")
	}
	return ids
}

// wait reads the child's stdout to its end, then waits for it.
func (c *child) wait() error {
	<-c.outDone
	c.waited = true
	return c.cmd.Wait()
}

// recordsOf returns the ownership record files of process pid.
func recordsOf(t *testing.T, pid int) []string {
	t.Helper()
	dir := netdevsim.Default().RecordDir()
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	var files []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), fmt.Sprintf("%d-", pid)) && strings.HasSuffix(e.Name(), ".json") {
			files = append(files, dir+"/"+e.Name())
		}
	}
	return files
}

// busDevices returns the ids of the devices on the netdevsim bus.
func busDevices(t *testing.T) map[int]bool {
	t.Helper()
	ents, err := os.ReadDir(netdevsim.DefaultRoot + "/devices")
	require.NoError(t, err)
	ids := map[int]bool{}
	for _, e := range ents {
		if id, err := strconv.Atoi(strings.TrimPrefix(e.Name(), "netdevsim")); err == nil {
			ids[id] = true
		}
	}
	return ids
}

// ConcurrentNetdevsim is TestBusyPollConcurrentNetdevsim: it runs
// TestBusyPoll/netdevsim (plain and link_flap) twice at the same time in one
// kernel, in two child processes, and requires both to pass and to leave no
// device behind: random device ids, anonymous namespaces and per-process
// ownership records keep them apart.
func ConcurrentNetdevsim(t *testing.T) {
	const concurrentScenarios = "plain|link_flap"
	requireNetdevsimParent(t)
	before := busDevices(t)
	// Two scenarios per run: each sets up its own devices and namespaces
	// (what could collide), and link_flap brings its links down and up (what
	// would break the other run's transfers if it touched them). All four
	// would only double the time under TCG.
	var kids [2]*child
	for i := range kids {
		kids[i] = startChild(t, false, "-test.run=^TestBusyPoll$/^netdevsim$/^("+concurrentScenarios+")$", "-busypoll.backend=netdevsim")
	}
	for i, c := range kids {
		err := c.wait()
		out := c.stdout.String()
		assert.NoError(t, err, "run %d failed; stdout:\n%s\nstderr:\n%s", i+1, out, c.stderr.String())
		assert.Contains(t, out, "--- PASS: TestBusyPoll/netdevsim ", "run %d", i+1)
		assert.NotContains(t, out, "--- SKIP:", "run %d", i+1)
		for _, sc := range strings.Split(concurrentScenarios, "|") {
			if !strings.Contains(out, "--- PASS: TestBusyPoll/netdevsim/"+sc+" ") {
				t.Errorf("run %d: TestBusyPoll/netdevsim/%s did not pass", i+1, sc)
			}
		}
		assert.Empty(t, recordsOf(t, c.cmd.Process.Pid), "run %d left its ownership record", i+1)
	}
	for id := range busDevices(t) {
		assert.True(t, before[id], "netdevsim%d was left on the bus by the concurrent runs", id)
	}
}

// ConcurrentTraceIsolated is TestBusyPollConcurrentTraceIsolated: it runs
// TestBusyPoll/netdevsim/suspend in two child processes at once in one
// kernel: one busy-polls (it repeats until the other is done), the other has
// epoll busy polling off (-busypoll.prefer=0 -busypoll.usecs=0) and must fail
// check 4, "the epoll busy loop never polled the NAPI", although the first
// run's busy loop polls its own netdevsim port meanwhile (its log shows it
// during the off run). Each run's napi:napi_poll trace is filtered to its own
// device name, unique per run; with the driver's names
// (BUSYPOLLTEST_NETDEVSIM_KEEP_NAMES=1 in both) the off run's trace can count
// the other run's polls of its eth0.
func ConcurrentTraceIsolated(t *testing.T) {
	requireNetdevsimParent(t)
	probe, err := napitrace.StartBusyPolls("bpt-none", scenario.DefaultBusyPollBudget)
	if errors.Is(err, napitrace.ErrUnavailable) {
		t.Skipf("cannot trace: %v", err)
	}
	require.NoError(t, err)
	require.NoError(t, probe.Close())
	const (
		suspendOnly = "-test.run=^TestBusyPoll$/^netdevsim$/^suspend$"
		busyLine    = "napi_poll trace: the epoll busy loop polled "
	)
	before := busDevices(t)
	busy := startChild(t, false, suspendOnly, "-busypoll.backend=netdevsim", "-test.count=1000")
	exited := make(chan struct{})
	go func() {
		<-busy.outDone
		close(exited)
	}()
	deadline := time.Now().Add(childTimeout)
	for !strings.Contains(busy.stdout.String(), busyLine) {
		select {
		case <-exited:
			t.Fatalf("the busy run ended before it busy-polled; stdout:\n%s\nstderr:\n%s", busy.stdout.String(), busy.stderr.String())
		case <-time.After(50 * time.Millisecond):
		}
		require.True(t, time.Now().Before(deadline), "the busy run did not busy-poll in %v", childTimeout)
	}
	mark := len(busy.stdout.String())
	off := startChild(t, false, suspendOnly, "-busypoll.backend=netdevsim", "-busypoll.prefer=0", "-busypoll.usecs=0")
	offErr := off.wait()
	during := busy.stdout.String()[mark:]
	select {
	case <-exited:
		t.Errorf("the busy run ended before the off run did: no overlap to test")
	default:
	}
	require.NoError(t, busy.cmd.Process.Signal(syscall.SIGINT))
	_ = busy.wait()

	out := off.stdout.String()
	assert.Error(t, offErr, "the run with epoll busy polling off must fail")
	assert.Contains(t, out, "--- FAIL: TestBusyPoll/netdevsim/suspend ")
	assert.Contains(t, out, "the epoll busy loop never polled the NAPI", "the off run fails check 4; stdout:\n%s", out)
	var polled int
	for _, line := range strings.Split(during, "\n") {
		if _, rest, ok := strings.Cut(line, busyLine); ok {
			var dev string
			var n int
			if _, err := fmt.Sscanf(rest, "%s %d times", &dev, &n); err == nil {
				polled += n
				assert.True(t, strings.HasPrefix(dev, link.NetdevsimServerPrefix), "the busy run's port has a unique name: %q", dev)
			}
		}
	}
	assert.Positive(t, polled, "the busy run's epoll busy loop polled its NAPI while the off run ran; its log meanwhile:\n%s", during)
	t.Logf("while the off run ran, the busy run's busy loop polled its NAPI %d times", polled)
	for _, c := range []*child{busy, off} {
		assert.Empty(t, recordsOf(t, c.cmd.Process.Pid), "ownership record left")
		left, err := napitrace.Instances(c.cmd.Process.Pid)
		require.NoError(t, err)
		assert.Empty(t, left, "trace instances left")
	}
	for id := range busDevices(t) {
		assert.True(t, before[id], "netdevsim%d was left on the bus", id)
	}
}

// KilledRunIsReaped is TestBusyPollKilledRunIsReaped: it kills a child run
// with SIGKILL while it holds its two netdevsim devices (nothing at all runs
// in the child then: the devices stay), and checks that the next run, a
// second child running TestBusyPoll/netdevsim/plain, deletes them from the
// ownership record the first left, says so in its log, and passes. With
// BUSYPOLLTEST_NETDEVSIM_NO_RECORD=1 (no record is written) it fails: the
// devices stay.
func KilledRunIsReaped(t *testing.T) {
	requireNetdevsimParent(t)
	first := startChild(t, true, "-test.run=^TestBusyPoll$/^netdevsim$/^plain$")
	ids := first.holding(t)
	pid := first.cmd.Process.Pid
	require.NoError(t, first.cmd.Process.Signal(syscall.SIGKILL))
	err := first.wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, syscall.SIGKILL, ee.Sys().(syscall.WaitStatus).Signal(), "the first run died of SIGKILL")
	for _, id := range ids {
		require.DirExists(t, netdevsim.Default().DevicePath(id)+"/", "SIGKILL runs no cleanup: netdevsim%d is still there", id)
	}
	t.Logf("run 1 (pid %d) killed holding netdevsim%d and netdevsim%d; its records: %v", pid, ids[0], ids[1], recordsOf(t, pid))

	second := startChild(t, false, "-test.run=^TestBusyPoll$/^netdevsim$/^plain$", "-busypoll.backend=netdevsim")
	err = second.wait()
	out := second.stdout.String()
	require.NoError(t, err, "the next run failed; stdout:\n%s\nstderr:\n%s", out, second.stderr.String())
	assert.Contains(t, out, "--- PASS: TestBusyPoll/netdevsim/plain ")
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "netdevsim: owner pid") {
			t.Logf("run 2 says: %s", strings.TrimSpace(line))
		}
	}
	for _, id := range ids {
		_, err := os.Stat(netdevsim.Default().DevicePath(id))
		assert.ErrorIs(t, err, os.ErrNotExist, "netdevsim%d of the killed run is still on the bus: the next run did not reap it", id)
	}
	assert.Contains(t, out, fmt.Sprintf("owner pid %d ", pid), "the next run's log says what it reaped")
	assert.Contains(t, out, fmt.Sprintf("deleted its devices %v", ids), "in the order they were made and recorded")
	assert.Empty(t, recordsOf(t, pid), "the killed run's record is removed")
}
