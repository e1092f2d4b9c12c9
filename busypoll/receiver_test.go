package busypoll

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

var loopback = netip.MustParseAddrPort("127.0.0.1:0")

// selftestParams are the selftest's epoll settings.
var selftestParams = Params{Usecs: 0, Budget: 16, Prefer: true}

// randomData returns n reproducible pseudo-random bytes.
func randomData(n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{'b', 'u', 's', 'y'})
	_, _ = r.Read(b)
	return b
}

// newTestReceiver listens with cfg and closes the receiver when the test ends.
func newTestReceiver(t *testing.T, cfg ReceiverConfig) *Receiver {
	t.Helper()
	if cfg.Params != (Params{}) {
		requireSupported(t)
	}
	r, err := Listen(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, r.Close()) })
	return r
}

// hashWriter hashes and counts what is written to it.
type hashWriter struct {
	n int64
	h [32]byte
	d interface {
		io.Writer
		Sum([]byte) []byte
	}
}

func newHashWriter() *hashWriter { return &hashWriter{d: sha256.New()} }

func (w *hashWriter) Write(p []byte) (int, error) {
	w.n += int64(len(p))
	return w.d.Write(p)
}

func (w *hashWriter) sum() [32]byte { copy(w.h[:], w.d.Sum(nil)); return w.h }

type receiveResult struct {
	st  Stats
	err error
}

// receiveAsync runs Receive on its own goroutine.
func receiveAsync(ctx context.Context, r *Receiver, w io.Writer) <-chan receiveResult {
	ch := make(chan receiveResult, 1)
	go func() {
		st, err := r.Receive(ctx, w)
		ch <- receiveResult{st, err}
	}()
	return ch
}

func wait[T any](t *testing.T, ch <-chan T, timeout time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(timeout):
		require.FailNowf(t, "timeout", "%s did not return within %v", what, timeout)
		panic("unreachable")
	}
}

// waitServing waits until a Receive or Echo holds r, so that what the test
// does next hits a running call rather than racing its start.
func waitServing(t *testing.T, r *Receiver) {
	t.Helper()
	// Not r.busy.TryLock: a probe holding the lock for an instant makes
	// the real call fail with "another Receive or Echo is running".
	deadline := time.Now().Add(10 * time.Second)
	for !r.serving.Load() {
		require.True(t, time.Now().Before(deadline), "Receive did not start")
		time.Sleep(time.Millisecond)
	}
	time.Sleep(10 * time.Millisecond) // let it reach epoll_wait
}

func TestReceiverIntegrity(t *testing.T) {
	tests := []struct {
		name string
		size int
		cfg  ReceiverConfig
	}{
		{"0 bytes", 0, ReceiverConfig{Params: selftestParams}},
		{"1 byte", 1, ReceiverConfig{Params: selftestParams}},
		{"64 MiB", large(64 << 20), ReceiverConfig{Params: selftestParams}},
		{"64 MiB plain epoll", large(64 << 20), ReceiverConfig{}},
		{"64 MiB with busy-poll usecs", large(64 << 20), ReceiverConfig{Params: Params{Usecs: 50, Budget: 8}}},
		{"one event, odd small buffer", 1<<20 + 7, ReceiverConfig{Params: selftestParams, MaxEvents: 1, BufferSize: 1000}},
		{"1-byte buffer", 4096, ReceiverConfig{BufferSize: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && tt.size > 1<<20 {
				t.Skip("skipped with -short: large transfer")
			}
			tt.cfg.Addr = loopback
			r := newTestReceiver(t, tt.cfg)
			data := randomData(tt.size)
			w := newHashWriter()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			done := receiveAsync(ctx, r, w)

			n, err := Send(ctx, r.Addr(), bytes.NewReader(data))
			require.NoError(t, err)
			assert.Equal(t, int64(tt.size), n, "bytes sent")

			res := wait(t, done, time.Minute, "Receive")
			require.NoError(t, res.err)
			assert.Equal(t, int64(tt.size), res.st.Bytes, "Stats.Bytes")
			assert.Equal(t, int64(tt.size), w.n, "bytes written to the output")
			assert.Equal(t, sha256.Sum256(data), w.sum(), "sha256 of the received stream")
			assert.Positive(t, res.st.EpollWaits)
			assert.Positive(t, res.st.Elapsed)
			if tt.size > 0 {
				assert.Positive(t, res.st.Reads)
			} else {
				assert.Zero(t, res.st.Reads)
			}
			bs := tt.cfg.BufferSize
			if bs == 0 {
				bs = DefaultBufferSize
			}
			assert.GreaterOrEqual(t, res.st.Reads, tt.size/bs, "reads of at most %d bytes", bs)
			t.Logf("%d bytes: %d epoll_wait, %d reads, %v, %.0f MiB/s, NAPI id %d",
				res.st.Bytes, res.st.EpollWaits, res.st.Reads, res.st.Elapsed, res.st.MiBPerSec(), res.st.NAPIID)
		})
	}
}

