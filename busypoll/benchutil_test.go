package busypoll_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/netdev-go/busypolltest/busypoll"
	"github.com/netdev-go/busypolltest/busypoll/link"
	"github.com/netdev-go/busypolltest/busypoll/testnet"
	"github.com/netdev-go/busypolltest/napi"
)

// Addresses of the benchmark's veth pair. They exist only inside the
// namespaces the benchmark creates (RFC 2544 benchmarking range).
var (
	benchServerPrefix = netip.MustParsePrefix("198.18.7.1/24")
	benchClientPrefix = netip.MustParsePrefix("198.18.7.2/24")
)

// benchTimeout bounds one transfer or one batch of round trips, so that a
// broken pair fails the benchmark instead of hanging it.
const benchTimeout = 60 * time.Second

// benchEnv is a veth pair between two namespaces made for one benchmark,
// with a netdev netlink client in the server namespace and the server end's
// only NAPI.
type benchEnv struct {
	server, client link.Link
	nc             *napi.Client
	napiID         uint32
	// defaults are the NAPI's settings as the device came up.
	defaults napi.Settings
}

// newBenchEnv skips unless the process is root and the kernel has epoll
// busy polling and napi-set with irq-suspend-timeout, then builds the pair.
// Everything goes away at the benchmark's cleanup.
func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	if os.Geteuid() != 0 {
		skipBench(b, "needs root (CAP_SYS_ADMIN for namespaces, CAP_NET_ADMIN for napi-set): run with sudo")
	}
	if err := busypoll.Supported(); err != nil {
		skipBench(b, "%v", err)
	}
	server := testnet.NetNS(b, "bench-sv")
	client := testnet.NetNS(b, "bench-cl")

	nc, err := napi.Dial(server.FD())
	if errors.Is(err, os.ErrNotExist) {
		skipBench(b, "kernel has no netdev generic netlink family (napi-set needs Linux 6.13): %v", err)
	}
	if err != nil {
		b.Fatalf("netdev netlink socket in %s: %v", server, err)
	}
	b.Cleanup(func() { nc.Close() })
	feats, err := nc.Features()
	if err != nil {
		b.Fatalf("read the kernel's napi-set policy: %v", err)
	}
	if err := feats.Missing(napi.FeatureNAPISet, napi.FeatureDeferHardIRQs,
		napi.FeatureGROFlushTimeout, napi.FeatureIRQSuspendTimeout); err != nil {
		skipBench(b, "%v", err)
	}

	p := testnet.VethPair(b, server, client, benchServerPrefix, benchClientPrefix)
	napis, err := nc.NAPIs(uint32(p.Server.Index))
	if err != nil {
		b.Fatalf("list the NAPIs of %s: %v", p.Server.Name, err)
	}
	if len(napis) != 1 {
		b.Fatalf("%s has one rx queue and GRO on, so it must have exactly one NAPI, has %d: %+v", p.Server.Name, len(napis), napis)
	}
	e := &benchEnv{server: p.Server, client: p.Client, nc: nc, napiID: napis[0].ID, defaults: napis[0].Settings()}
	b.Cleanup(func() {
		// The device goes away with its namespace; this matters only if
		// the namespace outlives the benchmark.
		if err := nc.Restore(e.napiID, e.defaults); err != nil && !errors.Is(err, os.ErrNotExist) {
			b.Errorf("restore NAPI %d to %v: %v", e.napiID, e.defaults, err)
		}
	})
	return e
}

// skipBench skips b. Without -v, go test prints nothing for a skipped
// benchmark, and the run would look as if it had measured something: so the
// reason also goes to stderr.
func skipBench(b *testing.B, format string, args ...any) {
	b.Helper()
	if !testing.Verbose() {
		fmt.Fprintf(os.Stderr, "%s: skipped: %s\n", b.Name(), fmt.Sprintf(format, args...))
	}
	b.Skipf(format, args...)
}

// setNAPI applies s to the server's NAPI and checks that it reads back.
func (e *benchEnv) setNAPI(b *testing.B, s napi.Settings) {
	b.Helper()
	if err := e.nc.SetNAPI(e.napiID, s); err != nil {
		b.Fatalf("napi-set %d %v: %v", e.napiID, s, err)
	}
	n, err := e.nc.NAPI(e.napiID)
	if err != nil {
		b.Fatalf("napi-get %d: %v", e.napiID, err)
	}
	// The fields that s sets, as the kernel reports them.
	got := n.Settings().Only(s.Attrs())
	if !got.Equal(s) {
		b.Fatalf("NAPI %d reads back %v after napi-set %v", e.napiID, got, s)
	}
}

