package napi

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
)

// Attributes of the napi attribute set (NETDEV_A_NAPI_*).
const (
	attrNAPIIfIndex           = 1
	attrNAPIID                = 2
	attrNAPIIRQ               = 3
	attrNAPIPID               = 4
	attrNAPIDeferHardIRQs     = 5
	attrNAPIGROFlushTimeout   = 6
	attrNAPIIRQSuspendTimeout = 7
	attrNAPIThreaded          = 8
)

// napiAttrName names a napi attribute as netdev.yaml does.
func napiAttrName(typ uint16) string {
	switch typ {
	case attrNAPIIfIndex:
		return "ifindex"
	case attrNAPIID:
		return "id"
	case attrNAPIIRQ:
		return "irq"
	case attrNAPIPID:
		return "pid"
	case attrNAPIDeferHardIRQs:
		return "defer-hard-irqs"
	case attrNAPIGROFlushTimeout:
		return "gro-flush-timeout"
	case attrNAPIIRQSuspendTimeout:
		return "irq-suspend-timeout"
	case attrNAPIThreaded:
		return "threaded"
	default:
		return fmt.Sprintf("napi attribute %d", typ)
	}
}

// MaxDeferHardIRQs is the largest defer-hard-irqs value the kernel accepts
// (S32_MAX).
const MaxDeferHardIRQs = math.MaxInt32

// An Attr is a set of optional NAPI attributes, as bits.
type Attr uint32

// Optional NAPI attributes.
const (
	// AttrIRQ: the interrupt vector of the NAPI; absent for devices without
	// one (veth, netdevsim).
	AttrIRQ Attr = 1 << iota
	// AttrPID: the process id of the NAPI's kernel thread; present only
	// while the NAPI is threaded.
	AttrPID
	// AttrDeferHardIRQs: defer-hard-irqs (Linux 6.13).
	AttrDeferHardIRQs
	// AttrGROFlushTimeout: gro-flush-timeout (Linux 6.13).
	AttrGROFlushTimeout
	// AttrIRQSuspendTimeout: irq-suspend-timeout (Linux 6.13).
	AttrIRQSuspendTimeout
	// AttrThreaded: threaded (Linux 6.17).
	AttrThreaded
)

var attrNames = []struct {
	a    Attr
	name string
}{
	{AttrIRQ, "irq"},
	{AttrPID, "pid"},
	{AttrDeferHardIRQs, "defer-hard-irqs"},
	{AttrGROFlushTimeout, "gro-flush-timeout"},
	{AttrIRQSuspendTimeout, "irq-suspend-timeout"},
	{AttrThreaded, "threaded"},
}

// String lists the attributes by their kernel names, separated by "|".
func (a Attr) String() string {
	var names []string
	for _, n := range attrNames {
		if a&n.a != 0 {
			names = append(names, n.name)
			a &^= n.a
		}
	}
	if a != 0 {
		names = append(names, fmt.Sprintf("%#x", uint32(a)))
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, "|")
}

// Threaded is the threaded mode of a NAPI.
type Threaded uint32

// Threaded modes.
const (
	// ThreadedDisabled: the NAPI is polled in softirq context.
	ThreadedDisabled Threaded = 0
	// ThreadedEnabled: the NAPI is polled by its own kernel thread
	// (Linux 6.17 for a single NAPI).
	ThreadedEnabled Threaded = 1
	// ThreadedBusyPoll: the NAPI's kernel thread busy polls (Linux 6.19).
	ThreadedBusyPoll Threaded = 2
)

// String returns the kernel's name of the mode: "disabled", "enabled" or
// "busy-poll".
func (t Threaded) String() string {
	switch t {
	case ThreadedDisabled:
		return "disabled"
	case ThreadedEnabled:
		return "enabled"
	case ThreadedBusyPoll:
		return "busy-poll"
	default:
		return fmt.Sprintf("Threaded(%d)", uint32(t))
	}
}

