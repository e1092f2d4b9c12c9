package scenario

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll"
	"github.com/netdev-go/busypolltest/busypoll/drvenv"
	"github.com/netdev-go/busypolltest/busypoll/measure"
	"github.com/netdev-go/busypolltest/busypoll/verdict"
	"github.com/netdev-go/busypolltest/napi"
	"github.com/netdev-go/busypolltest/napi/napitrace"
)

// Scenario is one row of the selftest's table.
type Scenario struct {
	Name     string
	Suspend  bool           // irq-suspend-timeout from the flag; 0 otherwise
	Threaded napi.Threaded  // threaded mode of the NAPI
	NoPrefer bool           // prefer_busy_poll 0 whatever the flag says
	Flap     bool           // transfer, links down and up, configure again, transfer again
	Needs    []napi.Feature // the napi-set features it needs beyond the base ones
	// MustRunThread: the NAPI's kernel thread must use CPU in the transfer.
	MustRunThread bool
}

// backend is what check 4 can show on one kind of link.
type backend struct {
	// showsSuspension: the device masks its rx notification while its NAPI
	// is deferred or suspended, so IRQ suspension changes what busy polling
	// finds, and check 4 compares suspension against a control.
	showsSuspension bool
	// noSuspension says why, where it cannot.
	noSuspension string
	// comparePairs is the default of -busypoll.compare-pairs: the cap
	// of the sequential comparison.
	comparePairs int
	// emulatedPairs is that default under emulation, where only the
	// interrupt verdicts use the comparison (see compareSuspension); 0:
	// comparePairs.
	emulatedPairs int
}

var backends = map[string]backend{
	// Up to maxComparePairs pairs, sequentially: on an idle host the
	// control sometimes busy-polls nearly as much as suspension, and a
	// small fixed number of pairs then misses (testdata/README.md).
	drvenv.Veth: {showsSuspension: true, comparePairs: maxComparePairs},
	// As veth on a real machine. Under emulation only the interrupt
	// verdicts count, and their arms did not overlap in the VM
	// (testdata/README.md): 6 pairs allow the smallest p, 1/924.
	drvenv.NIC: {showsSuspension: true, comparePairs: maxComparePairs, emulatedPairs: 6},
	drvenv.Netdevsim: {noSuspension: "netdevsim's transmit arms a 5 µs hrtimer that " +
		"schedules the peer's NAPI, and its poll ignores napi_complete_done()'s result, so nothing masks its " +
		"\"interrupt\" and neither deferral nor suspension can change what busy polling finds; only that busy " +
		"polling happened at all is checked"},
}

// recorder appends transfers to -busypoll.record's file; CloseRecord closes
// it.
var recorder struct {
	sync.Mutex
	f *os.File
}

// record appends one transfer to -busypoll.record's file, if set.
func record(t *testing.T, path string, rec verdict.Transfer) {
	t.Helper()
	if path == "" {
		return
	}
	recorder.Lock()
	defer recorder.Unlock()
	if recorder.f == nil {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		require.NoError(t, err, "-busypoll.record")
		recorder.f = f
	}
	b, err := json.Marshal(rec)
	require.NoError(t, err)
	_, err = recorder.f.Write(append(b, '\n'))
	require.NoError(t, err, "-busypoll.record")
}

