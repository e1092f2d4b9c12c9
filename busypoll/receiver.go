package busypoll

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// Receiver defaults and limits.
const (
	// DefaultMaxEvents is the epoll_wait event array size when
	// ReceiverConfig.MaxEvents is 0 (the selftest's value).
	DefaultMaxEvents = 8
	// MaxMaxEvents bounds ReceiverConfig.MaxEvents. The receiver watches at
	// most three descriptors, so more is never useful.
	MaxMaxEvents = 1 << 16
	// DefaultBufferSize is the read buffer size when
	// ReceiverConfig.BufferSize is 0. The selftest's C receiver reads 1 KiB
	// at a time, which makes it too slow to find its socket empty.
	DefaultBufferSize = 1 << 20
	// MaxBufferSize bounds ReceiverConfig.BufferSize.
	MaxBufferSize = 1 << 28
)

// listenBacklog is the accept queue length. The receiver serves one
// connection per Receive call; a few more may queue for the next call.
const listenBacklog = 8

// ErrReceiverClosed is returned by Receive and Echo on a closed Receiver,
// and by a Receive or Echo that Close interrupted. It matches net.ErrClosed.
var ErrReceiverClosed = fmt.Errorf("busypoll: receiver closed: %w", net.ErrClosed)

// ReceiverConfig configures Listen.
type ReceiverConfig struct {
	// Addr is the TCP address to listen on, IPv4 or IPv6 (with an optional
	// zone naming an interface). Port 0 picks a free port; Receiver.Addr
	// tells which.
	Addr netip.AddrPort
	// Params are set on the receiver's epoll instance. The zero value
	// leaves the instance as created, without busy polling, and then Listen
	// does not need EPIOCSPARAMS (a plain-epoll baseline).
	Params Params
	// MaxEvents is the size of the epoll_wait event array: 1 to
	// MaxMaxEvents, 0 for DefaultMaxEvents.
	MaxEvents int
	// BufferSize is the size of the read buffer: 1 to MaxBufferSize, 0 for
	// DefaultBufferSize.
	BufferSize int
	// NoSocketBusyPoll sets SO_BUSY_POLL to 0 on the listener and on every
	// accepted connection, so that a host's net.core.busy_read (copied into
	// each new socket) does not make the socket's own reads busy-poll: then
	// only the epoll instance's Params can. It needs no privilege.
	NoSocketBusyPoll bool
}

func (c ReceiverConfig) withDefaults() (ReceiverConfig, error) {
	if !c.Addr.IsValid() {
		return c, fmt.Errorf("busypoll: listen address %v is not a valid address and port", c.Addr)
	}
	switch {
	case c.MaxEvents == 0:
		c.MaxEvents = DefaultMaxEvents
	case c.MaxEvents < 0 || c.MaxEvents > MaxMaxEvents:
		return c, fmt.Errorf("busypoll: max events %d out of range: must be 1 to %d (0 for the default %d)",
			c.MaxEvents, MaxMaxEvents, DefaultMaxEvents)
	}
	switch {
	case c.BufferSize == 0:
		c.BufferSize = DefaultBufferSize
	case c.BufferSize < 0 || c.BufferSize > MaxBufferSize:
		return c, fmt.Errorf("busypoll: buffer size %d out of range: must be 1 to %d bytes (0 for the default %d)",
			c.BufferSize, MaxBufferSize, DefaultBufferSize)
	}
	return c, c.Params.Validate()
}

// Stats describe one connection served by Receive or Echo.
type Stats struct {
	// Bytes is the number of bytes read from the connection.
	Bytes int64
	// NAPIID is the accepted socket's SO_INCOMING_NAPI_ID, read after the
	// peer closed: the NAPI instance that received the last packets. It is
	// 0 where the traffic did not come through a NAPI (loopback), or on a
	// kernel built without busy polling.
	NAPIID uint32
	// EpollWaits counts the epoll_wait calls that returned, from the start
	// of the call (including the wait for the connection) to the end of the
	// stream. Busy polling happens in calls that find nothing ready.
	EpollWaits int
	// Reads counts the read calls that returned data.
	Reads int
	// Elapsed runs from the accept to the end of the stream (the read that
	// returned end of file).
	Elapsed time.Duration
	// SocketBusyPollUsecs is the accepted socket's SO_BUSY_POLL, read back
	// after the peer closed: how long its own reads may busy-poll (from
	// net.core.busy_read unless ReceiverConfig.NoSocketBusyPoll set it to 0).
	SocketBusyPollUsecs int
}

// MiBPerSec is Bytes over Elapsed in MiB/s, 0 when Elapsed is 0.
func (s Stats) MiBPerSec() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Bytes) / (1 << 20) / s.Elapsed.Seconds()
}