// listen starts a busy-poll receiver in the server namespace.
func (e *benchEnv) listen(b *testing.B, cfg busypoll.ReceiverConfig) *busypoll.Receiver {
	b.Helper()
	cfg.Addr = netip.AddrPortFrom(e.server.Addr.Addr(), 0)
	var r *busypoll.Receiver
	err := e.server.NS.Do(func() (err error) {
		r, err = busypoll.Listen(cfg)
		return err
	})
	if err != nil {
		b.Fatalf("listen in %s: %v", e.server.NS, err)
	}
	b.Cleanup(func() { r.Close() })
	got, err := r.Params()
	if err != nil {
		b.Fatalf("read the epoll parameters back: %v", err)
	}
	if got != cfg.Params {
		b.Fatalf("epoll parameters read back %v, set %v", got, cfg.Params)
	}
	return r
}

// listenIdeal opens a plain net.Listener in the server namespace for the
// ideal reader.
func (e *benchEnv) listenIdeal(b *testing.B) *net.TCPListener {
	b.Helper()
	var ln net.Listener
	err := e.server.NS.Do(func() (err error) {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(e.server.Addr.Addr(), 0).String())
		return err
	})
	if err != nil {
		b.Fatalf("listen in %s: %v", e.server.NS, err)
	}
	b.Cleanup(func() { ln.Close() })
	return ln.(*net.TCPListener)
}

// idealRead accepts one connection on ln and reads it to the end with
// blocking read(2) calls into buf, discarding the data: the least a reader
// can do per byte, with no readiness notification at all.
//
// It reads a duplicate of the connection's descriptor, made with dup(2)
// rather than File (whose duplicate Go registers with its poller, which
// would then be woken by every arrival of data), switched to blocking mode
// after the connection itself, and with it the poller's registration, is
// gone.
func idealRead(ln *net.TCPListener, buf []byte) (int64, error) {
	conn, err := ln.AcceptTCP()
	if err != nil {
		return 0, fmt.Errorf("accept: %w", err)
	}
	fd, err := dupConn(conn)
	conn.Close()
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	if err := unix.SetNonblock(fd, false); err != nil {
		return 0, fmt.Errorf("make the connection blocking: %w", err)
	}
	var total int64
	for {
		n, err := unix.Read(fd, buf)
		switch {
		case err == unix.EINTR:
		case err != nil:
			return total, fmt.Errorf("read after %d bytes: %w", total, err)
		case n == 0:
			return total, nil
		default:
			total += int64(n)
		}
	}
}

// dupConn returns a duplicate of conn's descriptor, made with dup(2).
func dupConn(conn *net.TCPConn) (int, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return -1, fmt.Errorf("the connection's descriptor: %w", err)
	}
	fd := -1
	var dupErr error
	if err := rc.Control(func(s uintptr) { fd, dupErr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, fmt.Errorf("the connection's descriptor: %w", err)
	}
	if dupErr != nil {
		return -1, fmt.Errorf("duplicate the connection's descriptor: %w", dupErr)
	}
	return fd, nil
}

// transfer streams size bytes from the client namespace to addr while serve
// reads them on another goroutine, and returns the wall time from before the
// connect until both sides have finished. serve must give up when ctx ends.
func (e *benchEnv) transfer(b *testing.B, addr netip.AddrPort, size int64, src *repeatReader,
	serve func(ctx context.Context) (int64, error), abort func()) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	type served struct {
		n   int64
		err error
	}
	done := make(chan served, 1)
	go func() {
		n, err := serve(ctx)
		done <- served{n, err}
	}()
	src.Reset(size)
	start := time.Now()
	var sent int64
	sendErr := e.client.NS.Do(func() (err error) {
		sent, err = busypoll.Send(ctx, addr, src)
		return err
	})
	if sendErr != nil {
		cancel()
		abort()
	}
	r := <-done
	elapsed := time.Since(start)
	if sendErr != nil {
		b.Fatalf("send %d bytes from %s to %v: %v", size, e.client.NS, addr, sendErr)
	}
	if r.err != nil {
		b.Fatalf("read %v in %s: %v", addr, e.server.NS, r.err)
	}
	if sent != size || r.n != size {
		b.Fatalf("sent %d bytes and received %d, want %d", sent, r.n, size)
	}
	return elapsed
}