// Run runs scenario sc over p, a fresh environment, and applies checks 1
// to 5 to its transfers (see the package documentation). env is what the
// host's settings allow it to prove; seed makes the payloads.
func Run(t *testing.T, cfg Config, p *drvenv.Env, sc Scenario, env Host, seed uint64) {
	backend := p.Backend
	be := backends[backend]
	server := p.Server.NS

	nc, err := napi.Dial(server.FD())
	require.NoError(t, err, "netdev netlink socket in %s", server)
	t.Cleanup(func() { assert.NoError(t, nc.Close()) })

	r := &runner{t: t, cfg: cfg, backend: backend, sc: sc, p: p, nc: nc, seed: seed,
		run:    fmt.Sprintf("%d-%d", os.Getpid(), runs.Add(1)),
		params: busypoll.Params{Usecs: cfg.Usecs, Budget: cfg.Budget, Prefer: cfg.Prefer && !sc.NoPrefer}}
	want := napi.Settings{
		DeferHardIRQs:     new(cfg.DeferHardIRQs),
		GROFlushTimeout:   new(cfg.GROFlush),
		IRQSuspendTimeout: new(time.Duration(0)),
	}
	if sc.Suspend {
		want.IRQSuspendTimeout = new(cfg.Suspend)
	}
	if sc.Threaded != napi.ThreadedDisabled {
		want.Threaded = new(sc.Threaded)
	}

	rounds := 1
	if sc.Flap {
		rounds = 2
	}
	for round := 1; round <= rounds; round++ {
		if round > 1 {
			p.Flap(t)
		}
		r.round = round
		r.ids = configureNAPI(t, nc, r.p, want)
		r.id = r.ids[0]
		r.thread = threadOf(t, nc, r.id, sc)
		if backend == drvenv.NIC {
			p.FindIRQs(t, nc, r.ids)
		}
		switch {
		// Under emulation the comparison is made only for the interrupt
		// verdicts of a device with interrupt lines (nic in the VM): its
		// busy-poll half is not a verdict there (see compareSuspension).
		case sc.Suspend && be.showsSuspension && (!Emulated() || r.p.IRQ != nil):
			r.compareSuspension(want, env)
		case sc.Suspend:
			r.busyPolledAtAll(env)
		default:
			r.once(env)
		}
	}
	r.negativeControl(env)
	if err := verdict.Credited(env.Sysctls); err != nil {
		t.Skipf("checks 1 to 3 passed, but %v", err)
	}
}

// Host is what the host's settings allow a run to prove.
type Host struct {
	// Sysctls are the host's busy-poll sysctls.
	Sysctls busypoll.Sysctls
}

// runs numbers the subtests of this process, for the recordings.
var runs atomic.Int64

// runner makes the transfers of one subtest and applies the checks.
type runner struct {
	t       *testing.T
	run     string // the subtest's id in recordings
	cfg     Config
	backend string
	sc      Scenario
	p       *drvenv.Env
	nc      *napi.Client
	params  busypoll.Params
	seed    uint64
	round   int
	ids     []uint32 // the server's NAPIs
	id      uint32   // the first of them (the only one but on nic)
	thread  int      // its kernel thread (threaded scenarios), or 0
	n       int      // transfers made so far
}

// transfer makes one transfer with the epoll parameters params, applies
// checks 1 to 3 and records it as arm.
func (r *runner) transfer(arm verdict.Arm, params busypoll.Params, settings napi.Settings) (verdict.Transfer, measure.Result) {
	r.t.Helper()
	r.n++
	res := measure.Transfer(r.t, measure.Setup{
		Server: r.p.Server, Client: r.p.Client, IRQ: r.p.IRQ,
		Size: r.cfg.Size, Timeout: r.cfg.Timeout, MaxEvents: r.cfg.MaxEvents, KeepBusyRead: r.cfg.KeepBusyRead,
		Params: params, Seed: r.seed + uint64(1000*r.round+r.n), ThreadPID: r.thread,
	})
	rec := verdict.Transfer{
		Run: r.run, Backend: r.backend, Scenario: r.sc.Name, Round: r.round, Arm: arm,
		Bytes: res.Recvd, RxPackets: res.RxPackets, BusyPolled: res.Counters.BusyPollRxPackets,
		EpollWaits: res.Stats.EpollWaits, Elapsed: res.Stats.Elapsed, SocketBusyPoll: res.Stats.SocketBusyPollUsecs,
		IRQs: res.IRQs,
	}
	if settings.DeferHardIRQs != nil {
		rec.DeferHardIRQs = *settings.DeferHardIRQs
	}
	if settings.GROFlushTimeout != nil {
		rec.GROFlushTimeout = *settings.GROFlushTimeout
	}
	if settings.IRQSuspendTimeout != nil {
		rec.IRQSuspendTimeout = *settings.IRQSuspendTimeout
	}
	record(r.t, r.cfg.Record, rec)
	checkTransfer(r.t, r.cfg, r.label(arm), r.sc, r.ids, params, res)
	return rec, res
}