// Receiver is the port of the selftest's busy_poller: a non-blocking TCP
// listener and an epoll instance with busy-poll parameters, on which it
// accepts a connection and reads it edge-triggered, draining the socket on
// every event, until the peer closes.
//
// Its sockets stay in the network namespace Listen ran in; Receive and Echo
// may run on any goroutine, one at a time.
type Receiver struct {
	addr         netip.AddrPort
	params       Params
	noSocketPoll bool

	lfd  int // listening socket
	epfd int // epoll instance
	efd  int // eventfd that interrupts epoll_wait (cancellation, Close)

	events []unix.EpollEvent
	buf    []byte

	busy      sync.Mutex   // held by the running Receive or Echo
	serving   atomic.Bool  // set while busy is held (tests wait on it)
	fdMu      sync.RWMutex // write-held while closing the descriptors
	fdsClosed bool         // under fdMu
	closing   atomic.Bool  // set first thing by Close
	closeOnce sync.Once
	closeErr  error
}

// Listen creates the listening socket, bound to cfg.Addr with SO_REUSEADDR
// (a failed bind is an error), and an epoll instance with cfg.Params that
// watches the listener edge-triggered (EPOLLIN|EPOLLOUT|EPOLLET, as the
// selftest does).
//
// The socket is created in the calling thread's network namespace: to
// listen inside a netns.NetNS, call Listen inside its Do.
func Listen(cfg ReceiverConfig) (*Receiver, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	sa, family, err := sockaddrOf(cfg.Addr)
	if err != nil {
		return nil, err
	}
	r := &Receiver{params: cfg.Params, noSocketPoll: cfg.NoSocketBusyPoll, lfd: -1, epfd: -1, efd: -1}
	ok := false
	defer func() {
		if !ok {
			r.closeFDs()
		}
	}()
	fail := func(what string, err error) (*Receiver, error) {
		return nil, fmt.Errorf("busypoll: listen on %v: %s: %w", cfg.Addr, what, err)
	}

	if r.lfd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_TCP); err != nil {
		return fail("socket", err)
	}
	if err := unix.SetsockoptInt(r.lfd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return fail("setsockopt SO_REUSEADDR", err)
	}
	if cfg.NoSocketBusyPoll {
		if err := noSocketBusyPoll(r.lfd); err != nil {
			return fail("listener", err)
		}
	}
	if err := unix.Bind(r.lfd, sa); err != nil {
		return fail("bind", err)
	}
	if err := unix.Listen(r.lfd, listenBacklog); err != nil {
		return fail("listen", err)
	}
	bound, err := unix.Getsockname(r.lfd)
	if err != nil {
		return fail("getsockname", err)
	}
	r.addr = addrPortOf(bound, cfg.Addr.Addr().Zone())

	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return fail("epoll_create1", err)
	}
	if cfg.Params != (Params{}) {
		if err := SetParams(r.epfd, cfg.Params); err != nil {
			return nil, fmt.Errorf("busypoll: listen on %v: %w", cfg.Addr, err)
		}
	}
	if r.efd, err = unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC); err != nil {
		return fail("eventfd", err)
	}
	if err := epollAdd(r.epfd, r.lfd, unix.EPOLLIN|unix.EPOLLOUT|unix.EPOLLET); err != nil {
		return fail("add the listener to epoll", err)
	}
	if err := epollAdd(r.epfd, r.efd, unix.EPOLLIN); err != nil {
		return fail("add the eventfd to epoll", err)
	}
	r.events = make([]unix.EpollEvent, cfg.MaxEvents)
	r.buf = make([]byte, cfg.BufferSize)
	ok = true
	return r, nil
}

// Addr returns the address the receiver listens on, with the port the
// kernel chose if cfg.Addr had port 0.
func (r *Receiver) Addr() netip.AddrPort { return r.addr }

// Params reads the busy-poll parameters back from the receiver's epoll
// instance (EPIOCGPARAMS).
func (r *Receiver) Params() (Params, error) {
	r.fdMu.RLock()
	defer r.fdMu.RUnlock()
	if r.fdsClosed {
		return Params{}, ErrReceiverClosed
	}
	return GetParams(r.epfd)
}

// Receive accepts one connection (one that is already queued, or the next
// one) and reads it until the peer closes, writing everything to w. It
// waits in epoll_wait without a timeout, like the selftest, so that busy
// polling happens inside the kernel; ctx and Close interrupt it through an
// eventfd in the epoll set, and then it returns ctx.Err() or
// ErrReceiverClosed. The connection is closed when Receive returns.
//
// Receive reads into one buffer allocated by Listen and does not allocate
// per read. Only one Receive or Echo runs at a time.
func (r *Receiver) Receive(ctx context.Context, w io.Writer) (Stats, error) {
	return r.serve(ctx, "receive", func(_ int, p []byte) error {
		n, err := w.Write(p)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		if err != nil {
			return fmt.Errorf("write to the output: %w", err)
		}
		return nil
	})
}

