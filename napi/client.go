package napi

import (
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
	"golang.org/x/sys/unix"

	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
)

// Generic netlink family "netdev" (include/uapi/linux/netdev.h).
const (
	familyName    = "netdev"
	familyVersion = 1

	cmdQueueGet = 10
	cmdNAPIGet  = 11
	cmdNAPISet  = 14
)

// A Client speaks the netdev generic netlink family in one network namespace.
// Its methods may be called from several goroutines.
type Client struct {
	c      *genetlink.Conn
	family uint16
}

// Dial opens a generic netlink socket in the network namespace referred to by
// netnsFD and resolves the netdev family, once. The calling thread never
// changes namespace. The caller may close netnsFD once Dial has returned:
// the socket stays in that namespace.
//
// netnsFD must be an open descriptor above 0: a negative one (what a closed
// namespace's FD returns) and 0 (which the netlink library would take for
// "the current namespace") are refused with an error, so that a closed
// namespace never silently becomes the caller's. For the calling thread's
// namespace, say so with DialCurrent.
//
// If the kernel has no netdev family (before Linux 6.3), the error matches
// os.ErrNotExist.
func Dial(netnsFD int) (*Client, error) {
	if netnsFD <= 0 {
		return nil, fmt.Errorf("napi: Dial: network namespace fd %d is not an open descriptor (a closed namespace?); DialCurrent dials the calling thread's namespace", netnsFD)
	}
	return dial(&netlink.Config{Strict: true, NetNS: netnsFD},
		fmt.Sprintf(" in network namespace fd %d", netnsFD))
}

// DialCurrent is Dial in the network namespace of the calling thread
// (normally the process's).
func DialCurrent() (*Client, error) {
	return dial(&netlink.Config{Strict: true}, "")
}

func dial(cfg *netlink.Config, where string) (*Client, error) {
	conn, err := genetlink.Dial(cfg)
	if err != nil {
		return nil, fmt.Errorf("napi: open generic netlink socket%s: %w", where, err)
	}

	c, err := newClient(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

// newClient resolves the netdev family on conn. Tests use it with fakes.
func newClient(conn *genetlink.Conn) (*Client, error) {
	f, err := conn.GetFamily(familyName)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			// The family came in Linux 6.3 (include/uapi/linux/netdev.h,
			// dev-get); napi-get in 6.8 (FamilySince).
			return nil, fmt.Errorf("napi: %w", &kernelfeature.UnsupportedFeatureError{
				Name: fmt.Sprintf("generic netlink family %q", familyName), MinimumVersion: "6.3", Err: err})
		}
		return nil, fmt.Errorf("napi: resolve generic netlink family %q: %w", familyName, err)
	}
	return &Client{c: conn, family: f.ID}, nil
}

// Close closes the Client's socket.
func (c *Client) Close() error { return c.c.Close() }

// A request is one netdev (or controller) request and how to name it.
type request struct {
	op     string // operation for errors, such as "napi-set"
	object string // object for errors, such as "id 42"

	family  uint16 // 0: the netdev family
	version uint8  // generic netlink version, with family
	cmd     uint8
	flags   netlink.HeaderFlags // netlink.Request is always added

	encode func(*netlink.AttributeEncoder) // request attributes; may be nil
	names  func(uint16) string             // attribute names, for errors
}

// execute is the one round trip of the package: it sends r and returns the
// replies, or an *Error.
func (c *Client) execute(r request) ([]genetlink.Message, error) {
	ae := netlink.NewAttributeEncoder()
	if r.encode != nil {
		r.encode(ae)
	}
	b, err := ae.Encode()
	if err != nil {
		return nil, fmt.Errorf("napi: %s %s: encode request: %w", r.op, r.object, err)
	}

	family, version := r.family, r.version
	if family == 0 {
		family, version = c.family, familyVersion
	}
	msgs, err := c.c.Execute(genetlink.Message{
		Header: genetlink.Header{Command: r.cmd, Version: version},
		Data:   b,
	}, family, netlink.Request|r.flags)
	if err != nil {
		return nil, newError(r, b, err)
	}
	return msgs, nil
}

// An Error is a failed request to the kernel.
type Error struct {
	// Op is the netdev operation, such as "napi-set" or "napi-get dump".
	Op string
	// Object names what the request was about, such as "id 42" or
	// "ifindex 3".
	Object string
	// Message is the kernel's extended acknowledgement message, if any.
	Message string
	// Attr is the name of the request attribute the kernel pointed at in
	// its extended acknowledgement, if any.
	Attr string
	// Err is the underlying error, usually a *netlink.OpError that wraps a
	// unix.Errno.
	Err error
}

// newError wraps err from request r whose encoded attributes were attrs.
func newError(r request, attrs []byte, err error) *Error {
	e := &Error{Op: r.op, Object: r.object, Err: err}
	var oerr *netlink.OpError
	if errors.As(err, &oerr) {
		e.Message = oerr.Message
		if typ, ok := attrAtOffset(attrs, oerr.Offset); ok && r.names != nil {
			e.Attr = r.names(typ)
		}
	}
	return e
}

// Error implements error: "napi: OP OBJECT[: attribute A][: MESSAGE]: ERRNO".
func (e *Error) Error() string {
	s := "napi: " + e.Op
	if e.Object != "" {
		s += " " + e.Object
	}
	if e.Attr != "" {
		s += ": attribute " + e.Attr
	}
	if e.Message != "" {
		s += ": " + e.Message
	}
	cause := e.Err
	var oerr *netlink.OpError
	if errors.As(cause, &oerr) && oerr.Err != nil {
		// The OpError repeats the message; its errno is what is left to say.
		cause = oerr.Err
	}
	if cause != nil {
		s += ": " + cause.Error()
	}
	return s
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// Is reports ENODEV (no such interface) as os.ErrNotExist, in addition to
// what the wrapped errno matches (EPERM and EACCES: os.ErrPermission,
// ENOENT: os.ErrNotExist).
func (e *Error) Is(target error) bool {
	return target == os.ErrNotExist && errors.Is(e.Err, unix.ENODEV)
}

// attrAtOffset returns the type of the attribute that starts at offset in a
// request whose attributes are attrs; offset counts from the start of the
// netlink header, as NLMSGERR_ATTR_OFFS does.
func attrAtOffset(attrs []byte, offset int) (uint16, bool) {
	const hdrs = 16 + 4 // struct nlmsghdr + struct genlmsghdr
	// Walk the attributes by hand: AttributeDecoder does not expose offsets.
	for pos := 0; pos+4 <= len(attrs); {
		n := int(nlenc.Uint16(attrs[pos : pos+2]))
		if n < 4 {
			break
		}
		if hdrs+pos == offset {
			return nlenc.Uint16(attrs[pos+2:pos+4]) &^ (netlink.Nested | netlink.NetByteOrder), true
		}
		pos += (n + 3) &^ 3
	}
	return 0, false
}