// label names a transfer in the log: "veth/link_flap round 2 control 3".
func (r *runner) label(arm verdict.Arm) string {
	s := r.name()
	if arm != verdict.ArmScenario {
		s += " " + string(arm)
	}
	return fmt.Sprintf("%s #%d", s, r.n)
}

// name names the subtest and round: "veth/link_flap round 2".
func (r *runner) name() string {
	s := r.backend + "/" + r.sc.Name
	if r.sc.Flap {
		s += fmt.Sprintf(" round %d", r.round)
	}
	return s
}

// once is a scenario that compares nothing: one transfer, checks 1 to 3,
// and for a threaded scenario the proof that the NAPI thread busy polls and
// that it, not something else, polled the packets (subtest thread-polled,
// from the napi:napi_poll tracepoint; it skips where tracing is missing).
func (r *runner) once(env Host) {
	t := r.t
	t.Helper()
	if !r.sc.MustRunThread {
		r.transfer(verdict.ArmScenario, r.params, napi.Settings{})
		return
	}
	trace, traceErr := r.startTrace(func() (*napitrace.Session, error) { return napitrace.Start(r.p.Server.Name) })
	if traceErr != nil && !errors.Is(traceErr, napitrace.ErrUnavailable) {
		require.NoError(t, traceErr, "trace napi:napi_poll")
	}
	rec, res := r.transfer(verdict.ArmScenario, r.params, napi.Settings{})
	var polls napitrace.Polls
	if trace != nil {
		var err error
		polls, err = trace.Stop()
		require.NoError(t, err, "read the napi:napi_poll trace")
	}
	assert.NoError(t, verdict.ThreadBusyPolls(res.ThreadCPU, res.ThreadIdleShare, measure.IdleWindow, measure.MinIdleSpin))
	t.Run("thread-polled", func(t *testing.T) {
		if traceErr != nil {
			t.Skipf("cannot show who polled the NAPI: %v", traceErr)
		}
		// The trace names NAPIs by address: the one the thread polled is
		// the server's; a device of the same name elsewhere (netdevsim's
		// client end is also eth0) has another.
		napis := polls.NAPIsOf(r.thread)
		require.Len(t, napis, 1, "the NAPI's kernel thread %d polled packets of %d NAPIs: %v", r.thread, len(napis), polls.Work)
		work := polls.ByTask(napis[0])
		t.Logf("%s: napi_poll trace: thread %d polled %d of %d packets of its NAPI, %d rx packets, by task: %v (%v)",
			r.name(), r.thread, work[r.thread], polls.Total(), rec.RxPackets, work, polls.Comm)
		assert.NoError(t, verdict.ThreadPolled(r.thread, work, rec.RxPackets, polls.Lost))
	})
}

