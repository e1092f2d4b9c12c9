// Package busypolltest_test holds TestBusyPoll: the kernel selftest
// busy_poll_test.sh (with busy_poller.c) ported to Go, and made to prove that
// busy polling happened instead of only that the bytes arrived.
package busypolltest_test

import (
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll"
	"github.com/netdev-go/busypolltest/busypoll/drvenv"
	"github.com/netdev-go/busypolltest/busypoll/emergency"
	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
	"github.com/netdev-go/busypolltest/busypoll/lifecycle"
	"github.com/netdev-go/busypolltest/busypoll/niclend"
	"github.com/netdev-go/busypolltest/busypoll/scenario"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/netdev-go/busypolltest/napi"
	"github.com/netdev-go/busypolltest/napi/napitrace"
	"github.com/netdev-go/busypolltest/netdevsim"
)

// Flags, set with go test ... -args -busypoll.NAME=VALUE. Defaults are the
// selftest's, except that defer-hard-irqs and gro-flush-timeout, which the
// selftest defines but never passes, are applied.
var (
	flagSize         = flag.String("busypoll.size", "", "bytes per transfer: a number with an optional B, KiB, MiB or GiB suffix (default 1MiB, 256KiB in the project's QEMU VM)")
	flagUsecs        = flag.Uint64("busypoll.usecs", 0, "epoll busy_poll_usecs (0 to 2147483647)")
	flagBudget       = flag.Uint64("busypoll.budget", 16, "epoll busy_poll_budget (0 to 65535)")
	flagPrefer       = flag.Uint64("busypoll.prefer", 1, "epoll prefer_busy_poll (0 or 1); napi_threaded always uses 0")
	flagMaxEvents    = flag.Int("busypoll.max-events", 8, "epoll_wait max events")
	flagDefer        = flag.Uint64("busypoll.defer-hard-irqs", 100, "NAPI defer-hard-irqs (0 to 2147483647)")
	flagGRO          = flag.Duration("busypoll.gro-flush-timeout", 50*time.Microsecond, "NAPI gro-flush-timeout")
	flagSuspend      = flag.Duration("busypoll.suspend-timeout", 20*time.Millisecond, "NAPI irq-suspend-timeout of the suspend and link_flap scenarios")
	flagTimeout      = flag.Duration("busypoll.timeout", 30*time.Second, "time limit of one transfer")
	flagBackend      = flag.String("busypoll.backend", "auto", "auto (netdevsim and veth, and nic where -busypoll.nic names ports; netdevsim skips where unavailable), or one of netdevsim, veth or nic (then unavailable is a failure)")
	flagComparePairs = flag.Int("busypoll.compare-pairs", 0, "most pairs the sequential suspension comparison may take (1 to 20; below 5 the rank-sum test cannot pass; 0: the default, 20); under emulation (nic in the VM) the fixed number of pairs, 6 by default")
	flagKeepBusyRead = flag.Bool("busypoll.keep-busy-read", false, "leave SO_BUSY_POLL of the receiver's sockets as net.core.busy_read sets it (a broken case: the negative control must then fail where busy_read is set)")
	flagNIC          = flag.String("busypoll.nic", "", "SERVER,CLIENT: also run the scenarios over these two ports of this machine, linked by a cable, switch or hub (backend nic); they must be idle (no address, route or master)")
	flagRecord       = flag.String("busypoll.record", "", "append every transfer's measurements to this file, one JSON object a line")
)

const seedEnv = "BUSYPOLLTEST_SEED"

// flagsGiven returns the flags as given.
func flagsGiven() scenario.Flags {
	return scenario.Flags{
		Size: *flagSize, Usecs: *flagUsecs, Budget: *flagBudget, Prefer: *flagPrefer,
		Defers: *flagDefer, MaxEvents: *flagMaxEvents, GRO: *flagGRO, Suspend: *flagSuspend,
		Timeout: *flagTimeout, Backend: *flagBackend, ComparePairs: *flagComparePairs,
		NIC: *flagNIC, KeepBusyRead: *flagKeepBusyRead, Record: *flagRecord,
	}
}

// scenarios is the selftest's table, in its order.
var scenarios = []scenario.Scenario{
	{Name: "plain"},
	{Name: "suspend", Suspend: true},
	{
		Name: "napi_threaded", Threaded: napi.ThreadedBusyPoll, NoPrefer: true,
		Needs: []napi.Feature{napi.FeatureThreadedBusyPoll}, MustRunThread: true,
	},
	{Name: "link_flap", Suspend: true, Flap: true},
}

// baseNeeds are the napi-set features every scenario uses.
var baseNeeds = []napi.Feature{
	napi.FeatureNAPISet, napi.FeatureDeferHardIRQs,
	napi.FeatureGROFlushTimeout, napi.FeatureIRQSuspendTimeout,
}