func TestReceiverParamsReadBack(t *testing.T) {
	p := Params{Usecs: 10, Budget: 32, Prefer: true}
	r := newTestReceiver(t, ReceiverConfig{Addr: loopback, Params: p})
	got, err := r.Params()
	require.NoError(t, err)
	assert.Equal(t, p, got)

	plain := newTestReceiver(t, ReceiverConfig{Addr: loopback})
	if Supported() == nil {
		got, err = plain.Params()
		require.NoError(t, err)
		assert.Equal(t, Params{}, got, "zero Params leave the epoll instance as created")
	}
}

func TestReceiverCancel(t *testing.T) {
	r := newTestReceiver(t, ReceiverConfig{Addr: loopback, Params: selftestParams})

	t.Run("cancel while nobody connects", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := receiveAsync(ctx, r, io.Discard)
		waitServing(t, r)
		start := time.Now()
		cancel()
		res := wait(t, done, 5*time.Second, "Receive after cancel")
		assert.ErrorIs(t, res.err, context.Canceled)
		assert.Less(t, time.Since(start), time.Second, "Receive returns promptly")
	})
	t.Run("deadline", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		res := wait(t, receiveAsync(ctx, r, io.Discard), 5*time.Second, "Receive with a deadline")
		assert.ErrorIs(t, res.err, context.DeadlineExceeded)
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := r.Receive(ctx, io.Discard)
		assert.ErrorIs(t, err, context.Canceled)
	})
	t.Run("cancel mid-stream", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		w := &cancelAfter{n: 1 << 20, cancel: cancel}
		done := receiveAsync(ctx, r, w)
		sendCtx, sendCancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer sendCancel()
		_, sendErr := Send(sendCtx, r.Addr(), io.LimitReader(zeros{}, 1<<30))
		res := wait(t, done, 10*time.Second, "Receive cancelled mid-stream")
		assert.ErrorIs(t, res.err, context.Canceled)
		assert.Error(t, sendErr, "the sender sees the connection go away")
		assert.NotErrorIs(t, sendErr, context.DeadlineExceeded, "the sender must not hang until its deadline")
	})
	t.Run("usable after cancellations", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		w := newHashWriter()
		done := receiveAsync(ctx, r, w)
		_, err := Send(ctx, r.Addr(), bytes.NewReader([]byte("hello")))
		require.NoError(t, err)
		res := wait(t, done, 10*time.Second, "Receive")
		require.NoError(t, res.err)
		assert.Equal(t, sha256.Sum256([]byte("hello")), w.sum())
	})
}

// cancelAfter cancels a context once n bytes have been written to it.
type cancelAfter struct {
	n      int
	cancel context.CancelFunc
}

