// Package busypolltest_test holds TestBusyPoll: the kernel selftest
// busy_poll_test.sh (with busy_poller.c) ported to Go, and made to prove that
// busy polling happened instead of only that the bytes arrived.
package busypolltest_test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll"
	"github.com/netdev-go/busypolltest/napi"
	"github.com/netdev-go/busypolltest/netdevsim"
)

// Flags, set with go test ... -args -busypoll.NAME=VALUE. Defaults are the
// selftest's, except that defer-hard-irqs and gro-flush-timeout, which the
// selftest defines but never passes, are applied.
var (
	flagSize      = flag.String("busypoll.size", "1MiB", "bytes per transfer: a number with an optional B, KiB, MiB or GiB suffix")
	flagUsecs     = flag.Uint64("busypoll.usecs", 0, "epoll busy_poll_usecs (0 to 2147483647)")
	flagBudget    = flag.Uint64("busypoll.budget", 16, "epoll busy_poll_budget (0 to 65535)")
	flagPrefer    = flag.Uint64("busypoll.prefer", 1, "epoll prefer_busy_poll (0 or 1); napi_threaded always uses 0")
	flagMaxEvents = flag.Int("busypoll.max-events", 8, "epoll_wait max events")
	flagDefer     = flag.Uint64("busypoll.defer-hard-irqs", 100, "NAPI defer-hard-irqs (0 to 2147483647)")
	flagGRO       = flag.Duration("busypoll.gro-flush-timeout", 50*time.Microsecond, "NAPI gro-flush-timeout")
	flagSuspend   = flag.Duration("busypoll.suspend-timeout", 20*time.Millisecond, "NAPI irq-suspend-timeout of the suspend and link_flap scenarios")
	flagTimeout   = flag.Duration("busypoll.timeout", 30*time.Second, "time limit of one transfer")
	flagBackend   = flag.String("busypoll.backend", "auto", "auto (both; netdevsim skips where unavailable), netdevsim or veth (then unavailable is a failure)")
)

// Limits of the flags.
const (
	maxSize        = 64 << 30
	maxUsecs       = 1<<31 - 1
	maxBudget      = 1<<16 - 1
	maxDefer       = 1<<31 - 1
	maxMaxEvents   = busypoll.MaxMaxEvents
	seedEnv        = "BUSYPOLLTEST_SEED"
	backendNetdev  = "netdevsim"
	backendVeth    = "veth"
	backendAuto    = "auto"
	serverPrefix   = "198.18.0.1/24" // RFC 2544 benchmarking range, only inside the test's namespaces
	clientPrefix   = "198.18.0.2/24"
	deviceDeadline = 10 * time.Second
)

// config is the validated form of the flags.
type config struct {
	size          int64
	usecs         uint32
	budget        uint16
	prefer        bool
	maxEvents     int
	deferHardIRQs uint32
	groFlush      time.Duration
	suspend       time.Duration
	timeout       time.Duration
	backends      []string
	strict        bool // a backend was named: unavailable is a failure
}

// rawFlags are the flags as given, before validation.
type rawFlags struct {
	size                          string
	usecs, budget, prefer, defers uint64
	maxEvents                     int
	gro, suspend, timeout         time.Duration
	backend                       string
}

func flagsGiven() rawFlags {
	return rawFlags{
		size: *flagSize, usecs: *flagUsecs, budget: *flagBudget, prefer: *flagPrefer,
		defers: *flagDefer, maxEvents: *flagMaxEvents, gro: *flagGRO, suspend: *flagSuspend,
		timeout: *flagTimeout, backend: *flagBackend,
	}
}

// parseSize reads "1048576", "1MiB", "512KiB", "2GiB" or "100B".
func parseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("-busypoll.size=%q: not a byte count (examples: 1048576, 1MiB, 512KiB)", s)
	}
	if n < 1 || n > maxSize/mult {
		return 0, fmt.Errorf("-busypoll.size=%q out of range: must be 1 B to %d GiB", s, maxSize>>30)
	}
	return n * mult, nil
}

