package busypoll_test

import (
	"context"
	"flag"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/netdev-go/busypolltest/busypoll"
	"github.com/netdev-go/busypolltest/napi"
)

// The benchmarks run as root on a veth pair between two namespaces that they
// create, and skip, saying why, as a normal user:
//
//	go test -run '^$' -bench . -benchtime 3x ./busypoll
//
// Each reports, besides its own metrics, busypolled-% (the share of the
// packets the server end received that busy polling delivered:
// TcpExt BusyPollRxPackets over the device's rx packets) and other-cpu-%
// (the CPU time the rest of the machine used meanwhile, 100 = one CPU),
// so that a result taken on a busy machine says so.

var (
	flagBenchUsecs = flag.Uint64("busypoll.bench-usecs", defaultRTTUsecs,
		"busy-poll usecs of BenchmarkRoundTrip's busy-poll and busy-poll-suspend (0 to 2147483647)")
	flagBenchPin = flag.Bool("busypoll.bench-pin", true,
		"run BenchmarkRoundTrip's server and client on two different CPUs")
)

// throughputSize is what one iteration streams through each reader.
const throughputSize = 64 << 20

// idealBufferSize is the ideal reader's read buffer.
const idealBufferSize = 1 << 20

// selftestParams are the epoll settings of the kernel selftest's receiver.
var selftestParams = busypoll.Params{Usecs: 0, Budget: 16, Prefer: true}

// NAPI settings: the selftest's defer-hard-irqs and gro-flush-timeout, with
// and without IRQ suspension (as TestBusyPoll applies them).
var (
	napiPlain   = napiSettings(100, 50*time.Microsecond, 0)
	napiSuspend = napiSettings(100, 50*time.Microsecond, 20*time.Millisecond)
)

func napiSettings(deferIRQs uint32, gro, suspend time.Duration) napi.Settings {
	return napi.Settings{DeferHardIRQs: &deferIRQs, GROFlushTimeout: &gro, IRQSuspendTimeout: &suspend}
}

// BenchmarkReceiverThroughput streams 64 MiB per iteration through the
// busy-poll receiver (the selftest's epoll parameters, max events 8,
// writing to io.Discard) and 64 MiB through an ideal reader (blocking
// read(2) into a 1 MiB buffer, discarding) over the same veth pair, taking
// turns (receiver first in even iterations, ideal first in odd ones) so
// that drift in the machine's load affects both alike. The sender is the
// same for both: busypoll.Send from a repeated 1 MiB buffer.
//
// It reports medians over the iterations: each reader's MiB/s (64 MiB over
// the wall time from the connect to the end of the stream) and ratio-%, the
// receiver's rate over the ideal reader's in the same iteration. Each pair
// runs back to back, so a burst of other work on the machine spoils a pair
// rather than the result. It also reports the busy-polled share of the
// receiver's packets.
func BenchmarkReceiverThroughput(b *testing.B) {
	env := newBenchEnv(b)
	src := newRepeatReader(1 << 20)
	idealBuf := make([]byte, idealBufferSize)
	for _, bc := range []struct {
		name string
		napi napi.Settings
	}{
		{"plain", napiPlain},
		{"suspend", napiSuspend},
	} {
		b.Run(bc.name, func(b *testing.B) {
			env.setNAPI(b, bc.napi)
			rcv := env.listen(b, busypoll.ReceiverConfig{Params: selftestParams, MaxEvents: 8})
			ln := env.listenIdeal(b)
			idealAddr := ln.Addr().(*net.TCPAddr).AddrPort()

			// run streams 64 MiB to addr, read by serve, and returns the
			// rate and the packets busy polling delivered and the device
			// received meanwhile. Both readers go through exactly the same
			// steps, counters included, so that neither has an edge.
			run := func(addr netip.AddrPort, serve func(context.Context) (int64, error), abort func()) (mibps float64, polled, rx uint64) {
				before, rxBefore := env.counters(b), env.rxPackets(b)
				d := env.transfer(b, addr, throughputSize, src, serve, abort)
				polled = env.counters(b).Sub(before).BusyPollRxPackets
				rx = env.rxPackets(b) - rxBefore
				return throughputSize / (1 << 20) / d.Seconds(), polled, rx
			}
			var polled, rx uint64 // of the receiver's transfers
			runReceiver := func() float64 {
				r, p, n := run(rcv.Addr(), func(ctx context.Context) (int64, error) {
					st, err := rcv.Receive(ctx, io.Discard)
					return st.Bytes, err
				}, func() {})
				polled, rx = polled+p, rx+n
				return r
			}
			runIdeal := func() float64 {
				r, _, _ := run(idealAddr, func(context.Context) (int64, error) {
					return idealRead(ln, idealBuf)
				}, func() { ln.Close() })
				return r
			}

			// Warm up: the first connections on a new pair are slower
			// (neighbour and TCP metrics caches are empty), which would
			// count against whichever reader goes first.
			runIdeal()
			runReceiver()
			polled, rx = 0, 0

			meter := startCPUMeter()
			var rcvRates, idealRates, ratios []float64 // MiB/s, MiB/s, %
			for b.Loop() {
				var r, i float64
				if len(ratios)%2 == 0 {
					r, i = runReceiver(), runIdeal()
				} else {
					i, r = runIdeal(), runReceiver()
				}
				rcvRates, idealRates = append(rcvRates, r), append(idealRates, i)
				ratios = append(ratios, 100*r/i)
			}
			b.ReportMetric(median(rcvRates), "receiver-MiB/s")
			b.ReportMetric(median(idealRates), "ideal-MiB/s")
			b.ReportMetric(median(ratios), "ratio-%")
			b.ReportMetric(share(polled, rx), "busypolled-%")
			b.ReportMetric(meter.OtherPercent(), "other-cpu-%")
		})
	}
}