// Echo is Receive for request/response measurements: it accepts one
// connection and writes everything it reads back to the peer, until the
// peer closes. Stats.Bytes counts the bytes echoed.
func (r *Receiver) Echo(ctx context.Context) (Stats, error) {
	return r.serve(ctx, "echo", func(conn int, p []byte) error {
		return r.writeAll(ctx, conn, p)
	})
}

// Close closes the listener, the epoll instance and the eventfd, first
// interrupting a running Receive or Echo and waiting for it to return (a
// Receive blocked in its writer's Write returns, and lets Close finish, only
// when Write does). It is idempotent and safe to call concurrently.
func (r *Receiver) Close() error {
	r.closeOnce.Do(func() {
		r.closing.Store(true)
		r.wake()
		r.closeErr = r.closeFDs()
	})
	return r.closeErr
}

func (r *Receiver) closeFDs() error {
	r.fdMu.Lock()
	defer r.fdMu.Unlock()
	var errs []error
	for _, fd := range []*int{&r.lfd, &r.epfd, &r.efd} {
		if *fd >= 0 {
			if err := unix.Close(*fd); err != nil {
				errs = append(errs, err)
			}
			*fd = -1
		}
	}
	r.fdsClosed = true
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("busypoll: close receiver %v: %w", r.addr, err)
	}
	return nil
}

// wake makes the eventfd readable, so that epoll_wait returns.
func (r *Receiver) wake() {
	r.fdMu.RLock()
	defer r.fdMu.RUnlock()
	if r.fdsClosed {
		return
	}
	one := [8]byte{1} // any non-zero uint64 will do
	_, _ = unix.Write(r.efd, one[:])
}

// clearWake empties the eventfd.
func (r *Receiver) clearWake() {
	var v [8]byte
	_, _ = unix.Read(r.efd, v[:])
}

// serve runs the epoll loop for one connection, handing every chunk read to
// handle.
func (r *Receiver) serve(ctx context.Context, op string, handle func(conn int, p []byte) error) (Stats, error) {
	var st Stats
	if !r.busy.TryLock() {
		return st, fmt.Errorf("busypoll: %s on %v: another Receive or Echo is running", op, r.addr)
	}
	defer r.busy.Unlock()
	r.serving.Store(true)
	defer r.serving.Store(false)
	r.fdMu.RLock()
	defer r.fdMu.RUnlock()
	if r.fdsClosed {
		return st, ErrReceiverClosed
	}
	// Forget wake-ups meant for an earlier call, then look again at what
	// they could have meant: Close sets closing before it wakes.
	r.clearWake()
	if r.closing.Load() {
		return st, ErrReceiverClosed
	}
	if err := ctx.Err(); err != nil {
		return st, err
	}
	stop := context.AfterFunc(ctx, r.wake)
	defer stop()

	fail := func(err error) (Stats, error) {
		return st, fmt.Errorf("busypoll: %s on %v: %w", op, r.addr, err)
	}
	// interrupted tells whether the eventfd fired for this call, and why.
	interrupted := func() error {
		r.clearWake()
		if r.closing.Load() {
			return ErrReceiverClosed
		}
		return ctx.Err() // nil: a late wake-up meant for an earlier call
	}

	conn := -1
	defer func() {
		if conn >= 0 {
			unix.Close(conn)
		}
	}()
	var start time.Time
	// accept takes a queued connection, if there is one: with edge
	// triggering, one that arrived during an earlier call raises no new
	// event.
	accept := func() error {
		fd, err := acceptNonblock(r.lfd)
		if err != nil || fd < 0 {
			return err
		}
		start = time.Now()
		conn = fd
		if r.noSocketPoll {
			// A child socket copies the listener's setting; setting it
			// again does not depend on that.
			if err := noSocketBusyPoll(conn); err != nil {
				return fmt.Errorf("accepted connection: %w", err)
			}
		}
		// Adding a socket that already holds data reports it at once.
		if err := epollAdd(r.epfd, conn, unix.EPOLLIN|unix.EPOLLET|unix.EPOLLRDHUP|unix.EPOLLHUP); err != nil {
			return fmt.Errorf("add the connection to epoll: %w", err)
		}
		return nil
	}
	if err := accept(); err != nil {
		return fail(err)
	}

	for {
		n, err := unix.EpollWait(r.epfd, r.events, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fail(fmt.Errorf("epoll_wait: %w", err))
		}
		st.EpollWaits++
		for i := range n {
			switch fd := int(r.events[i].Fd); {
			case fd == r.efd:
				if err := interrupted(); err != nil {
					return st, err
				}
			case fd == r.lfd:
				if conn < 0 {
					if err := accept(); err != nil {
						return fail(err)
					}
				}
				// Later connections wait in the queue for the next call.
			case fd == conn:
				eof, err := r.drain(conn, &st, handle)
				if err != nil {
					if err == ErrReceiverClosed || err == ctx.Err() {
						return st, err // a blocked echo write was interrupted
					}
					return fail(err)
				}
				if eof {
					st.Elapsed = time.Since(start)
					id, err := unix.GetsockoptInt(conn, unix.SOL_SOCKET, unix.SO_INCOMING_NAPI_ID)
					if err != nil && err != unix.ENOPROTOOPT {
						return fail(fmt.Errorf("getsockopt SO_INCOMING_NAPI_ID: %w", err))
					}
					st.NAPIID = uint32(id)
					usecs, err := unix.GetsockoptInt(conn, unix.SOL_SOCKET, unix.SO_BUSY_POLL)
					if err != nil && err != unix.ENOPROTOOPT {
						return fail(fmt.Errorf("getsockopt SO_BUSY_POLL: %w", err))
					}
					st.SocketBusyPollUsecs = usecs
					if err := unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, conn, nil); err != nil {
						return fail(fmt.Errorf("remove the connection from epoll: %w", err))
					}
					err = unix.Close(conn)
					conn = -1
					if err != nil {
						return fail(fmt.Errorf("close the connection: %w", err))
					}
					return st, nil
				}
			}
		}
	}
}

