package busypoll

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSendCancel streams to a peer that never reads: only ctx can end Send.
func TestSendCancel(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	addr := netip.MustParseAddrPort(ln.Addr().String())

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	n, err := Send(ctx, addr, zeros{})
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Positive(t, n, "bytes written before the deadline")
	assert.Less(t, time.Since(start), 5*time.Second)
}

func TestSendErrors(t *testing.T) {
	// A port that was free a moment ago: nobody listens on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := netip.MustParseAddrPort(ln.Addr().String())
	require.NoError(t, ln.Close())

	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name    string
		ctx     context.Context
		addr    netip.AddrPort
		wantIs  error
		wantMsg string
	}{
		{"connection refused", context.Background(), closed, unix.ECONNREFUSED, closed.String()},
		{"invalid address", context.Background(), netip.AddrPort{}, nil, "not a valid address"},
		{"cancelled context", cancelled, closed, context.Canceled, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := Send(tt.ctx, tt.addr, bytes.NewReader([]byte("x")))
			require.Error(t, err)
			assert.Zero(t, n)
			if tt.wantIs != nil {
				assert.ErrorIs(t, err, tt.wantIs)
			}
			assert.ErrorContains(t, err, tt.wantMsg)
		})
	}
}

// TestSendReaderKinds sends through the three copy paths: a reader that
// writes itself out, a plain reader, and a reader that fails.
func TestSendReaderKinds(t *testing.T) {
	data := randomData(3<<20 + 11)
	// One write per byte: 64 KiB take 20 s under TCG; 4 KiB there.
	small := data[:large(64<<10)]
	tests := []struct {
		name string
		src  io.Reader
		want []byte
	}{
		{"io.WriterTo", bytes.NewReader(data), data},
		{"plain reader", io.MultiReader(bytes.NewReader(data[:5]), bytes.NewReader(data[5:])), data},
		{"one byte at a time", &oneByteReader{data: small}, small},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := tt.want
			r := newTestReceiver(t, ReceiverConfig{Addr: loopback})
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			w := newHashWriter()
			done := receiveAsync(ctx, r, w)
			n, err := Send(ctx, r.Addr(), tt.src)
			require.NoError(t, err)
			assert.Equal(t, int64(len(data)), n)
			res := wait(t, done, 30*time.Second, "Receive")
			require.NoError(t, res.err)
			assert.Equal(t, sha256.Sum256(data), w.sum())
		})
	}

	t.Run("reader error", func(t *testing.T) {
		r := newTestReceiver(t, ReceiverConfig{Addr: loopback})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := receiveAsync(ctx, r, io.Discard)
		n, err := Send(ctx, r.Addr(), io.MultiReader(bytes.NewReader(data[:100]), failingReader{io.ErrUnexpectedEOF}))
		assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
		assert.EqualValues(t, 100, n)
		// The receiver still sees an orderly end of the stream: Send
		// closed the connection.
		res := wait(t, done, 10*time.Second, "Receive")
		require.NoError(t, res.err)
		assert.EqualValues(t, 100, res.st.Bytes)
	})
}

type oneByteReader struct {
	data []byte
	off  int
}

func (r *oneByteReader) Read(p []byte) (int, error) {
	if r.off >= len(r.data) {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	p[0] = r.data[r.off]
	r.off++
	return 1, nil
}

type failingReader struct{ err error }

func (f failingReader) Read([]byte) (int, error) { return 0, f.err }