// cpus returns the CPUs for the server and the client of the round trips,
// or -1 for both when they are not to be pinned (-busypoll.bench-pin=false,
// or a process allowed on one CPU only).
func (e *benchEnv) cpus() (server, client int) {
	if !*flagBenchPin {
		return -1, -1
	}
	if r, w, ok := benchCPUs(); ok {
		return r, w
	}
	return -1, -1
}

// counters reads the server namespace's busy-poll counters.
func (e *benchEnv) counters(b *testing.B) busypoll.Counters {
	b.Helper()
	var c busypoll.Counters
	err := e.server.NS.Do(func() (err error) {
		c, err = busypoll.ReadCounters()
		return err
	})
	if err != nil {
		b.Fatalf("read the TCP counters of %s: %v", e.server.NS, err)
	}
	return c
}

// rxPackets reads the number of packets the server end has received.
func (e *benchEnv) rxPackets(b *testing.B) uint64 {
	b.Helper()
	n, err := e.server.RxPackets()
	if err != nil {
		b.Fatalf("%v", err)
	}
	return n
}

// repeatReader yields one buffer over and over until n bytes have been
// read. Its WriteTo hands the buffer itself to the writer, so that the
// sender copies nothing in user space and costs the same for every reader
// under test.
type repeatReader struct {
	buf  []byte
	off  int // where in buf the next byte comes from
	left int64
}

func newRepeatReader(size int) *repeatReader {
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i*7 + i>>8) // not all zeros, in case anything on the path compresses
	}
	return &repeatReader{buf: buf}
}

// Reset makes the reader yield n more bytes.
func (r *repeatReader) Reset(n int64) { r.left = n }

// next returns the next chunk, at most max bytes, and consumes it.
func (r *repeatReader) next(max int64) []byte {
	p := r.buf[r.off:]
	p = p[:min(int64(len(p)), r.left, max)]
	r.off = (r.off + len(p)) % len(r.buf)
	r.left -= int64(len(p))
	return p
}

func (r *repeatReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	n := 0
	for n < len(p) && r.left > 0 {
		n += copy(p[n:], r.next(int64(len(p)-n)))
	}
	return n, nil
}

func (r *repeatReader) WriteTo(w io.Writer) (int64, error) {
	var total int64
	for r.left > 0 {
		p := r.next(r.left)
		n, err := w.Write(p)
		total += int64(n)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// percentile returns the p-th percentile (0 < p ≤ 100) of sorted durations
// by the nearest-rank method.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(p/100*float64(len(sorted)) + 0.999999)
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// median returns the median of xs (the mean of the middle two for an even
// count), 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 0 {
		return (s[m-1] + s[m]) / 2
	}
	return s[m]
}

// share returns part over whole in percent, 0 for an empty whole.
func share(part, whole uint64) float64 {
	if whole == 0 {
		return 0
	}
	return 100 * float64(part) / float64(whole)
}

// usec converts d to microseconds for b.ReportMetric.
func usec(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }

// sortedCopy returns the durations sorted, leaving ds as it is.
func sortedCopy(ds []time.Duration) []time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s
}

// roundTrips runs count round trips of msgSize bytes from the client
// namespace against r's Echo and returns their durations.
func (e *benchEnv) roundTrips(b *testing.B, r *busypoll.Receiver, msgSize, count int) []time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), benchTimeout)
	defer cancel()
	type echoed struct {
		st  busypoll.Stats
		err error
	}
	serverCPU, clientCPU := e.cpus()
	done := make(chan echoed, 1)
	go func() {
		var st busypoll.Stats
		err := onCPU(serverCPU, func() (err error) {
			st, err = r.Echo(ctx)
			return err
		})
		done <- echoed{st, err}
	}()
	var rtts []time.Duration
	err := e.client.NS.Do(func() error {
		return onCPU(clientCPU, func() (err error) {
			rtts, err = rawRoundTrips(r.Addr(), msgSize, count)
			return err
		})
	})
	if err != nil {
		cancel()
	}
	res := <-done
	if err != nil {
		b.Fatalf("round trips from %s to %v: %v", e.client.NS, r.Addr(), err)
	}
	if res.err != nil {
		b.Fatalf("echo in %s: %v", e.server.NS, res.err)
	}
	if want := int64(msgSize * count); res.st.Bytes != want {
		b.Fatalf("echoed %d bytes, want %d", res.st.Bytes, want)
	}
	return rtts
}