// A NAPI is a NAPI instance as the kernel reports it in napi-get.
//
// ID and IfIndex are always reported. The other fields are valid only if
// their bit is in Present; otherwise they are zero.
type NAPI struct {
	// ID is the NAPI id, unique in the network namespace.
	ID uint32
	// IfIndex is the interface the NAPI belongs to.
	IfIndex uint32

	// IRQ is the interrupt vector (AttrIRQ).
	IRQ uint32
	// PID is the id of the NAPI's kernel thread in the initial pid
	// namespace (the kernel reports task_pid_nr, not the id the caller's
	// pid namespace would show) (AttrPID).
	PID uint32
	// DeferHardIRQs is the number of consecutive empty polls before device
	// interrupts are re-enabled (AttrDeferHardIRQs).
	DeferHardIRQs uint32
	// GROFlushTimeout is the NAPI watchdog timeout (AttrGROFlushTimeout).
	GROFlushTimeout time.Duration
	// IRQSuspendTimeout is how long device interrupts may stay suspended
	// while epoll busy polling finds events (AttrIRQSuspendTimeout).
	IRQSuspendTimeout time.Duration
	// Threaded is the threaded mode (AttrThreaded).
	Threaded Threaded

	// Present says which optional attributes the kernel reported.
	Present Attr
}

// Has reports whether the kernel reported all attributes in a.
func (n NAPI) Has(a Attr) bool { return n.Present&a == a }

// Settings returns the settable values the kernel reported, as Settings
// that restore them (see Client.Snapshot).
func (n NAPI) Settings() Settings {
	var s Settings
	if n.Has(AttrDeferHardIRQs) {
		s.DeferHardIRQs = new(n.DeferHardIRQs)
	}
	if n.Has(AttrGROFlushTimeout) {
		s.GROFlushTimeout = new(n.GROFlushTimeout)
	}
	if n.Has(AttrIRQSuspendTimeout) {
		s.IRQSuspendTimeout = new(n.IRQSuspendTimeout)
	}
	if n.Has(AttrThreaded) {
		s.Threaded = new(n.Threaded)
	}
	return s
}

// Settings are the configurable values of a NAPI (napi-set). Only non-nil
// fields are sent; the kernel leaves the others unchanged.
type Settings struct {
	// DeferHardIRQs: 0 to MaxDeferHardIRQs.
	DeferHardIRQs *uint32
	// GROFlushTimeout: not negative; sent in nanoseconds.
	GROFlushTimeout *time.Duration
	// IRQSuspendTimeout: not negative; sent in nanoseconds.
	IRQSuspendTimeout *time.Duration
	// Threaded: ThreadedDisabled, ThreadedEnabled or, where the kernel
	// has it, ThreadedBusyPoll.
	Threaded *Threaded
}

// Attrs returns the attributes that s sets.
func (s Settings) Attrs() Attr {
	var a Attr
	if s.DeferHardIRQs != nil {
		a |= AttrDeferHardIRQs
	}
	if s.GROFlushTimeout != nil {
		a |= AttrGROFlushTimeout
	}
	if s.IRQSuspendTimeout != nil {
		a |= AttrIRQSuspendTimeout
	}
	if s.Threaded != nil {
		a |= AttrThreaded
	}
	return a
}