func (r rawFlags) validate() (config, error) {
	var errs []error
	size, err := parseSize(r.size)
	errs = append(errs, err)
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(r.usecs <= maxUsecs, "-busypoll.usecs=%d out of range: must be 0 to %d", r.usecs, maxUsecs)
	check(r.budget <= maxBudget, "-busypoll.budget=%d out of range: must be 0 to %d", r.budget, maxBudget)
	check(r.prefer <= 1, "-busypoll.prefer=%d out of range: must be 0 or 1", r.prefer)
	check(r.defers <= maxDefer, "-busypoll.defer-hard-irqs=%d out of range: must be 0 to %d", r.defers, maxDefer)
	check(r.maxEvents >= 1 && r.maxEvents <= maxMaxEvents, "-busypoll.max-events=%d out of range: must be 1 to %d", r.maxEvents, maxMaxEvents)
	check(r.gro >= 0, "-busypoll.gro-flush-timeout=%v out of range: must not be negative", r.gro)
	check(r.suspend >= 0, "-busypoll.suspend-timeout=%v out of range: must not be negative", r.suspend)
	check(r.timeout > 0, "-busypoll.timeout=%v out of range: must be positive", r.timeout)
	c := config{
		size: size, usecs: uint32(r.usecs), budget: uint16(r.budget), prefer: r.prefer == 1,
		maxEvents: r.maxEvents, deferHardIRQs: uint32(r.defers), groFlush: r.gro,
		suspend: r.suspend, timeout: r.timeout,
	}
	switch r.backend {
	case backendAuto:
		c.backends = []string{backendNetdev, backendVeth}
	case backendNetdev, backendVeth:
		c.backends, c.strict = []string{r.backend}, true
	default:
		errs = append(errs, fmt.Errorf("-busypoll.backend=%q: must be auto, netdevsim or veth", r.backend))
	}
	return c, errors.Join(errs...)
}

// scenario is one row of the selftest's table.
type scenario struct {
	name     string
	suspend  bool          // irq-suspend-timeout from the flag; 0 otherwise
	threaded napi.Threaded // threaded mode of the NAPI
	noPrefer bool          // prefer_busy_poll 0 whatever the flag says
	flap     bool          // transfer, links down and up, configure again, transfer again
	needs    []napi.Feature
	// mustBusyPoll: BusyPollRxPackets of the receiving namespace must grow.
	mustBusyPoll bool
	// mustRunThread: the NAPI's kernel thread must use CPU in the transfer.
	mustRunThread bool
}

var scenarios = []scenario{
	{name: "plain"},
	{name: "suspend", suspend: true, mustBusyPoll: true},
	{
		name: "napi_threaded", threaded: napi.ThreadedBusyPoll, noPrefer: true,
		needs: []napi.Feature{napi.FeatureThreadedBusyPoll}, mustRunThread: true,
	},
	{name: "link_flap", suspend: true, flap: true, mustBusyPoll: true},
}

// baseNeeds are the napi-set features every scenario uses.
var baseNeeds = []napi.Feature{
	napi.FeatureNAPISet, napi.FeatureDeferHardIRQs,
	napi.FeatureGROFlushTimeout, napi.FeatureIRQSuspendTimeout,
}

// pair is the two ends a scenario runs over: the server end, which receives
// through the NAPI under test, and the client end.
type pair struct {
	server, client busypoll.Link
}

// flap takes both links down, then up, and waits for the carrier.
func (p pair) flap(t *testing.T) {
	t.Helper()
	for _, up := range []bool{false, true} {
		require.NoError(t, p.server.SetUp(up))
		require.NoError(t, p.client.SetUp(up))
	}
	require.NoError(t, p.server.WaitCarrier(deviceDeadline))
	require.NoError(t, p.client.WaitCarrier(deviceDeadline))
}