// compareSuspension is check 4 where the backend can show the effect of
// IRQ suspension: pairs of transfers, one with the scenario's settings and
// one with irq-suspend-timeout 0 (the control), interleaved on the same pair
// and NAPI, until verdict.SuspensionSequential decides on the two arms'
// busy-polled counts, at most -busypoll.compare-pairs pairs.
func (r *runner) compareSuspension(want napi.Settings, env Host) {
	t := r.t
	t.Helper()
	control := want
	control.IRQSuspendTimeout = new(time.Duration(0))
	// Where the device has interrupts (nic), a third arm without deferral
	// shows what deferral and suspension do to them.
	baseline := control
	baseline.DeferHardIRQs, baseline.GROFlushTimeout = new(uint32(0)), new(time.Duration(0))
	settings := map[verdict.Arm]napi.Settings{verdict.ArmSuspend: want, verdict.ArmControl: control, verdict.ArmBaseline: baseline}
	arms := []verdict.Arm{verdict.ArmSuspend, verdict.ArmControl}
	withIRQs := r.p.IRQ != nil
	if withIRQs {
		arms = append(arms, verdict.ArmBaseline)
	}
	// Under emulation (the project's QEMU VM) the effect of suspension on
	// busy polling is not a verdict: TCG distorts the timing it depends on
	// (busypoll/verdict's documentation; measured in testdata/README.md).
	// The comparison runs there only on a device with interrupt lines (the
	// nic backend), whose interrupt proof stays a verdict; its busy-poll
	// share is logged, and the busy loop must have run (napi:napi_poll).
	// The host run tests the effect.
	underEmulation := Emulated()
	var loop *napitrace.Session
	if underEmulation {
		var err error
		loop, err = r.startTrace(func() (*napitrace.Session, error) {
			return napitrace.StartBusyPolls(r.p.Server.Name, epollBudget(r.params))
		})
		if err != nil && !errors.Is(err, napitrace.ErrUnavailable) {
			require.NoError(t, err, "trace napi:napi_poll")
		}
	}
	// On a host the comparison is sequential (verdict.SuspensionLooks): it
	// adds pairs until the rule decides, at most maxPairs. Under emulation,
	// or where net.core.busy_poll makes the busy-poll verdict impossible,
	// it makes a fixed number of pairs for the interrupt verdicts.
	maxPairs := r.cfg.ComparePairs
	if maxPairs == 0 {
		maxPairs = backends[r.backend].comparePairs
		if underEmulation && backends[r.backend].emulatedPairs != 0 {
			maxPairs = backends[r.backend].emulatedPairs
		}
	}
	looks := verdict.LooksUpTo(maxPairs)
	sequential := !underEmulation && env.Sysctls.BusyPoll == 0
	if !underEmulation && !sequential {
		maxPairs = looks[0].Pairs
	}
	var (
		ts       []verdict.Transfer
		decision verdict.Decision
		sum      string
		err      error
	)
	for i := 0; i < maxPairs && decision == verdict.Continue; i++ {
		// Rotate (suspend, control; control, suspend; ...): no arm always
		// goes first.
		order := make([]verdict.Arm, 0, len(arms))
		for j := range arms {
			order = append(order, arms[(i+j)%len(arms)])
		}
		for _, arm := range order {
			setNAPIs(t, r.nc, r.ids, settings[arm].Only(napi.AttrDeferHardIRQs|napi.AttrGROFlushTimeout|napi.AttrIRQSuspendTimeout))
			rec, _ := r.transfer(arm, r.params, settings[arm])
			ts = append(ts, rec)
		}
		if sequential {
			decision, sum, err = verdict.SuspensionSequential(ts, looks)
		}
	}
	setNAPIs(t, r.nc, r.ids, want.Only(napi.AttrDeferHardIRQs|napi.AttrGROFlushTimeout|napi.AttrIRQSuspendTimeout))
	r.irqVerdicts(ts)
	if env.Sysctls.BusyPoll != 0 {
		return // reported by the caller
	}
	if underEmulation {
		sum, err := verdict.Suspension(ts)
		why := "passes"
		if err != nil {
			why = "would fail"
		}
		t.Logf("%s: %s (under emulation the effect of suspension on busy polling is logged, not a verdict: it %s here; the host run tests it)",
			r.name(), sum, why)
		if loop != nil {
			polls, err := loop.Stop()
			require.NoError(t, err, "read the napi:napi_poll trace")
			n, work := polls.TaskPolls()
			t.Logf("%s: napi_poll trace: the epoll busy loop polled %s %d times, %d packets", r.name(), r.p.Server.Name, n, work)
			assert.NoError(t, verdict.BusyLoopRan(n, work, epollBudget(r.params)))
		} else {
			assert.NoError(t, verdict.BusyPolledAtAll(ts))
		}
		return
	}
	t.Logf("%s: %s: %v", r.name(), sum, decision)
	assert.NoError(t, err)
}

// irqVerdicts is the nic backend's interrupt proof, as a subtest of its own
// so that it shows as SKIP, with the reason, where the NAPI has no
// interrupt line.
func (r *runner) irqVerdicts(ts []verdict.Transfer) {
	if r.backend != drvenv.NIC {
		return
	}
	name := "irqs"
	if r.round > 1 {
		name = fmt.Sprintf("irqs-round-%d", r.round)
	}
	r.t.Run(name, func(t *testing.T) {
		if r.p.IRQ == nil {
			t.Skipf("cannot count the NAPI's interrupts: %v", r.p.NoIRQ)
		}
		sum, err := verdict.Deferral(ts)
		t.Logf("%s: %s", r.name(), sum)
		assert.NoError(t, err)
		sum, err = verdict.SuspensionIRQs(ts)
		t.Logf("%s: %s", r.name(), sum)
		assert.NoError(t, err)
	})
}

