// Package measure makes one transfer of TestBusyPoll and measures it: the
// stream's checksums, the kernel's busy-poll counters of the receiving
// namespace, the server device's rx packets, the CPU time of a NAPI's
// kernel thread (from /proc/PID/schedstat) and the interrupts of a NAPI's
// line.
package measure

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"io"
	"math/rand/v2"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll"
	"github.com/netdev-go/busypolltest/busypoll/link"
	"github.com/netdev-go/busypolltest/busypoll/namespace"
	"github.com/netdev-go/busypolltest/napi/irqs"
)

// Result is what one transfer measured.
type Result struct {
	Sent, Recvd       int64  // bytes
	SentSum, RecvdSum string // SHA-256 of the stream sent and received
	Stats             busypoll.Stats
	Epoll             busypoll.Params // read back from the receiver's epoll
	Counters          busypoll.Counters
	RxPackets         uint64        // received by the server device
	ThreadCPU         time.Duration // CPU time of the NAPI thread in the transfer
	ThreadIdleShare   float64       // its CPU time over wall time with no traffic
	IRQs              uint64        // interrupts of the receiving NAPI's line (nic)
}

// Setup is what a transfer runs over and with.
type Setup struct {
	Server, Client link.Link
	// IRQ holds the server NAPIs' interrupt lines, to count (nic); nil:
	// none.
	IRQ       map[uint32]irqs.Line
	Size      int64         // bytes to send
	Timeout   time.Duration // limit of the whole transfer
	MaxEvents int           // of the receiver's epoll_wait
	// KeepBusyRead leaves SO_BUSY_POLL of the receiver's sockets as
	// net.core.busy_read sets it.
	KeepBusyRead bool
	Params       busypoll.Params // the receiver's epoll parameters
	Seed         uint64          // of the random payload
	ThreadPID    int             // the NAPI's kernel thread, to measure; 0: none
}

// Transfer streams s.Size random bytes from the client to a busy-polling
// receiver at the server and measures what happened meanwhile: the stream's
// checksums, the epoll parameters read back, the server namespace's
// busy-poll counters, rx packets, the NAPI thread's CPU time (and its share
// of a CPU with no traffic) and the interrupts of the receiving NAPI.
func Transfer(t *testing.T, s Setup) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), s.Timeout)
	defer cancel()

	var rcv *busypoll.Receiver
	require.NoError(t, s.Server.NS.Do(func() error {
		var err error
		rcv, err = busypoll.Listen(busypoll.ReceiverConfig{
			Addr:      netip.AddrPortFrom(s.Server.Addr.Addr(), 0),
			Params:    s.Params,
			MaxEvents: s.MaxEvents,
			// net.core.busy_read must not busy-poll the socket's reads:
			// only the epoll parameters may.
			NoSocketBusyPoll: !s.KeepBusyRead,
		})
		return err
	}), "listen in %s", s.Server.NS)
	defer rcv.Close()

	var res Result
	var err error
	res.Epoll, err = rcv.Params()
	require.NoError(t, err, "read the epoll parameters back")

	before := readCounters(t, s.Server.NS)
	rxBefore, err := s.Server.RxPackets()
	require.NoError(t, err)
	cpuBefore := ThreadCPUTime(t, s.ThreadPID)
	irqsBefore := countIRQs(t, s.IRQ)

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
	src := io.TeeReader(io.LimitReader(rand.NewChaCha8(seedBytes(s.Seed)), s.Size), sendSum)
	sendErr := s.Client.NS.Do(func() error {
		var err error
		res.Sent, err = busypoll.Send(ctx, rcv.Addr(), src)
		return err
	})
	if sendErr != nil {
		cancel() // do not wait for a stream that will not end
	}
	r := <-done
	require.NoError(t, sendErr, "send %d bytes from %s to %v", s.Size, s.Client.NS, rcv.Addr())
	require.NoError(t, r.err, "receive in %s", s.Server.NS)

	irqsAfter := countIRQs(t, s.IRQ)
	res.IRQs = irqsAfter[r.stats.NAPIID] - irqsBefore[r.stats.NAPIID]
	res.ThreadCPU = ThreadCPUTime(t, s.ThreadPID) - cpuBefore
	if s.ThreadPID != 0 {
		// With no traffic at all, a busy-polling NAPI thread keeps
		// polling, where a plain threaded NAPI sleeps.
		c0, w0 := ThreadCPUTime(t, s.ThreadPID), time.Now()
		time.Sleep(IdleWindow)
		res.ThreadIdleShare = float64(ThreadCPUTime(t, s.ThreadPID)-c0) / float64(time.Since(w0))
	}
	res.Counters = readCounters(t, s.Server.NS).Sub(before)
	rxAfter, err := s.Server.RxPackets()
	require.NoError(t, err)
	res.RxPackets = rxAfter - rxBefore
	res.Stats, res.Recvd = r.stats, r.stats.Bytes
	res.SentSum, res.RecvdSum = sum(sendSum), sum(recvSum)
	return res
}

// countIRQs reads the interrupt count of each line, by NAPI id.
func countIRQs(t *testing.T, lines map[uint32]irqs.Line) map[uint32]uint64 {
	t.Helper()
	counts := make(map[uint32]uint64, len(lines))
	for id, l := range lines {
		n, err := l.Count()
		require.NoError(t, err)
		counts[id] = n
	}
	return counts
}

// readCounters reads the TCP counters of ns.
func readCounters(t *testing.T, ns *namespace.NetNS) busypoll.Counters {
	t.Helper()
	var c busypoll.Counters
	require.NoError(t, ns.Do(func() error {
		var err error
		c, err = busypoll.ReadCounters()
		return err
	}), "read TCP counters of %s", ns)
	return c
}

// IdleWindow is how long the NAPI thread is watched with no traffic, and
// MinIdleSpin the share of it a busy-polling thread must spend on a CPU.
// A busy-polling thread spins near a whole CPU, a plain threaded one next to
// none, so the bound sits far from both (testdata/README.md).
const (
	IdleWindow  = 100 * time.Millisecond
	MinIdleSpin = 0.25
)

// ThreadCPUTime returns the CPU time a thread has used so far, from
// /proc/PID/schedstat (nanoseconds), or 0 for pid 0.
func ThreadCPUTime(t *testing.T, pid int) time.Duration {
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

// seedBytes makes a ChaCha8 seed of seed.
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

// sum is h's sum in hex.
func sum(h hash.Hash) string { return hex.EncodeToString(h.Sum(nil)) }