// benchCPUs returns two CPUs the process may run on, one for the server
// and one for the client, or ok false where it may use only one.
func benchCPUs() (server, client int, ok bool) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return 0, 0, false
	}
	var cpus []int
	for cpu := 0; cpu < len(set)*64 && len(cpus) < 2; cpu++ {
		if set.IsSet(cpu) {
			cpus = append(cpus, cpu)
		}
	}
	if len(cpus) < 2 {
		return 0, 0, false
	}
	return cpus[1], cpus[0], true
}

// onCPU runs f on the calling goroutine's OS thread restricted to cpu (cpu
// < 0: unrestricted), and restores the thread's CPU mask afterwards. If the
// mask cannot be restored the thread stays locked, so that the runtime
// discards it when the goroutine exits.
func onCPU(cpu int, f func() error) error {
	if cpu < 0 {
		return f()
	}
	runtime.LockOSThread()
	var old, set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("pin the thread to CPU %d: %w", cpu, err)
	}
	ferr := f()
	if err := unix.SchedSetaffinity(0, &old); err != nil {
		return errors.Join(ferr, fmt.Errorf("restore the thread's CPU mask (thread discarded): %w", err))
	}
	runtime.UnlockOSThread()
	return ferr
}

// rawRoundTrips is busypoll.RoundTrips without Go's poller: a blocking
// socket on the calling thread, so that each reply wakes this thread
// directly instead of a poller thread that then wakes this one. It
// connects from the calling thread's namespace.
func rawRoundTrips(addr netip.AddrPort, msgSize, count int) ([]time.Duration, error) {
	if !addr.Addr().Is4() {
		return nil, fmt.Errorf("round trips to %v: only IPv4 is implemented", addr)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(benchTimeout))
	for _, opt := range []int{unix.SO_RCVTIMEO, unix.SO_SNDTIMEO} {
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, opt, &tv); err != nil {
			return nil, fmt.Errorf("setsockopt timeout: %w", err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return nil, fmt.Errorf("setsockopt TCP_NODELAY: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(addr.Port()), Addr: addr.Addr().As4()}); err != nil {
		return nil, fmt.Errorf("connect to %v: %w", addr, err)
	}
	msg := make([]byte, msgSize)
	reply := make([]byte, msgSize)
	rtts := make([]time.Duration, 0, count)
	for i := range count {
		for j := range msg {
			msg[j] = byte(i + j)
		}
		start := time.Now()
		if err := writeFull(fd, msg); err != nil {
			return rtts, fmt.Errorf("round trip %d: write: %w", i+1, err)
		}
		if err := readFull(fd, reply); err != nil {
			return rtts, fmt.Errorf("round trip %d: read: %w", i+1, err)
		}
		rtts = append(rtts, time.Since(start))
		if string(reply) != string(msg) {
			return rtts, fmt.Errorf("round trip %d: the reply differs from the message", i+1)
		}
	}
	if err := unix.Shutdown(fd, unix.SHUT_WR); err != nil {
		return rtts, fmt.Errorf("shutdown: %w", err)
	}
	// Wait for the echo side to close.
	if n, err := unix.Read(fd, reply[:1]); n != 0 || err != nil {
		return rtts, fmt.Errorf("after the last reply: read %d bytes, %v; want end of stream", n, err)
	}
	return rtts, nil
}

func writeFull(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		p = p[n:]
	}
	return nil
}

func readFull(fd int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Read(fd, p)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return io.ErrUnexpectedEOF
		}
		p = p[n:]
	}
	return nil
}

// cpuMeter measures the CPU time that the rest of the machine (other
// processes, kernel threads) uses while a benchmark runs, so that a result
// taken on a busy machine says so.
type cpuMeter struct {
	start      time.Time
	busy, self uint64 // clock ticks
}

// clockTicks is USER_HZ, the unit of /proc/stat and /proc/PID/stat: 100 on
// every architecture Go supports.
const clockTicks = 100