// setNAPIs sets s on every NAPI in ids and reads it back.
func setNAPIs(t *testing.T, nc *napi.Client, ids []uint32, s napi.Settings) {
	t.Helper()
	for _, id := range ids {
		require.NoError(t, nc.SetNAPI(id, s), "napi-set %d %v", id, s)
		got, err := nc.NAPI(id)
		require.NoError(t, err)
		require.Equal(t, s.String(), got.Settings().Only(s.Attrs()).String(), "NAPI %d settings read back", id)
	}
}

// busyPolledAtAll is check 4 on a backend that cannot show the effect of
// IRQ suspension (netdevsim): busy polling must have happened at least once,
// in up to maxTransfers transfers.
func (r *runner) busyPolledAtAll(env Host) {
	t := r.t
	t.Helper()
	if why := backends[r.backend].noSuspension; why != "" {
		t.Logf("%s: the effect of IRQ suspension is NOT tested on %s: %s", r.backend, r.backend, why)
	} else {
		t.Logf("%s: the effect of IRQ suspension is NOT tested under emulation (the project's QEMU VM): TCG distorts the timing it depends on, so that the comparison does not separate reliably there (testdata/README.md); the host run tests it", r.backend)
	}
	// Where the kernel can trace, the proof is that the epoll busy loop
	// polled the NAPI (napi:napi_poll events in task context with the
	// epoll budget), in one transfer: on netdevsim a busy poll finds
	// packets only by luck (busypoll/drvenv), often none in many
	// transfers under emulation, but it runs in every transfer.
	// A transfer whose epoll_wait calls all found data polls nothing; up
	// to maxLoopTransfers are made. Without busy polling none polls.
	startLoop := func() (*napitrace.Session, error) {
		return napitrace.StartBusyPolls(r.p.Server.Name, epollBudget(r.params))
	}
	trace, err := r.startTrace(startLoop)
	if err == nil {
		var polls int
		var work uint64
		// The first transfer uses the session that showed tracing works.
		for i := 0; i < maxLoopTransfers; i++ {
			if i > 0 {
				if polls > 0 || t.Failed() {
					break
				}
				trace, err = r.startTrace(startLoop)
				require.NoError(t, err, "trace napi:napi_poll")
			}
			rec, _ := r.transfer(verdict.ArmScenario, r.params, napi.Settings{})
			p, err := trace.Stop()
			require.NoError(t, err, "read the napi:napi_poll trace")
			n, w := p.TaskPolls()
			polls, work = polls+n, work+w
			t.Logf("%s: napi_poll trace: the epoll busy loop polled %s %d times, %d packets (BusyPollRxPackets %d)",
				r.name(), r.p.Server.Name, n, w, rec.BusyPolled)
		}
		if env.Sysctls.BusyPoll == 0 {
			assert.NoError(t, verdict.BusyLoopRan(polls, work, epollBudget(r.params)))
		}
		return
	}
	if !errors.Is(err, napitrace.ErrUnavailable) {
		require.NoError(t, err, "trace napi:napi_poll")
	}
	t.Logf("%s: %v; falling back to BusyPollRxPackets in up to %d transfers", r.name(), err, maxTransfers)
	var ts []verdict.Transfer
	for range maxTransfers {
		rec, _ := r.transfer(verdict.ArmScenario, r.params, napi.Settings{})
		ts = append(ts, rec)
		if rec.BusyPolled > 0 || t.Failed() {
			break
		}
	}
	if env.Sysctls.BusyPoll == 0 {
		assert.NoError(t, verdict.BusyPolledAtAll(ts))
	}
}