// drain reads conn until it would block (edge triggering: no new event comes
// for data already queued) or until end of file.
func (r *Receiver) drain(conn int, st *Stats, handle func(conn int, p []byte) error) (eof bool, err error) {
	for {
		n, err := unix.Read(conn, r.buf)
		switch {
		case err == nil && n > 0:
			st.Bytes += int64(n)
			st.Reads++
			if err := handle(conn, r.buf[:n]); err != nil {
				return false, err
			}
		case err == nil:
			return true, nil
		case err == unix.EAGAIN:
			return false, nil
		case err == unix.EINTR:
		default:
			return false, fmt.Errorf("read: %w", err)
		}
	}
}

// writeAll writes p to the non-blocking socket conn. When the socket is
// full it waits for room with poll, which Close and ctx interrupt through
// the eventfd.
func (r *Receiver) writeAll(ctx context.Context, conn int, p []byte) error {
	for len(p) > 0 {
		n, err := unix.Write(conn, p)
		if n > 0 {
			p = p[n:]
		}
		switch err {
		case nil, unix.EINTR:
		case unix.EAGAIN:
			fds := []unix.PollFd{{Fd: int32(conn), Events: unix.POLLOUT}, {Fd: int32(r.efd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err != nil && err != unix.EINTR {
				return fmt.Errorf("poll for room to write: %w", err)
			}
			if fds[1].Revents != 0 {
				r.clearWake()
				if r.closing.Load() {
					return ErrReceiverClosed
				}
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		default:
			return fmt.Errorf("write back: %w", err)
		}
	}
	return nil
}

// noSocketBusyPoll sets SO_BUSY_POLL to 0 on fd. A kernel without busy
// polling has no such option (ENOPROTOOPT), and then nothing can busy-poll.
func noSocketBusyPoll(fd int) error {
	err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL, 0)
	if err != nil && err != unix.ENOPROTOOPT {
		return fmt.Errorf("setsockopt SO_BUSY_POLL 0: %w", err)
	}
	return nil
}

// acceptNonblock accepts a queued connection as a non-blocking socket, or
// returns -1 if none is queued.
func acceptNonblock(lfd int) (int, error) {
	for {
		fd, _, err := unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
			return fd, nil
		case unix.EAGAIN:
			return -1, nil
		case unix.EINTR, unix.ECONNABORTED:
			// Interrupted, or the connection was reset while queued.
		default:
			return -1, fmt.Errorf("accept: %w", err)
		}
	}
}

func epollAdd(epfd, fd int, events uint32) error {
	return unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: events, Fd: int32(fd)})
}

// sockaddrOf converts a listen address for bind.
func sockaddrOf(ap netip.AddrPort) (unix.Sockaddr, int, error) {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}, unix.AF_INET, nil
	}
	sa := &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
	if z := a.Zone(); z != "" {
		ifi, err := net.InterfaceByName(z)
		if err != nil {
			return nil, 0, fmt.Errorf("busypoll: listen address %v: zone %q: %w", ap, z, err)
		}
		sa.ZoneId = uint32(ifi.Index)
	}
	return sa, unix.AF_INET6, nil
}

// addrPortOf converts a bound address back.
func addrPortOf(sa unix.Sockaddr, zone string) netip.AddrPort {
	switch sa := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(sa.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).WithZone(zone), uint16(sa.Port))
	}
	return netip.AddrPort{}
}