func (c *cancelAfter) Write(p []byte) (int, error) {
	c.n -= len(p)
	if c.n <= 0 {
		c.cancel()
	}
	return len(p), nil
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

func TestReceiverClose(t *testing.T) {
	r, err := Listen(ReceiverConfig{Addr: loopback})
	require.NoError(t, err)
	done := receiveAsync(context.Background(), r, io.Discard)
	waitServing(t, r)
	require.NoError(t, r.Close())
	res := wait(t, done, 5*time.Second, "Receive interrupted by Close")
	assert.ErrorIs(t, res.err, ErrReceiverClosed)
	assert.ErrorIs(t, res.err, net.ErrClosed)

	assert.NoError(t, r.Close(), "Close is idempotent")
	_, err = r.Receive(context.Background(), io.Discard)
	assert.ErrorIs(t, err, ErrReceiverClosed)
	_, err = r.Echo(context.Background())
	assert.ErrorIs(t, err, ErrReceiverClosed)
	_, err = r.Params()
	assert.ErrorIs(t, err, ErrReceiverClosed)

	// The port is free again.
	r2, err := Listen(ReceiverConfig{Addr: r.Addr()})
	require.NoError(t, err, "listening on the closed receiver's port")
	assert.NoError(t, r2.Close())
}

func TestReceiverOneAtATime(t *testing.T) {
	r := newTestReceiver(t, ReceiverConfig{Addr: loopback})
	ctx, cancel := context.WithCancel(context.Background())
	done := receiveAsync(ctx, r, io.Discard)
	waitServing(t, r)
	_, err := r.Receive(context.Background(), io.Discard)
	assert.ErrorContains(t, err, "another Receive or Echo is running")
	cancel()
	assert.ErrorIs(t, wait(t, done, 5*time.Second, "Receive").err, context.Canceled)
}

// TestReceiverQueuedConnections sends two streams at once: each Receive
// takes exactly one of them, including the one whose edge went to the first
// call.
func TestReceiverQueuedConnections(t *testing.T) {
	r := newTestReceiver(t, ReceiverConfig{Addr: loopback, Params: selftestParams})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	streams := [][]byte{randomData(4 << 20), bytes.Repeat([]byte("x"), 3<<20)}
	var wg sync.WaitGroup
	sendErrs := make([]error, len(streams))
	for i, s := range streams {
		wg.Go(func() { _, sendErrs[i] = Send(ctx, r.Addr(), bytes.NewReader(s)) })
	}
	got := map[[32]byte]int64{}
	for range streams {
		w := newHashWriter()
		st, err := r.Receive(ctx, w)
		require.NoError(t, err)
		assert.Equal(t, w.n, st.Bytes)
		got[w.sum()] = w.n
	}
	wg.Wait()
	for i, s := range streams {
		assert.NoError(t, sendErrs[i])
		assert.Equal(t, int64(len(s)), got[sha256.Sum256(s)], "stream %d intact and not mixed", i)
	}
}

func TestReceiverWriterError(t *testing.T) {
	r := newTestReceiver(t, ReceiverConfig{Addr: loopback})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	errDiskFull := errors.New("disk full")
	done := receiveAsync(ctx, r, failingWriter{errDiskFull})
	_, _ = Send(ctx, r.Addr(), bytes.NewReader(randomData(1<<20)))
	res := wait(t, done, 10*time.Second, "Receive")
	assert.ErrorIs(t, res.err, errDiskFull)
	assert.ErrorContains(t, res.err, "write to the output")
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

func TestListenBindFailure(t *testing.T) {
	first := newTestReceiver(t, ReceiverConfig{Addr: loopback})
	tests := []struct {
		name  string
		addr  netip.AddrPort
		errno unix.Errno
	}{
		{"address in use", first.Addr(), unix.EADDRINUSE},
		{"address not on this host", netip.MustParseAddrPort("192.0.2.1:0"), unix.EADDRNOTAVAIL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Listen(ReceiverConfig{Addr: tt.addr})
			if r != nil {
				r.Close()
			}
			require.Error(t, err)
			assert.Nil(t, r)
			assert.ErrorIs(t, err, tt.errno)
			assert.ErrorContains(t, err, "bind")
			assert.ErrorContains(t, err, tt.addr.String())
		})
	}
}

func TestListenConfigErrors(t *testing.T) {
	tests := []struct {
		name    string
		cfg     ReceiverConfig
		wantErr []string
	}{
		{"no address", ReceiverConfig{}, []string{"listen address", "not a valid"}},
		{"negative max events", ReceiverConfig{Addr: loopback, MaxEvents: -1}, []string{"max events -1", "1 to 65536"}},
		{"too many max events", ReceiverConfig{Addr: loopback, MaxEvents: MaxMaxEvents + 1}, []string{"max events 65537", "1 to 65536"}},
		{"negative buffer", ReceiverConfig{Addr: loopback, BufferSize: -5}, []string{"buffer size -5", "1 to 268435456"}},
		{"huge buffer", ReceiverConfig{Addr: loopback, BufferSize: MaxBufferSize + 1}, []string{"buffer size 268435457", "268435456"}},
		{"usecs too large", ReceiverConfig{Addr: loopback, Params: Params{Usecs: MaxUsecs + 1}}, []string{"usecs 2147483648", "2147483647"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := Listen(tt.cfg)
			if r != nil {
				r.Close()
			}
			require.Error(t, err)
			for _, s := range tt.wantErr {
				assert.ErrorContains(t, err, s)
			}
		})
	}
}

func TestReceiverIPv6Loopback(t *testing.T) {
	r, err := Listen(ReceiverConfig{Addr: netip.MustParseAddrPort("[::1]:0")})
	if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.EAFNOSUPPORT) {
		t.Skipf("skipped: no IPv6 loopback here: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, r.Close()) })
	assert.True(t, r.Addr().Addr().Is6())
	assert.NotZero(t, r.Addr().Port())

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	data := randomData(100_000)
	w := newHashWriter()
	done := receiveAsync(ctx, r, w)
	_, err = Send(ctx, r.Addr(), bytes.NewReader(data))
	require.NoError(t, err)
	res := wait(t, done, 10*time.Second, "Receive")
	require.NoError(t, res.err)
	assert.Equal(t, sha256.Sum256(data), w.sum())
}

func TestEchoRoundTrips(t *testing.T) {
	for _, p := range []Params{{}, selftestParams} {
		t.Run(p.String(), func(t *testing.T) {
			r := newTestReceiver(t, ReceiverConfig{Addr: loopback, Params: p})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			done := make(chan receiveResult, 1)
			go func() {
				st, err := r.Echo(ctx)
				done <- receiveResult{st, err}
			}()
			const size, count = 100, 200
			rtts, err := RoundTrips(ctx, r.Addr(), size, count)
			require.NoError(t, err)
			require.Len(t, rtts, count)
			for _, d := range rtts {
				assert.Positive(t, d)
			}
			res := wait(t, done, 10*time.Second, "Echo")
			require.NoError(t, res.err)
			assert.Equal(t, int64(size*count), res.st.Bytes)
		})
	}
}

// TestEchoLargeMessages streams more than the socket buffers hold through
// Echo while the client at first does not read, so that the echo finds its
// socket full and must wait for room without losing bytes.
func TestEchoLargeMessages(t *testing.T) {
	r := newTestReceiver(t, ReceiverConfig{Addr: loopback, Params: selftestParams, BufferSize: 64 << 10})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	done := make(chan receiveResult, 1)
	go func() {
		st, err := r.Echo(ctx)
		done <- receiveResult{st, err}
	}()

	conn, err := dial(ctx, r.Addr())
	require.NoError(t, err)
	defer conn.Close()
	data := randomData(large(32 << 20))
	sent := make(chan error, 1)
	go func() {
		_, err := conn.Write(data)
		if err == nil {
			err = conn.CloseWrite()
		}
		sent <- err
	}()
	time.Sleep(200 * time.Millisecond) // let both directions fill up
	w := newHashWriter()
	_, err = io.Copy(w, conn)
	require.NoError(t, err)
	require.NoError(t, wait(t, sent, 10*time.Second, "client write"))
	res := wait(t, done, 10*time.Second, "Echo")
	require.NoError(t, res.err)
	assert.Equal(t, int64(len(data)), res.st.Bytes)
	assert.Equal(t, int64(len(data)), w.n)
	assert.Equal(t, sha256.Sum256(data), w.sum())
}

func TestRoundTripsErrors(t *testing.T) {
	ctx := context.Background()
	_, err := RoundTrips(ctx, loopback, 0, 1)
	assert.ErrorContains(t, err, "message size 0 out of range: must be 1 to 65536")
	_, err = RoundTrips(ctx, loopback, MaxMessageSize+1, 1)
	assert.ErrorContains(t, err, "message size 65537")
	_, err = RoundTrips(ctx, loopback, 1, -1)
	assert.ErrorContains(t, err, "count -1")
}

// TestReceiveDoesNotAllocatePerRead receives a stream in many small reads:
// the allocations of the whole exchange (dial, goroutines, the sender's
// buffer) must not grow with the number of reads.
func TestReceiveDoesNotAllocatePerRead(t *testing.T) {
	const size, bufSize = 1 << 20, 1 << 10 // at least 1024 reads
	r := newTestReceiver(t, ReceiverConfig{Addr: loopback, Params: selftestParams, BufferSize: bufSize})
	data := randomData(size)
	src := bytes.NewReader(data)
	ctx := context.Background()
	var reads int
	allocs := testing.AllocsPerRun(5, func() {
		src.Reset(data)
		done := receiveAsync(ctx, r, io.Discard)
		_, err := Send(ctx, r.Addr(), src)
		require.NoError(t, err)
		res := <-done
		require.NoError(t, res.err)
		require.Equal(t, int64(size), res.st.Bytes)
		reads = res.st.Reads
	})
	require.GreaterOrEqual(t, reads, size/bufSize)
	t.Logf("%.0f allocations for %d reads", allocs, reads)
	assert.Less(t, allocs, float64(reads)/4, "allocations per exchange must not grow with the reads")
}