// backends build a pair in two fresh namespaces. They skip (or, with strict,
// fail) when the backend is unavailable.
var backends = map[string]func(t *testing.T, cfg config, server, client *busypoll.NetNS) pair{
	backendVeth:   setupVeth,
	backendNetdev: setupNetdevsim,
}

func setupVeth(t *testing.T, cfg config, server, client *busypoll.NetNS) pair {
	t.Helper()
	p, err := busypoll.NewVethPair(server, client,
		netip.MustParsePrefix(serverPrefix), netip.MustParsePrefix(clientPrefix))
	if errors.Is(err, busypoll.ErrNoVeth) {
		unavailable(t, cfg, "%v", err)
	}
	require.NoError(t, err, "veth pair")
	return pair{server: p.Server, client: p.Client}
}

func setupNetdevsim(t *testing.T, cfg config, server, client *busypoll.NetNS) pair {
	t.Helper()
	if err := netdevsim.Available(); err != nil {
		unavailable(t, cfg, "%v", err)
	}
	bus := netdevsim.Default()
	ctx, cancel := context.WithTimeout(context.Background(), deviceDeadline)
	defer cancel()
	var devs [2]*netdevsim.Device
	for i, ns := range []*busypoll.NetNS{server, client} {
		dev, err := bus.NewDevice(ctx, ns, 1, 1)
		require.NoError(t, err, "create netdevsim device in %s", ns)
		forget := onEmergency(func() { _ = dev.Delete() })
		t.Cleanup(func() {
			assert.NoError(t, dev.Delete(), "delete netdevsim%d", dev.ID)
			forget()
		})
		require.Len(t, dev.Ports, 1)
		devs[i] = dev
	}
	require.NoError(t, bus.Link(devs[0].Endpoint(0), devs[1].Endpoint(0)), "link netdevsim%d and netdevsim%d", devs[0].ID, devs[1].ID)
	t.Cleanup(func() { assert.NoError(t, bus.Unlink(devs[0].Endpoint(0))) })
	holdIfAsked(devs[0].ID, devs[1].ID)
	var p pair
	var err error
	p.server, err = busypoll.NewLink(server, devs[0].Ports[0].IfIndex, netip.MustParsePrefix(serverPrefix))
	require.NoError(t, err)
	p.client, err = busypoll.NewLink(client, devs[1].Ports[0].IfIndex, netip.MustParsePrefix(clientPrefix))
	require.NoError(t, err)
	// As on veth: with TSO, netdevsim carries 64 KiB segments, ~40 packets
	// per MiB, and busy polling has next to nothing to find.
	require.NoError(t, client.Do(func() error { return busypoll.SetOffload(p.client.Name, busypoll.TSO, false) }))
	require.NoError(t, p.server.WaitCarrier(deviceDeadline))
	require.NoError(t, p.client.WaitCarrier(deviceDeadline))
	return p
}

// unavailable skips, or fails where the user named the backend.
func unavailable(t *testing.T, cfg config, format string, args ...any) {
	t.Helper()
	if cfg.strict {
		t.Fatalf(format+" (and -busypoll.backend asks for it)", args...)
	}
	t.Skipf(format, args...)
}