func startCPUMeter() cpuMeter {
	busy, self, _ := cpuTicks()
	return cpuMeter{start: time.Now(), busy: busy, self: self}
}

// OtherPercent returns the CPU time used by everything but this process
// since the meter started, in percent of one CPU (as top shows it: 200
// means two CPUs fully busy), or -1 if /proc cannot be read. Interrupt and
// softirq time are left out: much of it is the benchmark's own traffic.
func (m cpuMeter) OtherPercent() float64 {
	busy, self, err := cpuTicks()
	if err != nil || m.busy == 0 {
		return -1
	}
	elapsed := time.Since(m.start).Seconds() * clockTicks
	other := float64(busy-m.busy) - float64(self-m.self)
	return 100 * max(other, 0) / elapsed
}

// cpuTicks returns the user, nice and system time of all CPUs from
// /proc/stat and the user and system time of this process.
func cpuTicks() (busy, self uint64, err error) {
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	line, _, _ := strings.Cut(string(stat), "\n")
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for _, s := range f[1:4] { // user nice system
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat: %w", err)
		}
		busy += v
	}
	pstat, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0, 0, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold anything, even ") ": state is field 3, utime 14 and stime 15.
	end := strings.LastIndexByte(string(pstat), ')')
	pf := strings.Fields(string(pstat[end+1:]))
	if end < 0 || len(pf) < 13 {
		return 0, 0, fmt.Errorf("/proc/self/stat: unexpected format %q", pstat)
	}
	for _, s := range pf[11:13] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/self/stat: %w", err)
		}
		self += v
	}
	return busy, self, nil
}

// TestBenchHelpers checks the statistics and the payload of the benchmarks,
// which run only as root.
func TestBenchHelpers(t *testing.T) {
	us := func(ns ...int) []time.Duration {
		d := make([]time.Duration, len(ns))
		for i, n := range ns {
			d[i] = time.Duration(n) * time.Microsecond
		}
		return d
	}
	for _, tt := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", us(7), 99, 7 * time.Microsecond},
		{"p50 of 4 is the 2nd", us(1, 2, 3, 4), 50, 2 * time.Microsecond},
		{"p50 of 5 is the 3rd", us(1, 2, 3, 4, 5), 50, 3 * time.Microsecond},
		{"p100 is the largest", us(1, 2, 3), 100, 3 * time.Microsecond},
	} {
		t.Run("percentile/"+tt.name, func(t *testing.T) {
			if got := percentile(tt.sorted, tt.p); got != tt.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tt.sorted, tt.p, got, tt.want)
			}
		})
	}
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	if got := percentile(hundred, 99); got != 99 {
		t.Errorf("p99 of 1..100 = %v, want 99", got)
	}
	if got := percentile(hundred, 50); got != 50 {
		t.Errorf("p50 of 1..100 = %v, want 50", got)
	}

	for _, tt := range []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{9, 1, 5}, 5},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tt.xs); got != tt.want {
			t.Errorf("median(%v) = %v, want %v", tt.xs, got, tt.want)
		}
	}
	if got := share(1, 4); got != 25 {
		t.Errorf("share(1, 4) = %v, want 25", got)
	}
	if got := share(1, 0); got != 0 {
		t.Errorf("share(1, 0) = %v, want 0", got)
	}

	// repeatReader yields exactly n bytes of its pattern through Read and
	// through WriteTo, and can be reset.
	r := newRepeatReader(1000)
	want := bytes.Repeat(r.buf, 4)[:3500]
	for _, via := range []string{"Read", "WriteTo"} {
		r.off = 0
		r.Reset(3500)
		var got bytes.Buffer
		var err error
		if via == "Read" {
			_, err = io.CopyBuffer(&got, struct{ io.Reader }{r}, make([]byte, 300))
		} else {
			_, err = r.WriteTo(&got)
		}
		if err != nil || !bytes.Equal(got.Bytes(), want) {
			t.Errorf("%s: %d bytes, err %v; want the pattern repeated to 3500 bytes", via, got.Len(), err)
		}
	}

	busy, self, err := cpuTicks()
	if err != nil || busy == 0 {
		t.Errorf("cpuTicks() = %d, %d, %v; want busy time > 0", busy, self, err)
	}
}