// negativeControl is one transfer with epoll busy polling off (prefer 0,
// usecs 0): it must busy-poll nothing, else busy polling comes from
// elsewhere and no busy-poll count of the run can be credited to
// EPIOCSPARAMS. The NAPI is set to hold packets for up to negativeGRO after
// each poll (deferral on a device that masks its notification meanwhile,
// like veth), so that a busy poll from anywhere else finds them: with the
// scenario's own gro-flush-timeout a host's net.core.busy_poll went unseen
// in most such transfers (testdata/README.md).
func (r *runner) negativeControl(env Host) {
	r.t.Helper()
	hold := napi.Settings{
		DeferHardIRQs:     new(uint32(negativeDefer)),
		GROFlushTimeout:   new(negativeGRO),
		IRQSuspendTimeout: new(time.Duration(0)),
	}
	setNAPIs(r.t, r.nc, r.ids, hold)
	// Where the kernel can trace, a busy loop that found nothing shows too:
	// the budget of a busy poll with no epoll parameters (a sysctl's, or a
	// socket's) is BUSY_POLL_BUDGET, 8.
	trace, traceErr := r.startTrace(func() (*napitrace.Session, error) {
		return napitrace.StartBusyPolls(r.p.Server.Name, DefaultBusyPollBudget)
	})
	if traceErr != nil && !errors.Is(traceErr, napitrace.ErrUnavailable) {
		require.NoError(r.t, traceErr, "trace napi:napi_poll")
	}
	rec, _ := r.transfer(verdict.ArmNegative, busypoll.Params{}, hold)
	assert.NoError(r.t, verdict.NegativeControl(rec, env.Sysctls))
	if trace != nil {
		polls, err := trace.Stop()
		require.NoError(r.t, err, "read the napi:napi_poll trace")
		if n, work := polls.TaskPolls(); (n > 0 || work > 0) && env.Sysctls.BusyPoll == 0 {
			r.t.Errorf("negative control: the napi:napi_poll trace shows %d busy polls of %s in task context (%d packets) with epoll busy polling off and %v: busy polling comes from somewhere unknown",
				n, r.p.Server.Name, work, env.Sysctls)
		}
	}
}

// FailAfterTraceEnv makes a child run (TestBusyPollFailedRunLeavesNoTrace)
// fail right after its first trace session starts; with the value "leak"
// that session is not closed at cleanup, to show the test catches it.
const FailAfterTraceEnv = "BUSYPOLLTEST_FAIL_AFTER_TRACE"

// RunDone is what such a child prints, with its exit code, when its tests
// are done; it then waits to be killed.
const RunDone = "RUN DONE"

// startTrace starts a napi:napi_poll session with start and closes it at
// cleanup, whatever path the test takes (Stop before that is fine).
func (r *runner) startTrace(start func() (*napitrace.Session, error)) (*napitrace.Session, error) {
	r.t.Helper()
	s, err := start()
	if err != nil {
		return nil, err
	}
	fail := os.Getenv(FailAfterTraceEnv)
	if fail != "leak" {
		r.t.Cleanup(func() { assert.NoError(r.t, s.Close(), "close the napi:napi_poll trace") })
	}
	if fail != "" {
		r.t.Fatalf("%s=%s: failing with a trace session running", FailAfterTraceEnv, fail)
	}
	return s, nil
}

// DefaultBusyPollBudget is the kernel's BUSY_POLL_BUDGET
// (include/net/busy_poll.h): the budget of busy polls without one of their
// own.
const DefaultBusyPollBudget = 8

// epollBudget is the budget an epoll busy loop with params polls with.
func epollBudget(p busypoll.Params) int {
	if p.Budget == 0 {
		return DefaultBusyPollBudget
	}
	return int(p.Budget)
}

// The NAPI settings of the negative control.
const (
	negativeDefer = 100
	negativeGRO   = time.Millisecond
)

// maxTransfers bounds the transfers of busyPolledAtAll without tracing,
// maxLoopTransfers with it.
const (
	maxTransfers     = 20
	maxLoopTransfers = 5
)