func TestBusyPoll(t *testing.T) {
	cfg, err := flagsGiven().validate()
	require.NoError(t, err, "flags")
	if testing.Short() {
		t.Skip("skipped with -short: creates namespaces and devices and moves data through them")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN for namespaces, CAP_NET_ADMIN for napi-set): run with sudo")
	}
	// What the kernel lacks is found once and reported by every subtest
	// that needs it, so that an old kernel shows each scenario skipped.
	epollErr := busypoll.Supported()
	feats, featsErr := kernelFeatures(t)
	seed := seedFor(t)
	// A parent whose subtests all skipped skips too: go test would
	// otherwise report it as passed.
	ranAny := false
	for _, be := range cfg.backends {
		t.Run(be, func(t *testing.T) {
			ran := 0
			for _, sc := range scenarios {
				t.Run(sc.name, func(t *testing.T) {
					defer func() {
						if !t.Skipped() {
							ran++
						}
					}()
					for _, err := range []error{epollErr, featsErr, feats.Missing(append(baseNeeds, sc.needs...)...)} {
						if err != nil {
							t.Skipf("%v", err)
						}
					}
					runScenario(t, cfg, be, sc, seed)
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
// without the netdev family gives an error to skip with.
func kernelFeatures(t *testing.T) (napi.Features, error) {
	t.Helper()
	c, err := napi.Dial(-1)
	if errors.Is(err, os.ErrNotExist) {
		return napi.Features{}, fmt.Errorf("kernel has no netdev generic netlink family (napi-get needs Linux 6.9, napi-set 6.13): %w", err)
	}
	require.NoError(t, err)
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

func newNetNS(t *testing.T, label string) *busypoll.NetNS {
	t.Helper()
	ns, err := busypoll.NewNetNS(label)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, ns.Close()) })
	return ns
}

func runScenario(t *testing.T, cfg config, backend string, sc scenario, seed uint64) {
	server := newNetNS(t, "bpt-server")
	client := newNetNS(t, "bpt-client")
	p := backends[backend](t, cfg, server, client)

	nc, err := napi.Dial(server.FD())
	require.NoError(t, err, "netdev netlink socket in %s", server)
	t.Cleanup(func() { assert.NoError(t, nc.Close()) })

	params := busypoll.Params{Usecs: cfg.usecs, Budget: cfg.budget, Prefer: cfg.prefer && !sc.noPrefer}
	want := napi.Settings{
		DeferHardIRQs:     new(cfg.deferHardIRQs),
		GROFlushTimeout:   new(cfg.groFlush),
		IRQSuspendTimeout: new(time.Duration(0)),
	}
	if sc.suspend {
		want.IRQSuspendTimeout = new(cfg.suspend)
	}
	if sc.threaded != napi.ThreadedDisabled {
		want.Threaded = new(sc.threaded)
	}

	rounds := 1
	if sc.flap {
		rounds = 2
	}
	for round := 1; round <= rounds; round++ {
		if round > 1 {
			p.flap(t)
		}
		id := configureNAPI(t, nc, p.server, want)
		thread := threadOf(t, nc, id, sc)
		// Checks 1 to 3 hold for every transfer. Check 4 asks whether
		// busy polling happened at all: where a transfer saw none (the
		// poller raced the device's own rx processing and lost every time),
		// up to maxTransfers are made before it fails. How many it took is
		// logged; see the README for the distributions.
		var busyPolled uint64
		var segs, waits, n int
		for n = 1; n <= maxTransfers; n++ {
			res := transfer(t, cfg, p, params, seed+uint64(100*round+n), thread)
			checkTransfer(t, cfg, backend, sc, round, n, id, params, res)
			busyPolled += res.counters.BusyPollRxPackets
			segs += int(res.counters.InSegs)
			waits += res.stats.EpollWaits
			if !sc.mustBusyPoll || busyPolled > 0 || t.Failed() {
				break
			}
		}
		if sc.mustBusyPoll {
			assert.NotZero(t, busyPolled,
				"no packet was busy-polled in %d transfers of %d bytes: TcpExt BusyPollRxPackets of the receiving "+
					"namespace did not grow (%d TCP segments received in %d epoll_wait calls); the data arrived "+
					"through the device's own rx processing only", min(n, maxTransfers), cfg.size, segs, waits)
		}
	}
}

// maxTransfers bounds the transfers one round makes while waiting for check 4.
const maxTransfers = 20

// configureNAPI finds the server's NAPI, sets want on it (restoring the old
// settings at cleanup), reads the settings back and returns the NAPI id.
func configureNAPI(t *testing.T, nc *napi.Client, server busypoll.Link, want napi.Settings) uint32 {
	t.Helper()
	napis, err := nc.NAPIs(uint32(server.Index))
	require.NoError(t, err, "list the NAPIs of %s", server.Name)
	require.Len(t, napis, 1, "%s has one rx queue, so it must have exactly one NAPI: %+v", server.Name, napis)
	id := napis[0].ID

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
	return id
}

// threadOf returns the pid of the NAPI's kernel thread for a threaded
// scenario, 0 otherwise.
func threadOf(t *testing.T, nc *napi.Client, id uint32, sc scenario) int {
	t.Helper()
	if sc.threaded == napi.ThreadedDisabled {
		return 0
	}
	n, err := nc.NAPI(id)
	require.NoError(t, err)
	require.True(t, n.Has(napi.AttrPID) && n.PID != 0,
		"NAPI %d is threaded (%v) but the kernel reports no kernel thread pid", id, n.Threaded)
	return int(n.PID)
}

// result is what one transfer measured.
type result struct {
	sent, recvd       int64
	sentSum, recvdSum string
	stats             busypoll.Stats
	epoll             busypoll.Params // read back from the receiver's epoll
	counters          busypoll.Counters
	rxPackets         uint64        // received by the server device
	threadCPU         time.Duration // CPU time of the NAPI thread in the transfer
	threadIdleShare   float64       // its CPU time over wall time with no traffic
}

func transfer(t *testing.T, cfg config, p pair, params busypoll.Params, seed uint64, threadPID int) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()

	var rcv *busypoll.Receiver
	require.NoError(t, p.server.NS.Do(func() error {
		var err error
		rcv, err = busypoll.Listen(busypoll.ReceiverConfig{
			Addr:      netip.AddrPortFrom(p.server.Addr.Addr(), 0),
			Params:    params,
			MaxEvents: cfg.maxEvents,
		})
		return err
	}), "listen in %s", p.server.NS)
	defer rcv.Close()

	var res result
	var err error
	res.epoll, err = rcv.Params()
	require.NoError(t, err, "read the epoll parameters back")

	before := readCounters(t, p.server.NS)
	rxBefore, err := p.server.RxPackets()
	require.NoError(t, err)
	cpuBefore := threadCPUTime(t, threadPID)

	recvSum := sha256.New()
	type received struct {
		stats busypoll.Stats
		err   error
	}
	done := make(chan received, 1)
	go func() {
		st, err := rcv.Receive(ctx, recvSum)
		done <- received{st, err}
	}()

	sendSum := sha256.New()
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8(seedBytes(seed)), cfg.size), sendSum)
	sendErr := p.client.NS.Do(func() error {
		var err error
		res.sent, err = busypoll.Send(ctx, rcv.Addr(), src)
		return err
	})
	if sendErr != nil {
		cancel() // do not wait for a stream that will not end
	}
	r := <-done
	require.NoError(t, sendErr, "send %d bytes from %s to %v", cfg.size, p.client.NS, rcv.Addr())
	require.NoError(t, r.err, "receive in %s", p.server.NS)

	res.threadCPU = threadCPUTime(t, threadPID) - cpuBefore
	if threadPID != 0 {
		// With no traffic at all, a busy-polling NAPI thread keeps
		// polling, where a plain threaded NAPI sleeps.
		c0, w0 := threadCPUTime(t, threadPID), time.Now()
		time.Sleep(idleWindow)
		res.threadIdleShare = float64(threadCPUTime(t, threadPID)-c0) / float64(time.Since(w0))
	}
	res.counters = readCounters(t, p.server.NS).Sub(before)
	rxAfter, err := p.server.RxPackets()
	require.NoError(t, err)
	res.rxPackets = rxAfter - rxBefore
	res.stats, res.recvd = r.stats, r.stats.Bytes
	res.sentSum, res.recvdSum = sum(sendSum), sum(recvSum)
	return res
}

func checkTransfer(t *testing.T, cfg config, backend string, sc scenario, round, n int, id uint32, params busypoll.Params, res result) {
	t.Helper()
	name := sc.name
	if sc.flap {
		name = fmt.Sprintf("%s round %d", sc.name, round)
	}
	if n > 1 {
		name = fmt.Sprintf("%s transfer %d", name, n)
	}
	c := res.counters
	share := 0.0
	if res.rxPackets > 0 {
		share = 100 * float64(c.BusyPollRxPackets) / float64(res.rxPackets)
	}
	thread := ""
	if sc.threaded != napi.ThreadedDisabled {
		thread = fmt.Sprintf(", napi thread CPU %v, %.0f%% of a CPU with no traffic",
			res.threadCPU.Round(time.Microsecond), 100*res.threadIdleShare)
	}
	t.Logf("%s/%s: napi %d, %d bytes in %v, %.1f MiB/s, busy-polled %d of %d rx packets (%.0f%%), %d TCP segments after GRO, %d epoll_wait%s",
		backend, name, id, res.recvd, res.stats.Elapsed.Round(time.Microsecond), res.stats.MiBPerSec(),
		c.BusyPollRxPackets, res.rxPackets, share, c.InSegs, res.stats.EpollWaits, thread)

	// 1. Every byte arrived, unchanged.
	assert.Equal(t, cfg.size, res.sent, "bytes sent")
	assert.Equal(t, res.sent, res.recvd, "bytes received")
	assert.Equal(t, res.sentSum, res.recvdSum, "SHA-256 of the stream received differs from the one sent")

	// 2. The epoll parameters read back equal those set (NAPI settings were
	// checked in configureNAPI).
	assert.Equal(t, params, res.epoll, "epoll busy-poll parameters read back (EPIOCGPARAMS)")

	// 3. The data came through the NAPI that was configured.
	assert.Equal(t, id, res.stats.NAPIID,
		"SO_INCOMING_NAPI_ID of the accepted socket is not the NAPI that was configured")

	// 4. Busy polling really happened (BusyPollRxPackets: see runScenario).
	if sc.mustRunThread {
		assert.Positive(t, res.threadCPU,
			"the NAPI's kernel thread used no CPU during the transfer: threaded busy polling did not run")
		assert.GreaterOrEqual(t, res.threadIdleShare, minIdleSpin,
			"with no traffic the NAPI's kernel thread used %.0f%% of a CPU over %v; a thread that busy polls "+
				"keeps polling (measured 97-100%%), a plain threaded NAPI sleeps (1-2%%)",
			100*res.threadIdleShare, idleWindow)
	}
}

func readCounters(t *testing.T, ns *busypoll.NetNS) busypoll.Counters {
	t.Helper()
	var c busypoll.Counters
	require.NoError(t, ns.Do(func() error {
		var err error
		c, err = busypoll.ReadCounters()
		return err
	}), "read TCP counters of %s", ns)
	return c
}

// idleWindow is how long the NAPI thread is watched with no traffic, and
// minIdleSpin the share of it a busy-polling thread must spend on a CPU.
// Measured (7.3.4 in the VM, veth and netdevsim): threaded busy-poll 97 to
// 100 %, threaded enabled (no busy poll) 1 to 2 %.
const (
	idleWindow  = 100 * time.Millisecond
	minIdleSpin = 0.25
)

// threadCPUTime returns the CPU time a thread has used so far, from
// /proc/PID/schedstat (nanoseconds), or 0 for pid 0.
func threadCPUTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	if pid == 0 {
		return 0
	}
	path := fmt.Sprintf("/proc/%d/schedstat", pid)
	f, err := os.Open(path)
	require.NoError(t, err, "CPU time of the NAPI thread")
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString(' ')
	require.NoError(t, err, "read %s", path)
	ns, err := strconv.ParseInt(strings.TrimSpace(line), 10, 64)
	require.NoError(t, err, "parse %s", path)
	return time.Duration(ns)
}

