package busypoll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"
)

// sendBufferSize is the copy buffer of Send for readers that cannot write
// themselves out (io.WriterTo).
const sendBufferSize = 1 << 20

// Send connects to addr over TCP, writes everything src yields, then shuts
// down the write side (the receiver sees end of file) and closes the
// connection. It returns the number of bytes written. Cancelling ctx aborts
// the connect or the copy, and Send returns ctx.Err().
//
// The socket is created in the calling thread's network namespace: to send
// from a netns.NetNS, call Send inside its Do.
func Send(ctx context.Context, addr netip.AddrPort, src io.Reader) (int64, error) {
	conn, err := dial(ctx, addr)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	defer stop()

	n, err := io.CopyBuffer(writerOnly{conn}, src, make([]byte, sendBufferSize))
	if err == nil {
		err = conn.CloseWrite()
	}
	if cerr := conn.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return n, ctxErr
		}
		return n, fmt.Errorf("busypoll: send to %v: %w", addr, err)
	}
	return n, nil
}

// aLongTimeAgo is a deadline in the past: it makes blocked I/O return.
var aLongTimeAgo = time.Unix(1, 0)

// writerOnly hides TCPConn.ReadFrom, whose generic path copies through a
// 32 KiB buffer, so that io.CopyBuffer uses Send's larger one. Readers that
// implement io.WriterTo (bytes.Reader) still write themselves out at once.
type writerOnly struct{ io.Writer }

// dial connects to addr in the calling thread's namespace. net.Dialer
// creates and connects the socket on the calling goroutine for a single
// literal address, so a goroutine locked inside a namespace dials from it.
func dial(ctx context.Context, addr netip.AddrPort) (*net.TCPConn, error) {
	if !addr.IsValid() {
		return nil, fmt.Errorf("busypoll: send to %v: not a valid address and port", addr)
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, fmt.Errorf("busypoll: send to %v: %w", addr, err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		c.Close()
		return nil, errors.New("busypoll: dial tcp returned a non-TCP connection")
	}
	return tc, nil
}

// MaxMessageSize bounds the message size of RoundTrips, which writes a
// whole message before it reads the echo: the message must fit in the
// socket buffers.
const MaxMessageSize = 64 << 10

// RoundTrips connects to addr (an Echo receiver), then count times sends a
// msgSize-byte message and waits for it to come back, checking its
// contents. It returns each round trip's duration, then closes the
// connection and waits for the echo side to close too. Like Send, it dials
// from the calling thread's namespace; ctx aborts it.
func RoundTrips(ctx context.Context, addr netip.AddrPort, msgSize, count int) ([]time.Duration, error) {
	if msgSize < 1 || msgSize > MaxMessageSize {
		return nil, fmt.Errorf("busypoll: round trips: message size %d out of range: must be 1 to %d", msgSize, MaxMessageSize)
	}
	if count < 0 {
		return nil, fmt.Errorf("busypoll: round trips: count %d out of range: must be 0 or more", count)
	}
	conn, err := dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(aLongTimeAgo) })
	defer stop()
	if err := conn.SetNoDelay(true); err != nil {
		return nil, fmt.Errorf("busypoll: round trips to %v: %w", addr, err)
	}

	msg := make([]byte, msgSize)
	reply := make([]byte, msgSize)
	rtts := make([]time.Duration, 0, count)
	fail := func(err error) ([]time.Duration, error) {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return rtts, ctxErr
		}
		if len(rtts) == count {
			return rtts, fmt.Errorf("busypoll: round trips to %v: close after %d: %w", addr, count, err)
		}
		return rtts, fmt.Errorf("busypoll: round trip %d of %d to %v: %w", len(rtts)+1, count, addr, err)
	}
	for i := range count {
		for j := range msg {
			msg[j] = byte(i + j)
		}
		start := time.Now()
		if _, err := conn.Write(msg); err != nil {
			return fail(err)
		}
		if _, err := io.ReadFull(conn, reply); err != nil {
			return fail(err)
		}
		rtts = append(rtts, time.Since(start))
		if string(reply) != string(msg) {
			return fail(errors.New("the reply differs from the message"))
		}
	}
	if err := conn.CloseWrite(); err != nil {
		return fail(err)
	}
	// Wait for the echo side to close, so that it has finished when we return.
	if n, err := conn.Read(reply[:1]); n != 0 || err != io.EOF {
		if err == nil || err == io.EOF {
			err = fmt.Errorf("%d unexpected bytes after the last reply", n)
		}
		return fail(err)
	}
	return rtts, nil
}