// configureNAPI finds the server's NAPIs (exactly one, except on nic), sets
// want on each (restoring the old settings at cleanup; on nic the port's
// loan also records them, for an emergency), reads the settings back and
// returns the NAPI ids.
func configureNAPI(t *testing.T, nc *napi.Client, p *drvenv.Env, want napi.Settings) []uint32 {
	t.Helper()
	server := p.Server
	napis, err := nc.NAPIs(uint32(server.Index))
	require.NoError(t, err, "list the NAPIs of %s", server.Name)
	if p.ManyNAPIs {
		require.NotEmpty(t, napis, "%s has no NAPI (a driver without NAPI, or veth with GRO off)", server.Name)
	} else {
		require.Len(t, napis, 1, "%s has one rx queue, so it must have exactly one NAPI: %+v", server.Name, napis)
	}
	var ids []uint32
	for _, n := range napis {
		ids = append(ids, n.ID)
	}
	if p.Loan != nil {
		require.NoError(t, p.Loan.KeepNAPIs(nc, ids))
	}
	for _, id := range ids {
		old, err := nc.Snapshot(id)
		require.NoError(t, err)
		t.Cleanup(func() {
			// The NAPI may be gone with its device already; that is no leak.
			if err := nc.Restore(id, old); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Errorf("restore NAPI %d to %v: %v", id, old, err)
			}
		})
		require.NoError(t, nc.SetNAPI(id, want), "napi-set %d %v", id, want)
		got, err := nc.NAPI(id)
		require.NoError(t, err)
		assert.Equal(t, want.String(), got.Settings().Only(want.Attrs()).String(), "NAPI %d settings read back", id)
	}
	if len(ids) > 1 {
		t.Logf("%s: %d NAPIs %v, all configured", server.Name, len(ids), ids)
	}
	return ids
}

// threadOf returns the pid of the NAPI's kernel thread for a threaded
// scenario, 0 otherwise.
func threadOf(t *testing.T, nc *napi.Client, id uint32, sc Scenario) int {
	t.Helper()
	if sc.Threaded == napi.ThreadedDisabled {
		return 0
	}
	n, err := nc.NAPI(id)
	require.NoError(t, err)
	require.True(t, n.Has(napi.AttrPID) && n.PID != 0,
		"NAPI %d is threaded (%v) but the kernel reports no kernel thread pid", id, n.Threaded)
	return int(n.PID)
}

// checkTransfer logs one transfer and applies checks 1 to 3 to it.
func checkTransfer(t *testing.T, cfg Config, label string, sc Scenario, ids []uint32, params busypoll.Params, res measure.Result) {
	t.Helper()
	c := res.Counters
	share := 0.0
	if res.RxPackets > 0 {
		share = 100 * float64(c.BusyPollRxPackets) / float64(res.RxPackets)
	}
	thread := ""
	if sc.Threaded != napi.ThreadedDisabled {
		thread = fmt.Sprintf(", napi thread CPU %v, %.0f%% of a CPU with no traffic",
			res.ThreadCPU.Round(time.Microsecond), 100*res.ThreadIdleShare)
	}
	if len(ids) > 1 || res.IRQs > 0 {
		thread += fmt.Sprintf(", %d IRQs (%.4f per rx packet)", res.IRQs, float64(res.IRQs)/float64(max(res.RxPackets, 1)))
	}
	t.Logf("%s: napi %d, epoll %v, %d bytes in %v, %.1f MiB/s, busy-polled %d of %d rx packets (%.0f%%), %d TCP segments after GRO, %d epoll_wait%s",
		label, res.Stats.NAPIID, params, res.Recvd, res.Stats.Elapsed.Round(time.Microsecond), res.Stats.MiBPerSec(),
		c.BusyPollRxPackets, res.RxPackets, share, c.InSegs, res.Stats.EpollWaits, thread)

	// 1. Every byte arrived, unchanged.
	assert.NoError(t, verdict.Stream(cfg.Size, res.Sent, res.Recvd, res.SentSum, res.RecvdSum), "%s: check 1, the stream", label)

	// 2. The epoll parameters read back equal those set (NAPI settings were
	// checked in configureNAPI), and the socket's own busy polling is off.
	assert.Equal(t, params, res.Epoll, "%s: epoll busy-poll parameters read back (EPIOCGPARAMS)", label)
	if !cfg.KeepBusyRead {
		assert.Zero(t, res.Stats.SocketBusyPollUsecs, "%s: SO_BUSY_POLL of the accepted socket read back", label)
	}

	// 3. The data came through the NAPI that was configured.
	assert.NoError(t, verdict.NAPI(res.Stats.NAPIID, ids...), "%s: check 3, the NAPI", label)
}

// CloseRecord closes -busypoll.record's file, if one was opened.
func CloseRecord() error {
	recorder.Lock()
	defer recorder.Unlock()
	if recorder.f == nil {
		return nil
	}
	err := recorder.f.Close()
	recorder.f = nil
	return err
}