func seedBytes(seed uint64) [32]byte {
	var b [32]byte
	for i := range 4 {
		for j := range 8 {
			b[i*8+j] = byte(seed >> (8 * j))
		}
		seed = seed*6364136223846793005 + 1442695040888963407
	}
	return b
}

func sum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }

// Emergency cleanup: netdevsim devices outlive the process that made them
// (namespaces do not: they are held by descriptors), so they are also
// deleted on SIGINT and SIGTERM, and just before the test binary's own
// -test.timeout panics, which skips t.Cleanup.
var emergency = struct {
	sync.Mutex
	next  int
	funcs map[int]func()
}{funcs: map[int]func(){}}

// onEmergency registers f and returns a function that unregisters it.
func onEmergency(f func()) (forget func()) {
	emergency.Lock()
	defer emergency.Unlock()
	k := emergency.next
	emergency.next++
	emergency.funcs[k] = f
	return func() {
		emergency.Lock()
		defer emergency.Unlock()
		delete(emergency.funcs, k)
	}
}

func runEmergency(why string) {
	emergency.Lock()
	defer emergency.Unlock()
	if len(emergency.funcs) > 0 {
		fmt.Fprintf(os.Stderr, "busypolltest: %s: deleting %d netdevsim device(s)\n", why, len(emergency.funcs))
	}
	for k, f := range emergency.funcs {
		f()
		delete(emergency.funcs, k)
	}
}