// TestBusyPoll runs every scenario over every backend, as
// TestBusyPoll/<backend>/<scenario>: each in an environment of its own
// (busypoll/drvenv), with checks 1 to 5 (busypoll/scenario). A scenario
// skips where the kernel is older than a feature it needs and fails where
// the kernel should have it (testenv.SkipIfNotSupported).
func TestBusyPoll(t *testing.T) {
	cfg, err := flagsGiven().Validate()
	require.NoError(t, err, "flags")
	testenv.NeedRoot(t, "creates namespaces and devices and moves data through them (CAP_SYS_ADMIN for namespaces, CAP_NET_ADMIN for napi-set): run with sudo")
	release := testenv.KernelRelease(t)
	env := scenario.Host{}
	env.Sysctls, err = busypoll.ReadSysctls()
	require.NoError(t, err, "read the host's busy-poll sysctls")
	t.Logf("kernel %s; host %v (SO_BUSY_POLL 0 on the receiver's sockets neutralises busy_read)", release, env.Sysctls)
	// What the kernel lacks is found once and reported by every subtest
	// that needs it, so that an old kernel shows each scenario skipped. A
	// probe that fails for another reason fails the test.
	epollErr := busypoll.Supported()
	feats, familyErr := kernelFeatures(t)
	seed := seedFor(t)
	// A parent whose subtests all skipped skips too: go test would
	// otherwise report it as passed.
	ranAny := false
	for _, be := range cfg.Backends {
		t.Run(be, func(t *testing.T) {
			ran := 0
			for _, sc := range scenarios {
				t.Run(sc.Name, func(t *testing.T) {
					defer func() {
						if !t.Skipped() {
							ran++
						}
					}()
					testenv.SkipIfNotSupported(t, epollErr)
					testenv.SkipIfNotSupported(t, familyErr)
					testenv.SkipIfNotSupported(t, feats.Missing(append(baseNeeds, sc.Needs...)...))
					p := drvenv.New(t, be, drvenv.Options{Strict: cfg.Strict, ServerPort: cfg.ServerPort, ClientPort: cfg.ClientPort})
					scenario.Run(t, cfg, p, sc, env, seed)
				})
			}
			if ran == 0 && !t.Failed() {
				t.Skipf("every %s scenario skipped (reasons above)", be)
			}
			ranAny = true
		})
	}
	if !ranAny && !t.Failed() {
		t.Skip("every backend skipped (reasons above)")
	}
}

// kernelFeatures asks the kernel which napi-set attributes it has. A kernel
// without the netdev family gives a kernelfeature error to skip or fail
// with; any other error fails the test.
func kernelFeatures(t *testing.T) (napi.Features, error) {
	t.Helper()
	c, err := napi.DialCurrent()
	if errors.Is(err, os.ErrNotExist) {
		return napi.Features{}, &kernelfeature.UnsupportedFeatureError{
			Name: "the netdev generic netlink family", MinimumVersion: napi.FamilySince, Err: err}
	}
	require.NoError(t, err, "open the netdev generic netlink family")
	defer c.Close()
	feats, err := c.Features()
	require.NoError(t, err, "read the kernel's napi-set policy")
	t.Logf("kernel napi-set: %v", feats)
	return feats, nil
}

// seedFor returns the seed of the random payload: BUSYPOLLTEST_SEED if set,
// else a fresh one, logged so that a failing run can be repeated.
func seedFor(t *testing.T) uint64 {
	t.Helper()
	if s := os.Getenv(seedEnv); s != "" {
		v, err := strconv.ParseUint(s, 0, 64)
		require.NoError(t, err, "%s=%q is not an unsigned integer", seedEnv, s)
		return v
	}
	v := rand.Uint64()
	t.Logf("payload seed %d (repeat with %s=%d)", v, seedEnv, v)
	return v
}

// TestMain installs the emergency cleanup (busypoll/emergency): on a signal
// or just before -test.timeout panics (both skip t.Cleanup) lent ports are
// given back, trace sessions closed and this process's netdevsim devices
// deleted, since all of them outlive the process; what a SIGKILL leaves,
// the next run reaps.
func TestMain(m *testing.M) {
	flag.Parse()
	emergency.Install(testenv.TestTimeout(), niclend.ReturnAll, closeTraces, netdevsim.EmergencyCleanup) // until the process ends
	code := m.Run()
	if os.Getenv(scenario.FailAfterTraceEnv) != "" {
		// A child of TestBusyPollFailedRunLeavesNoTrace: alive until
		// killed, so that no other run reaps what it left meanwhile.
		fmt.Printf("%s %d\n", scenario.RunDone, code)
		select {}
	}
	if err := scenario.CloseRecord(); err != nil {
		fmt.Fprintf(os.Stderr, "busypolltest: -busypoll.record: %v\n", err)
		code = 1
	}
	os.Exit(code)
}

// closeTraces removes the tracefs instances of the napi:napi_poll sessions
// still running: an instance outlives its process.
func closeTraces(why string) {
	if err := napitrace.CloseAll(); err != nil {
		fmt.Fprintf(os.Stderr, "busypolltest: %s: %v\n", why, err)
	}
}

// The lifecycle tests run this binary in child processes (busypoll/lifecycle
// says what each proves); vm/test-all requires them by these names.

// TestBusyPollLeavesNothing: SIGINT, SIGTERM, SIGHUP, SIGQUIT and an
// expiring -test.timeout leave no netdevsim device or ownership record.
func TestBusyPollLeavesNothing(t *testing.T) { lifecycle.LeavesNothing(t) }

// TestBusyPollFailedRunLeavesNoTrace: a run failing with a trace session
// open leaves no tracefs instance.
func TestBusyPollFailedRunLeavesNoTrace(t *testing.T) { lifecycle.FailedRunLeavesNoTrace(t) }

// TestBusyPollConcurrentNetdevsim: two runs at once in one kernel both pass.
func TestBusyPollConcurrentNetdevsim(t *testing.T) { lifecycle.ConcurrentNetdevsim(t) }

// TestBusyPollConcurrentTraceIsolated: one run's busy polls do not count in
// another's trace.
func TestBusyPollConcurrentTraceIsolated(t *testing.T) { lifecycle.ConcurrentTraceIsolated(t) }

// TestBusyPollKilledRunIsReaped: the next run deletes what a SIGKILLed run
// left.
func TestBusyPollKilledRunIsReaped(t *testing.T) { lifecycle.KilledRunIsReaped(t) }