// Round trips: each iteration times rttCount round trips of rttMessageSize
// bytes.
const (
	rttMessageSize = 64
	rttCount       = 2000
)

// defaultRTTUsecs is the busy-poll time of BenchmarkRoundTrip's busy-poll
// cases. With usecs 0 (the selftest's value) epoll_wait polls the NAPI once
// and goes to sleep, so the next request, which comes a few microseconds
// later, finds the server asleep as with plain epoll; with IRQ suspension
// it even waits for the gro-flush-timeout (50 µs) timer. The poll must
// outlast the client's turn around: measured on veth here, 10 µs still
// missed 7-22 % of the requests, 25 µs and more caught over 96 %, and 25,
// 50, 100 and 200 µs gave the same median within the noise. 50 µs leaves
// room for a slower client.
const defaultRTTUsecs = 50

// BenchmarkRoundTrip measures request/response latency over the veth pair:
// a client in its own namespace writes a 64-byte message and waits for the
// receiver's Echo to send it back, 2000 times per iteration, on a blocking
// socket. (busypoll.RoundTrips reads through Go's poller, which wakes a
// second thread for every reply; with it the medians here were 22-29 µs in
// all three cases, which hid most of what busy polling saves.)
//
// The server and the client run on two different CPUs, as on two hosts
// (-busypoll.bench-pin=false lets the scheduler place them): on one CPU a
// busy-polling server spins where the client would run, and the plain
// wake-up is cheapest, so busy polling cannot win there. Throughput is not
// pinned: a pinned thread cannot leave a CPU that other work is using, and
// pinned transfers varied far more on a busy machine.
//
//   - plain-epoll: an epoll instance without busy-poll parameters, the
//     NAPI as the device came up.
//   - busy-poll: busy-poll usecs (-busypoll.bench-usecs), budget 16,
//     prefer-busy-poll; the NAPI as the device came up.
//   - busy-poll-suspend: the same, with NAPI defer-hard-irqs 100,
//     gro-flush-timeout 50 µs and irq-suspend-timeout 20 ms.
//
// It reports the median and the 99th percentile of all round trips.
func BenchmarkRoundTrip(b *testing.B) {
	busy, err := busypoll.NewParams(*flagBenchUsecs, 16, 1)
	if err != nil {
		b.Fatalf("-busypoll.bench-usecs: %v", err)
	}
	env := newBenchEnv(b)
	for _, bc := range []struct {
		name   string
		params busypoll.Params
		napi   napi.Settings
	}{
		{"plain-epoll", busypoll.Params{}, env.defaults},
		{"busy-poll", busy, env.defaults},
		{"busy-poll-suspend", busy, napiSuspend},
	} {
		b.Run(bc.name, func(b *testing.B) {
			env.setNAPI(b, bc.napi)
			rcv := env.listen(b, busypoll.ReceiverConfig{Params: bc.params, MaxEvents: 8})
			meter := startCPUMeter()
			var all []time.Duration
			var polled, rx uint64
			for b.Loop() {
				before, rxBefore := env.counters(b), env.rxPackets(b)
				all = append(all, env.roundTrips(b, rcv, rttMessageSize, rttCount)...)
				polled += env.counters(b).Sub(before).BusyPollRxPackets
				rx += env.rxPackets(b) - rxBefore
			}
			sorted := sortedCopy(all)
			b.ReportMetric(usec(percentile(sorted, 50)), "p50-µs")
			b.ReportMetric(usec(percentile(sorted, 99)), "p99-µs")
			b.ReportMetric(share(polled, rx), "busypolled-%")
			b.ReportMetric(meter.OtherPercent(), "other-cpu-%")
		})
	}
}