// Equal reports whether s and o set the same fields to the same values.
// (Settings hold pointers: == compares addresses, not values.)
func (s Settings) Equal(o Settings) bool {
	return eqPtr(s.DeferHardIRQs, o.DeferHardIRQs) &&
		eqPtr(s.GROFlushTimeout, o.GROFlushTimeout) &&
		eqPtr(s.IRQSuspendTimeout, o.IRQSuspendTimeout) &&
		eqPtr(s.Threaded, o.Threaded)
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// Only returns s with just the fields in a, for example the values a NAPI
// reports for the fields a napi-set request sent:
// n.Settings().Only(sent.Attrs()).
func (s Settings) Only(a Attr) Settings {
	var o Settings
	if a&AttrDeferHardIRQs != 0 {
		o.DeferHardIRQs = s.DeferHardIRQs
	}
	if a&AttrGROFlushTimeout != 0 {
		o.GROFlushTimeout = s.GROFlushTimeout
	}
	if a&AttrIRQSuspendTimeout != 0 {
		o.IRQSuspendTimeout = s.IRQSuspendTimeout
	}
	if a&AttrThreaded != 0 {
		o.Threaded = s.Threaded
	}
	return o
}

// String lists the set fields, e.g. "defer-hard-irqs=100
// gro-flush-timeout=50µs", or "none".
func (s Settings) String() string {
	var f []string
	if s.DeferHardIRQs != nil {
		f = append(f, fmt.Sprintf("defer-hard-irqs=%d", *s.DeferHardIRQs))
	}
	if s.GROFlushTimeout != nil {
		f = append(f, fmt.Sprintf("gro-flush-timeout=%v", *s.GROFlushTimeout))
	}
	if s.IRQSuspendTimeout != nil {
		f = append(f, fmt.Sprintf("irq-suspend-timeout=%v", *s.IRQSuspendTimeout))
	}
	if s.Threaded != nil {
		f = append(f, fmt.Sprintf("threaded=%v", *s.Threaded))
	}
	if len(f) == 0 {
		return "none"
	}
	return strings.Join(f, " ")
}

// validate checks s against the limits of the kernel's napi-set policy.
func (s Settings) validate() error {
	if s.DeferHardIRQs != nil && *s.DeferHardIRQs > MaxDeferHardIRQs {
		return fmt.Errorf("defer-hard-irqs %d is larger than the kernel's limit %d", *s.DeferHardIRQs, MaxDeferHardIRQs)
	}
	if s.GROFlushTimeout != nil && *s.GROFlushTimeout < 0 {
		return fmt.Errorf("gro-flush-timeout %v is negative", *s.GROFlushTimeout)
	}
	if s.IRQSuspendTimeout != nil && *s.IRQSuspendTimeout < 0 {
		return fmt.Errorf("irq-suspend-timeout %v is negative", *s.IRQSuspendTimeout)
	}
	if s.Threaded != nil && *s.Threaded > ThreadedBusyPoll {
		return fmt.Errorf("threaded %d is larger than the largest mode %d (%v)", uint32(*s.Threaded), uint32(ThreadedBusyPoll), ThreadedBusyPoll)
	}
	return nil
}

// encode writes the set fields of s as napi-set attributes.
func (s Settings) encode(ae *netlink.AttributeEncoder) {
	if s.DeferHardIRQs != nil {
		ae.Uint32(attrNAPIDeferHardIRQs, *s.DeferHardIRQs)
	}
	if s.GROFlushTimeout != nil {
		encodeUint(ae, attrNAPIGROFlushTimeout, uint64(*s.GROFlushTimeout))
	}
	if s.IRQSuspendTimeout != nil {
		encodeUint(ae, attrNAPIIRQSuspendTimeout, uint64(*s.IRQSuspendTimeout))
	}
	if s.Threaded != nil {
		ae.Uint32(attrNAPIThreaded, uint32(*s.Threaded))
	}
}

// NAPIs lists the NAPI instances of the interface ifindex (napi-get dump).
// An ifindex of 0 lists those of every interface in the namespace. An
// interface that is down has none. An unknown ifindex matches
// os.ErrNotExist.
func (c *Client) NAPIs(ifindex uint32) ([]NAPI, error) {
	r := napiDumpRequest(ifindex)
	msgs, err := c.execute(r)
	if err != nil {
		return nil, err
	}
	ns, err := parseNAPIs(msgs)
	if err != nil {
		return nil, fmt.Errorf("napi: %s %s: %w", r.op, r.object, err)
	}
	return ns, nil
}

// NAPI returns the NAPI instance id (napi-get do). An unknown id, or one
// whose interface is down, matches os.ErrNotExist.
func (c *Client) NAPI(id uint32) (NAPI, error) {
	r := napiGetRequest(id)
	msgs, err := c.execute(r)
	if err != nil {
		return NAPI{}, err
	}
	ns, err := parseNAPIs(msgs)
	if err != nil {
		return NAPI{}, fmt.Errorf("napi: %s %s: %w", r.op, r.object, err)
	}
	if len(ns) != 1 {
		return NAPI{}, fmt.Errorf("napi: %s %s: kernel sent %d NAPIs, want 1", r.op, r.object, len(ns))
	}
	if ns[0].ID != id {
		return NAPI{}, fmt.Errorf("napi: %s %s: kernel sent NAPI id %d", r.op, r.object, ns[0].ID)
	}
	return ns[0], nil
}

// SetNAPI applies the non-nil fields of s to the NAPI instance id
// (napi-set). It needs CAP_NET_ADMIN in the namespace's user namespace;
// without it the error matches os.ErrPermission. An unknown id matches
// os.ErrNotExist. Values outside the kernel's limits are refused before
// anything is sent.
func (c *Client) SetNAPI(id uint32, s Settings) error {
	r := napiSetRequest(id, s)
	if err := s.validate(); err != nil {
		return fmt.Errorf("napi: %s %s: %w", r.op, r.object, err)
	}
	_, err := c.execute(r)
	return err
}

// napiDumpRequest is the napi-get dump request for ifindex (0: all).
func napiDumpRequest(ifindex uint32) request {
	object := fmt.Sprintf("ifindex %d", ifindex)
	if ifindex == 0 {
		object = "all interfaces"
	}
	return request{
		op:     "napi-get dump",
		object: object,
		cmd:    cmdNAPIGet,
		flags:  netlink.Dump,
		encode: func(ae *netlink.AttributeEncoder) {
			if ifindex != 0 {
				ae.Uint32(attrNAPIIfIndex, ifindex)
			}
		},
		names: napiAttrName,
	}
}

// napiGetRequest is the napi-get do request for NAPI id.
func napiGetRequest(id uint32) request {
	return request{
		op:     "napi-get",
		object: fmt.Sprintf("id %d", id),
		cmd:    cmdNAPIGet,
		encode: func(ae *netlink.AttributeEncoder) { ae.Uint32(attrNAPIID, id) },
		names:  napiAttrName,
	}
}

// napiSetRequest is the napi-set request of s for NAPI id. It does not
// validate s.
func napiSetRequest(id uint32, s Settings) request {
	return request{
		op:     "napi-set",
		object: fmt.Sprintf("id %d", id),
		cmd:    cmdNAPISet,
		// napi-set has no reply of its own: ask for the acknowledgement,
		// which also carries the error.
		flags: netlink.Acknowledge,
		encode: func(ae *netlink.AttributeEncoder) {
			ae.Uint32(attrNAPIID, id)
			s.encode(ae)
		},
		names: napiAttrName,
	}
}

// Snapshot returns the current settings of the NAPI instance id, for
// Restore. It holds the settings the kernel reports; on a kernel without
// threaded support, Threaded is nil and Restore leaves it alone.
func (c *Client) Snapshot(id uint32) (Settings, error) {
	n, err := c.NAPI(id)
	if err != nil {
		return Settings{}, err
	}
	return n.Settings(), nil
}

// Restore applies a snapshot taken by Snapshot to the NAPI instance id. It
// is SetNAPI under a name that says what it is for, as in
//
//	s, err := c.Snapshot(id)
//	...
//	t.Cleanup(func() { _ = c.Restore(id, s) })
//
// A NAPI that is gone (its link went down, its device was deleted) gives an
// error matching os.ErrNotExist. Taking a link down and up may also give the
// link a new NAPI with another id (veth does, on 6.18), which the snapshot
// does not follow.
func (c *Client) Restore(id uint32, s Settings) error {
	return c.SetNAPI(id, s)
}

// parseNAPIs parses napi-get replies.
func parseNAPIs(msgs []genetlink.Message) ([]NAPI, error) {
	return parseEach(msgs, func(ad *netlink.AttributeDecoder) (NAPI, error) {
		var n NAPI
		var haveID, haveIfIndex bool
		for ad.Next() {
			switch ad.Type() {
			case attrNAPIID:
				n.ID = decodeU32(ad, "id")
				haveID = true
			case attrNAPIIfIndex:
				n.IfIndex = decodeU32(ad, "ifindex")
				haveIfIndex = true
			case attrNAPIIRQ:
				n.IRQ = decodeU32(ad, "irq")
				n.Present |= AttrIRQ
			case attrNAPIPID:
				n.PID = decodeU32(ad, "pid")
				n.Present |= AttrPID
			case attrNAPIDeferHardIRQs:
				n.DeferHardIRQs = decodeU32(ad, "defer-hard-irqs")
				n.Present |= AttrDeferHardIRQs
			case attrNAPIGROFlushTimeout:
				n.GROFlushTimeout = decodeDuration(ad, "gro-flush-timeout")
				n.Present |= AttrGROFlushTimeout
			case attrNAPIIRQSuspendTimeout:
				n.IRQSuspendTimeout = decodeDuration(ad, "irq-suspend-timeout")
				n.Present |= AttrIRQSuspendTimeout
			case attrNAPIThreaded:
				// u32 in netdev.yaml; newer kernels write it with
				// nla_put_uint, so accept both widths.
				n.Threaded = Threaded(decodeUint32(ad, "threaded"))
				n.Present |= AttrThreaded
			}
		}
		if !haveID || !haveIfIndex {
			return n, fmt.Errorf("reply without id or ifindex (id %d, ifindex %d)", n.ID, n.IfIndex)
		}
		return n, nil
	})
}

// parseEach decodes the attributes of each reply in msgs with decode, which
// says what a reply lacks; a decoding error comes first.
func parseEach[T any](msgs []genetlink.Message, decode func(ad *netlink.AttributeDecoder) (T, error)) ([]T, error) {
	out := make([]T, 0, len(msgs))
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return nil, err
		}
		v, incomplete := decode(ad)
		if err := ad.Err(); err != nil {
			return nil, err
		}
		if incomplete != nil {
			return nil, incomplete
		}
		out = append(out, v)
	}
	return out, nil
}