func TestMain(m *testing.M) {
	flag.Parse()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		s := <-sigs
		runEmergency("got " + s.String())
		signal.Reset()
		fmt.Fprintf(os.Stderr, "busypolltest: interrupted by %v\n", s)
		os.Exit(2)
	}()
	if d := testTimeout(); d > 0 {
		margin := min(d/10, 5*time.Second)
		watchdog := time.AfterFunc(d-margin, func() { runEmergency("-test.timeout is about to expire") })
		defer watchdog.Stop()
	}
	os.Exit(m.Run())
}

// testTimeout returns -test.timeout, 0 if unset.
func testTimeout() time.Duration {
	f := flag.Lookup("test.timeout")
	if f == nil {
		return 0
	}
	if g, ok := f.Value.(flag.Getter); ok {
		if d, ok := g.Get().(time.Duration); ok {
			return d
		}
	}
	return 0
}

func TestBusyPollFlags(t *testing.T) {
	good := rawFlags{size: "1MiB", budget: 16, prefer: 1, defers: 100, maxEvents: 8,
		gro: 50 * time.Microsecond, suspend: 20 * time.Millisecond, timeout: 30 * time.Second, backend: "auto"}
	cfg, err := good.validate()
	require.NoError(t, err)
	assert.Equal(t, int64(1<<20), cfg.size)
	assert.Equal(t, []string{backendNetdev, backendVeth}, cfg.backends)
	assert.False(t, cfg.strict)

	tests := []struct {
		name    string
		change  func(*rawFlags)
		wantErr string
	}{
		{"size zero", func(r *rawFlags) { r.size = "0" }, `-busypoll.size="0" out of range: must be 1 B to 64 GiB`},
		{"size too big", func(r *rawFlags) { r.size = "65GiB" }, "must be 1 B to 64 GiB"},
		{"size garbage", func(r *rawFlags) { r.size = "lots" }, `-busypoll.size="lots": not a byte count`},
		{"usecs", func(r *rawFlags) { r.usecs = 1 << 31 }, "-busypoll.usecs=2147483648 out of range: must be 0 to 2147483647"},
		{"budget", func(r *rawFlags) { r.budget = 65536 }, "-busypoll.budget=65536 out of range: must be 0 to 65535"},
		{"prefer", func(r *rawFlags) { r.prefer = 2 }, "-busypoll.prefer=2 out of range: must be 0 or 1"},
		{"defer", func(r *rawFlags) { r.defers = 1 << 31 }, "-busypoll.defer-hard-irqs=2147483648 out of range"},
		{"max events", func(r *rawFlags) { r.maxEvents = 0 }, "-busypoll.max-events=0 out of range: must be 1 to"},
		{"gro", func(r *rawFlags) { r.gro = -1 }, "-busypoll.gro-flush-timeout=-1ns out of range"},
		{"suspend", func(r *rawFlags) { r.suspend = -time.Second }, "-busypoll.suspend-timeout=-1s out of range"},
		{"timeout", func(r *rawFlags) { r.timeout = 0 }, "-busypoll.timeout=0s out of range: must be positive"},
		{"backend", func(r *rawFlags) { r.backend = "loopback" }, `-busypoll.backend="loopback": must be auto, netdevsim or veth`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.change(&r)
			_, err := r.validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}

	sizes := map[string]int64{"1": 1, "100B": 100, "512KiB": 512 << 10, "64MiB": 64 << 20, "2GiB": 2 << 30}
	for in, want := range sizes {
		got, err := parseSize(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	r := good
	r.backend = "veth"
	cfg, err = r.validate()
	require.NoError(t, err)
	assert.True(t, cfg.strict)
}

// holdEnv makes a child run of this binary (TestBusyPollLeavesNothing) print
// its netdevsim ids and stop, devices created, until it is killed.
const holdEnv = "BUSYPOLLTEST_HOLD_AFTER_SETUP"

func holdIfAsked(ids ...int) {
	if os.Getenv(holdEnv) == "" {
		return
	}
	fmt.Printf("HOLDING %v\n", ids)
	select {}
}

// TestBusyPollLeavesNothing runs TestBusyPoll's netdevsim setup in a child
// process, stops it there with SIGINT, SIGTERM or an expiring -test.timeout
// (none of which runs t.Cleanup), and checks that the child's netdevsim
// devices are gone all the same.
func TestBusyPollLeavesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("skipped with -short: creates netdevsim devices")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to create netdevsim devices")
	}
	if os.Getenv(holdEnv) != "" {
		t.Skip("this is the child run")
	}
	if err := netdevsim.Available(); err != nil {
		t.Skipf("%v", err)
	}
	tests := []struct {
		name    string
		args    []string
		signal  os.Signal // nil: wait for -test.timeout
		wantErr string
	}{
		{"SIGINT", nil, syscall.SIGINT, "interrupted by interrupt"},
		{"SIGTERM", nil, syscall.SIGTERM, "interrupted by terminated"},
		{"test timeout", []string{"-test.timeout=3s"}, nil, "-test.timeout is about to expire"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"-test.run=^TestBusyPoll$/^netdevsim$/^plain$", "-test.v"}, tt.args...)
			cmd := exec.Command(os.Args[0], args...)
			cmd.Env = append(os.Environ(), holdEnv+"=1")
			out, err := cmd.StdoutPipe()
			require.NoError(t, err)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill() })

			var ids []int
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "HOLDING "); ok {
					for _, f := range strings.Fields(strings.Trim(rest, "[]")) {
						id, err := strconv.Atoi(f)
						require.NoError(t, err)
						ids = append(ids, id)
					}
					break
				}
			}
			require.Len(t, ids, 2, "the child did not reach the hold point; stderr: %s", stderr.String())
			t.Cleanup(func() {
				for _, id := range ids { // only if the check below failed
					assert.NoError(t, netdevsim.Default().DeleteDevice(id))
				}
			})
			for _, id := range ids {
				require.DirExists(t, netdevsim.Default().DevicePath(id)+"/", "the child's device exists while it holds")
			}
			if tt.signal != nil {
				require.NoError(t, cmd.Process.Signal(tt.signal))
			}
			go func() { _, _ = io.Copy(io.Discard, out) }()
			err = cmd.Wait()
			assert.Error(t, err, "the child must not pass")
			assert.Contains(t, stderr.String(), tt.wantErr)
			for _, id := range ids {
				_, err := os.Stat(netdevsim.Default().DevicePath(id))
				assert.ErrorIs(t, err, os.ErrNotExist, "netdevsim%d of the stopped child is still on the bus", id)
			}
		})
	}
}
