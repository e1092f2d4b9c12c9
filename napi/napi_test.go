package napi

import (
	"errors"
	"math"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestNAPIsRequest(t *testing.T) {
	tests := []struct {
		name    string
		ifindex uint32
		want    []byte
	}{
		{name: "one interface", ifindex: 3, want: attrs(t, a32(attrNAPIIfIndex, 3))},
		{name: "all interfaces", ifindex: 0, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t, expect(t, testFamilyID, cmdNAPIGet, netlink.Request|netlink.Dump, tt.want, []genetlink.Message{
				reply(t, cmdNAPIGet, a32(attrNAPIID, 513), a32(attrNAPIIfIndex, 3)),
				reply(t, cmdNAPIGet, a32(attrNAPIID, 514), a32(attrNAPIIfIndex, 3), a32(attrNAPIIRQ, 40)),
			}, nil))

			ns, err := c.NAPIs(tt.ifindex)
			require.NoError(t, err)
			assert.Equal(t, []NAPI{
				{ID: 513, IfIndex: 3},
				{ID: 514, IfIndex: 3, IRQ: 40, Present: AttrIRQ},
			}, ns)
		})
	}
}

func TestNAPIsEmpty(t *testing.T) {
	// An interface that is down has no NAPIs: the dump is empty.
	c := testClient(t, expect(t, testFamilyID, cmdNAPIGet, netlink.Request|netlink.Dump,
		attrs(t, a32(attrNAPIIfIndex, 3)), nil, nil))
	ns, err := c.NAPIs(3)
	require.NoError(t, err)
	assert.Empty(t, ns)
}

func TestNAPIDecode(t *testing.T) {
	tests := []struct {
		name    string
		reply   []netlink.Attribute
		want    NAPI
		wantErr string
	}{
		{
			name: "6.18 veth, defaults, 4-byte uints",
			reply: []netlink.Attribute{
				a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7), a32(attrNAPIThreaded, 0),
				a32(attrNAPIDeferHardIRQs, 0), a32(attrNAPIIRQSuspendTimeout, 0), a32(attrNAPIGROFlushTimeout, 0),
			},
			want: NAPI{ID: 42, IfIndex: 7,
				Present: AttrDeferHardIRQs | AttrGROFlushTimeout | AttrIRQSuspendTimeout | AttrThreaded},
		},
		{
			name: "8-byte uints",
			reply: []netlink.Attribute{
				a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7), a32(attrNAPIDeferHardIRQs, 100),
				a64(attrNAPIGROFlushTimeout, 5_000_000_000), a64(attrNAPIIRQSuspendTimeout, 1<<40),
			},
			want: NAPI{ID: 42, IfIndex: 7, DeferHardIRQs: 100,
				GROFlushTimeout: 5 * time.Second, IRQSuspendTimeout: time.Duration(1 << 40),
				Present: AttrDeferHardIRQs | AttrGROFlushTimeout | AttrIRQSuspendTimeout},
		},
		{
			name: "threaded with irq and pid",
			reply: []netlink.Attribute{
				a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7), a32(attrNAPIIRQ, 133), a32(attrNAPIThreaded, 1),
				a32(attrNAPIPID, 4242), a32(attrNAPIDeferHardIRQs, 2), a32(attrNAPIIRQSuspendTimeout, 20_000_000),
				a32(attrNAPIGROFlushTimeout, 50_000),
			},
			want: NAPI{ID: 42, IfIndex: 7, IRQ: 133, PID: 4242, DeferHardIRQs: 2,
				GROFlushTimeout: 50 * time.Microsecond, IRQSuspendTimeout: 20 * time.Millisecond,
				Threaded: ThreadedEnabled,
				Present:  AttrIRQ | AttrPID | AttrDeferHardIRQs | AttrGROFlushTimeout | AttrIRQSuspendTimeout | AttrThreaded},
		},
		{
			name:  "threaded written as an 8-byte uint",
			reply: []netlink.Attribute{a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7), a64(attrNAPIThreaded, 2)},
			want:  NAPI{ID: 42, IfIndex: 7, Threaded: ThreadedBusyPoll, Present: AttrThreaded},
		},
		{
			name:  "6.8 kernel: id, ifindex, irq only",
			reply: []netlink.Attribute{a32(attrNAPIIfIndex, 7), a32(attrNAPIID, 42), a32(attrNAPIIRQ, 0)},
			want:  NAPI{ID: 42, IfIndex: 7, Present: AttrIRQ},
		},
		{
			name:  "unknown attributes are ignored",
			reply: []netlink.Attribute{a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7), araw(99, 1, 2, 3)},
			want:  NAPI{ID: 42, IfIndex: 7},
		},
		{
			name:    "uint of 2 bytes",
			reply:   []netlink.Attribute{a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7), a16(attrNAPIGROFlushTimeout, 1)},
			wantErr: "napi: napi-get id 42: attribute gro-flush-timeout: 2 bytes, want 4 or 8 (uint)",
		},
		{
			name:    "uint of 12 bytes",
			reply:   []netlink.Attribute{a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7), araw(attrNAPIIRQSuspendTimeout, make([]byte, 12)...)},
			wantErr: "napi: napi-get id 42: attribute irq-suspend-timeout: 12 bytes, want 4 or 8 (uint)",
		},
		{
			name:    "u32 of 8 bytes",
			reply:   []netlink.Attribute{a64(attrNAPIID, 42), a32(attrNAPIIfIndex, 7)},
			wantErr: "napi: napi-get id 42: attribute id: 8 bytes, want 4 (u32)",
		},
		{
			name:    "duration beyond time.Duration",
			reply:   []netlink.Attribute{a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7), a64(attrNAPIGROFlushTimeout, math.MaxUint64)},
			wantErr: "napi: napi-get id 42: attribute gro-flush-timeout: 18446744073709551615 ns does not fit a time.Duration (max 9223372036854775807 ns)",
		},
		{
			name:    "threaded beyond 32 bits",
			reply:   []netlink.Attribute{a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7), a64(attrNAPIThreaded, 1<<32)},
			wantErr: "napi: napi-get id 42: attribute threaded: value 4294967296 is larger than 4294967295",
		},
		{
			name:    "no ifindex",
			reply:   []netlink.Attribute{a32(attrNAPIID, 42)},
			wantErr: "napi: napi-get id 42: reply without id or ifindex (id 42, ifindex 0)",
		},
		{
			name:    "another NAPI",
			reply:   []netlink.Attribute{a32(attrNAPIID, 43), a32(attrNAPIIfIndex, 7)},
			wantErr: "napi: napi-get id 42: kernel sent NAPI id 43",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t, expect(t, testFamilyID, cmdNAPIGet, netlink.Request,
				attrs(t, a32(attrNAPIID, 42)), []genetlink.Message{reply(t, cmdNAPIGet, tt.reply...)}, nil))

			n, err := c.NAPI(42)
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, n)
		})
	}
}

func TestNAPIReplyCount(t *testing.T) {
	for _, n := range []int{0, 2} {
		var replies []genetlink.Message
		for range n {
			replies = append(replies, reply(t, cmdNAPIGet, a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7)))
		}
		c := testClient(t, expect(t, testFamilyID, cmdNAPIGet, netlink.Request,
			attrs(t, a32(attrNAPIID, 42)), replies, nil))
		_, err := c.NAPI(42)
		assert.ErrorContains(t, err, "napi: napi-get id 42: kernel sent", "%d replies", n)
	}
}

func TestSetNAPIRequest(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		want []netlink.Attribute // after the id
	}{
		{name: "nothing", s: Settings{}},
		{
			name: "defer-hard-irqs only",
			s:    Settings{DeferHardIRQs: new(uint32(100))},
			want: []netlink.Attribute{a32(attrNAPIDeferHardIRQs, 100)},
		},
		{
			name: "the selftest's values",
			s: Settings{
				DeferHardIRQs:     new(uint32(100)),
				GROFlushTimeout:   new(50 * time.Microsecond),
				IRQSuspendTimeout: new(20 * time.Millisecond),
			},
			want: []netlink.Attribute{
				a32(attrNAPIDeferHardIRQs, 100),
				a32(attrNAPIGROFlushTimeout, 50_000),
				a32(attrNAPIIRQSuspendTimeout, 20_000_000),
			},
		},
		{
			name: "zeros are sent",
			s: Settings{
				DeferHardIRQs:     new(uint32(0)),
				GROFlushTimeout:   new(time.Duration(0)),
				IRQSuspendTimeout: new(time.Duration(0)),
				Threaded:          new(ThreadedDisabled),
			},
			want: []netlink.Attribute{
				a32(attrNAPIDeferHardIRQs, 0),
				a32(attrNAPIGROFlushTimeout, 0),
				a32(attrNAPIIRQSuspendTimeout, 0),
				a32(attrNAPIThreaded, 0),
			},
		},
		{
			name: "timeouts beyond 32 bits of nanoseconds are 8 bytes",
			s: Settings{
				GROFlushTimeout:   new(5 * time.Second),
				IRQSuspendTimeout: new(time.Duration(math.MaxUint32)),
			},
			want: []netlink.Attribute{
				a64(attrNAPIGROFlushTimeout, 5_000_000_000),
				a32(attrNAPIIRQSuspendTimeout, math.MaxUint32),
			},
		},
		{
			name: "largest values",
			s: Settings{
				DeferHardIRQs:     new(uint32(MaxDeferHardIRQs)),
				IRQSuspendTimeout: new(time.Duration(math.MaxInt64)),
				Threaded:          new(ThreadedBusyPoll),
			},
			want: []netlink.Attribute{
				a32(attrNAPIDeferHardIRQs, math.MaxInt32),
				a64(attrNAPIIRQSuspendTimeout, math.MaxInt64),
				a32(attrNAPIThreaded, 2),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := attrs(t, append([]netlink.Attribute{a32(attrNAPIID, 42)}, tt.want...)...)
			// genltest.Error(0) is the kernel's acknowledgement.
			c := testClient(t, expect(t, testFamilyID, cmdNAPISet, netlink.Request|netlink.Acknowledge,
				want, nil, genltest.Error(0)))
			require.NoError(t, c.SetNAPI(42, tt.s))
		})
	}
}

func TestSetNAPIValidation(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		want string
	}{
		{
			name: "defer-hard-irqs above S32_MAX",
			s:    Settings{DeferHardIRQs: new(uint32(math.MaxInt32 + 1))},
			want: "napi: napi-set id 42: defer-hard-irqs 2147483648 is larger than the kernel's limit 2147483647",
		},
		{
			name: "negative gro-flush-timeout",
			s:    Settings{GROFlushTimeout: new(-time.Microsecond)},
			want: "napi: napi-set id 42: gro-flush-timeout -1µs is negative",
		},
		{
			name: "negative irq-suspend-timeout",
			s:    Settings{IRQSuspendTimeout: new(-time.Duration(1))},
			want: "napi: napi-set id 42: irq-suspend-timeout -1ns is negative",
		},
		{
			name: "unknown threaded mode",
			s:    Settings{Threaded: new(Threaded(3))},
			want: "napi: napi-set id 42: threaded 3 is larger than the largest mode 2 (busy-poll)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t, never(t))
			require.EqualError(t, c.SetNAPI(42, tt.s), tt.want)
		})
	}
}

func TestSnapshotRestore(t *testing.T) {
	tests := []struct {
		name  string
		reply []netlink.Attribute
		want  Settings
		set   []netlink.Attribute // napi-set attributes after the id
	}{
		{
			name: "6.18",
			reply: []netlink.Attribute{
				a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7), a32(attrNAPIThreaded, 1), a32(attrNAPIPID, 99),
				a32(attrNAPIDeferHardIRQs, 2), a32(attrNAPIIRQSuspendTimeout, 0), a64(attrNAPIGROFlushTimeout, 5_000_000_000),
			},
			want: Settings{
				DeferHardIRQs:     new(uint32(2)),
				GROFlushTimeout:   new(5 * time.Second),
				IRQSuspendTimeout: new(time.Duration(0)),
				Threaded:          new(ThreadedEnabled),
			},
			set: []netlink.Attribute{
				a32(attrNAPIDeferHardIRQs, 2), a64(attrNAPIGROFlushTimeout, 5_000_000_000),
				a32(attrNAPIIRQSuspendTimeout, 0), a32(attrNAPIThreaded, 1),
			},
		},
		{
			name: "6.13: no threaded, so none restored",
			reply: []netlink.Attribute{
				a32(attrNAPIID, 42), a32(attrNAPIIfIndex, 7),
				a32(attrNAPIDeferHardIRQs, 0), a32(attrNAPIIRQSuspendTimeout, 0), a32(attrNAPIGROFlushTimeout, 0),
			},
			want: Settings{
				DeferHardIRQs:     new(uint32(0)),
				GROFlushTimeout:   new(time.Duration(0)),
				IRQSuspendTimeout: new(time.Duration(0)),
			},
			set: []netlink.Attribute{
				a32(attrNAPIDeferHardIRQs, 0), a32(attrNAPIGROFlushTimeout, 0), a32(attrNAPIIRQSuspendTimeout, 0),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t, expect(t, testFamilyID, cmdNAPIGet, netlink.Request,
				attrs(t, a32(attrNAPIID, 42)), []genetlink.Message{reply(t, cmdNAPIGet, tt.reply...)}, nil))
			s, err := c.Snapshot(42)
			require.NoError(t, err)
			assert.Equal(t, tt.want, s)

			c = testClient(t, expect(t, testFamilyID, cmdNAPISet, netlink.Request|netlink.Acknowledge,
				attrs(t, append([]netlink.Attribute{a32(attrNAPIID, 42)}, tt.set...)...), nil, genltest.Error(0)))
			require.NoError(t, c.Restore(42, s))
		})
	}
}

func TestQueues(t *testing.T) {
	c := testClient(t, expect(t, testFamilyID, cmdQueueGet, netlink.Request|netlink.Dump,
		attrs(t, a32(attrQueueIfIndex, 7)), []genetlink.Message{
			reply(t, cmdQueueGet, a32(attrQueueID, 0), a32(attrQueueType, 0), a32(attrQueueIfIndex, 7), a32(attrQueueNAPIID, 8193)),
			reply(t, cmdQueueGet, a32(attrQueueID, 1), a32(attrQueueType, 0), a32(attrQueueIfIndex, 7), a32(attrQueueNAPIID, 8194)),
			reply(t, cmdQueueGet, a32(attrQueueID, 0), a32(attrQueueType, 1), a32(attrQueueIfIndex, 7)),
		}, nil))
	qs, err := c.Queues(7)
	require.NoError(t, err)
	assert.Equal(t, []Queue{
		{ID: 0, IfIndex: 7, Type: QueueRX, NAPIID: 8193},
		{ID: 1, IfIndex: 7, Type: QueueRX, NAPIID: 8194},
		{ID: 0, IfIndex: 7, Type: QueueTX},
	}, qs)
}

func TestQueuesAll(t *testing.T) {
	c := testClient(t, expect(t, testFamilyID, cmdQueueGet, netlink.Request|netlink.Dump, nil, nil, nil))
	qs, err := c.Queues(0)
	require.NoError(t, err)
	assert.Empty(t, qs)
}

func TestQueuesDecodeErrors(t *testing.T) {
	tests := []struct {
		name  string
		reply []netlink.Attribute
		want  string
	}{
		{
			name:  "no type",
			reply: []netlink.Attribute{a32(attrQueueID, 0), a32(attrQueueIfIndex, 7)},
			want:  "napi: queue-get dump ifindex 7: queue reply without id, ifindex or type (id 0, ifindex 7, type rx)",
		},
		{
			name:  "short napi-id",
			reply: []netlink.Attribute{a32(attrQueueID, 0), a32(attrQueueIfIndex, 7), a32(attrQueueType, 0), a16(attrQueueNAPIID, 1)},
			want:  "napi: queue-get dump ifindex 7: attribute napi-id: 2 bytes, want 4 (u32)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := testClient(t, expect(t, testFamilyID, cmdQueueGet, netlink.Request|netlink.Dump,
				attrs(t, a32(attrQueueIfIndex, 7)), []genetlink.Message{reply(t, cmdQueueGet, tt.reply...)}, nil))
			_, err := c.Queues(7)
			require.EqualError(t, err, tt.want)
		})
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name       string
		errno      unix.Errno
		call       func(c *Client) error
		want       string
		permission bool
		notExist   bool
	}{
		{
			name:       "napi-set without CAP_NET_ADMIN",
			errno:      unix.EPERM,
			call:       func(c *Client) error { return c.SetNAPI(42, Settings{DeferHardIRQs: new(uint32(1))}) },
			want:       "napi: napi-set id 42: operation not permitted",
			permission: true,
		},
		{
			name:     "napi-set of an unknown id",
			errno:    unix.ENOENT,
			call:     func(c *Client) error { return c.SetNAPI(42, Settings{}) },
			want:     "napi: napi-set id 42: no such file or directory",
			notExist: true,
		},
		{
			name:     "napi-get of an unknown id",
			errno:    unix.ENOENT,
			call:     func(c *Client) error { _, err := c.NAPI(42); return err },
			want:     "napi: napi-get id 42: no such file or directory",
			notExist: true,
		},
		{
			name:     "napi-get dump of an unknown interface",
			errno:    unix.ENODEV,
			call:     func(c *Client) error { _, err := c.NAPIs(9); return err },
			want:     "napi: napi-get dump ifindex 9: no such device",
			notExist: true,
		},
		{
			name:     "queue-get dump of an unknown interface",
			errno:    unix.ENODEV,
			call:     func(c *Client) error { _, err := c.Queues(9); return err },
			want:     "napi: queue-get dump ifindex 9: no such device",
			notExist: true,
		},
		{
			name:  "invalid argument",
			errno: unix.EINVAL,
			call:  func(c *Client) error { return c.SetNAPI(42, Settings{Threaded: new(ThreadedBusyPoll)}) },
			want:  "napi: napi-set id 42: invalid argument",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(extAckClient(t, tt.errno, "", 0))
			require.EqualError(t, err, tt.want)

			var e *Error
			require.ErrorAs(t, err, &e)
			var oerr *netlink.OpError
			require.ErrorAs(t, err, &oerr, "the netlink error stays reachable")
			assert.ErrorIs(t, err, tt.errno)
			assert.Equal(t, tt.permission, errors.Is(err, os.ErrPermission), "errors.Is(err, os.ErrPermission)")
			assert.Equal(t, tt.notExist, errors.Is(err, os.ErrNotExist), "errors.Is(err, os.ErrNotExist)")
		})
	}
}

func TestErrorsGenltest(t *testing.T) {
	// The same mapping through genltest's error path, for a do request.
	c := testClient(t, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return nil, genltest.Error(int(unix.EPERM))
	})
	err := c.SetNAPI(42, Settings{Threaded: new(ThreadedEnabled)})
	require.EqualError(t, err, "napi: napi-set id 42: operation not permitted")
	assert.ErrorIs(t, err, os.ErrPermission)
}

func TestErrorsExtAck(t *testing.T) {
	// Offsets count from the netlink header: 16 (nlmsghdr) + 4 (genlmsghdr)
	// + the attributes before it. The napi-set request below has id (8
	// bytes, at 20), defer-hard-irqs (at 28) and threaded (at 36).
	set := func(c *Client) error {
		return c.SetNAPI(42, Settings{DeferHardIRQs: new(uint32(1)), Threaded: new(ThreadedBusyPoll)})
	}
	tests := []struct {
		name    string
		errno   unix.Errno
		msg     string
		offset  uint32
		want    string
		attr    string
		isNotEx bool
	}{
		{
			name: "policy: value out of range", errno: unix.EINVAL, msg: "integer out of range", offset: 36,
			want: "napi: napi-set id 42: attribute threaded: integer out of range: invalid argument",
			attr: "threaded",
		},
		{
			name: "unknown id: offset only", errno: unix.ENOENT, offset: 20,
			want: "napi: napi-set id 42: attribute id: no such file or directory",
			attr: "id", isNotEx: true,
		},
		{
			name: "message only", errno: unix.EBUSY, msg: "device is busy",
			want: "napi: napi-set id 42: device is busy: device or resource busy",
		},
		{
			name: "offset inside an attribute", errno: unix.EINVAL, offset: 30,
			want: "napi: napi-set id 42: invalid argument",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := set(extAckClient(t, tt.errno, tt.msg, tt.offset))
			require.EqualError(t, err, tt.want)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.Equal(t, "napi-set", e.Op)
			assert.Equal(t, "id 42", e.Object)
			assert.Equal(t, tt.msg, e.Message)
			assert.Equal(t, tt.attr, e.Attr)
			assert.ErrorIs(t, err, tt.errno)
			assert.Equal(t, tt.isNotEx, errors.Is(err, os.ErrNotExist))
		})
	}
}

func TestDialNoFamily(t *testing.T) {
	// A kernel without the netdev family answers the controller with ENOENT.
	conn := genltest.Dial(func(greq genetlink.Message, nreq netlink.Message) ([]genetlink.Message, error) {
		assert.Equal(t, netlink.HeaderType(unix.GENL_ID_CTRL), nreq.Header.Type)
		assert.Equal(t, uint8(unix.CTRL_CMD_GETFAMILY), greq.Header.Command)
		return nil, genltest.Error(int(unix.ENOENT))
	})
	defer conn.Close()
	_, err := newClient(conn)
	require.ErrorContains(t, err, `napi: kernel has no generic netlink family "netdev": needs Linux 6.3`)
	assert.ErrorIs(t, err, os.ErrNotExist)
	var fe *kernelfeature.UnsupportedFeatureError
	require.ErrorAs(t, err, &fe, "typed, for testenv.SkipIfNotSupported")
	assert.Equal(t, "6.3", fe.MinimumVersion)
}

func TestDecodeUint(t *testing.T) {
	for n := range 10 {
		b := make([]byte, n)
		for i := range b {
			b[i] = 0xff
		}
		ad, err := netlink.NewAttributeDecoder(attrs(t, araw(attrNAPIGROFlushTimeout, b...)))
		require.NoError(t, err)
		require.True(t, ad.Next())
		v := decodeUint(ad, "gro-flush-timeout")
		switch n {
		case 4:
			assert.NoError(t, ad.Err())
			assert.Equal(t, uint64(math.MaxUint32), v)
		case 8:
			assert.NoError(t, ad.Err())
			assert.Equal(t, uint64(math.MaxUint64), v)
		default:
			assert.EqualError(t, ad.Err(), "attribute gro-flush-timeout: "+strconv.Itoa(n)+" bytes, want 4 or 8 (uint)", "%d bytes", n)
		}
	}
}

func TestStrings(t *testing.T) {
	tests := []struct {
		name string
		s    interface{ String() string }
		want string
	}{
		{"threaded disabled", ThreadedDisabled, "disabled"},
		{"threaded enabled", ThreadedEnabled, "enabled"},
		{"threaded busy-poll", ThreadedBusyPoll, "busy-poll"},
		{"threaded unknown", Threaded(7), "Threaded(7)"},
		{"no attrs", Attr(0), "none"},
		{"attrs", AttrIRQ | AttrPID | AttrThreaded, "irq|pid|threaded"},
		{"unknown attr bits", AttrGROFlushTimeout | Attr(1<<20), "gro-flush-timeout|0x100000"},
		{"queue rx", QueueRX, "rx"},
		{"queue tx", QueueTX, "tx"},
		{"queue unknown", QueueType(5), "QueueType(5)"},
		{"no settings", Settings{}, "none"},
		{"settings", Settings{
			DeferHardIRQs: new(uint32(100)), GROFlushTimeout: new(50 * time.Microsecond),
			IRQSuspendTimeout: new(20 * time.Millisecond), Threaded: new(ThreadedEnabled),
		}, "defer-hard-irqs=100 gro-flush-timeout=50µs irq-suspend-timeout=20ms threaded=enabled"},
		{"feature", FeatureIRQSuspendTimeout, "napi-set irq-suspend-timeout"},
		{"unknown feature", Feature(99), "Feature(99)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.s.String())
		})
	}
}

func TestSettingsAttrs(t *testing.T) {
	assert.Equal(t, Attr(0), Settings{}.Attrs())
	assert.Equal(t, AttrGROFlushTimeout|AttrThreaded,
		Settings{GROFlushTimeout: new(time.Duration(0)), Threaded: new(ThreadedDisabled)}.Attrs())
	n := NAPI{Present: AttrIRQ | AttrDeferHardIRQs}
	assert.True(t, n.Has(AttrIRQ))
	assert.True(t, n.Has(AttrIRQ|AttrDeferHardIRQs))
	assert.False(t, n.Has(AttrIRQ|AttrPID))
	assert.Equal(t, AttrDeferHardIRQs, n.Settings().Attrs())
}

func TestSettingsEqual(t *testing.T) {
	all := func() Settings {
		return Settings{
			DeferHardIRQs: new(uint32(100)), GROFlushTimeout: new(50 * time.Microsecond),
			IRQSuspendTimeout: new(20 * time.Millisecond), Threaded: new(ThreadedEnabled),
		}
	}
	assert.True(t, Settings{}.Equal(Settings{}))
	assert.True(t, all().Equal(all()), "equal values at different addresses")
	for name, change := range map[string]func(*Settings){
		"defer-hard-irqs value":     func(s *Settings) { s.DeferHardIRQs = new(uint32(1)) },
		"defer-hard-irqs unset":     func(s *Settings) { s.DeferHardIRQs = nil },
		"gro-flush-timeout value":   func(s *Settings) { s.GROFlushTimeout = new(time.Duration(1)) },
		"irq-suspend-timeout unset": func(s *Settings) { s.IRQSuspendTimeout = nil },
		"threaded value":            func(s *Settings) { s.Threaded = new(ThreadedDisabled) },
	} {
		s := all()
		change(&s)
		assert.False(t, s.Equal(all()), name)
		assert.False(t, all().Equal(s), name)
	}
}

func TestSettingsOnly(t *testing.T) {
	all := Settings{
		DeferHardIRQs:     new(uint32(100)),
		GROFlushTimeout:   new(50 * time.Microsecond),
		IRQSuspendTimeout: new(20 * time.Millisecond),
		Threaded:          new(ThreadedEnabled),
	}
	tests := []struct {
		a    Attr
		want string
	}{
		{0, "none"},
		{AttrDeferHardIRQs, "defer-hard-irqs=100"},
		{AttrGROFlushTimeout | AttrThreaded, "gro-flush-timeout=50µs threaded=enabled"},
		{all.Attrs(), all.String()},
	}
	for _, tt := range tests {
		got := all.Only(tt.a)
		assert.Equal(t, tt.want, got.String(), "Only(%v)", tt.a)
		assert.Equal(t, tt.a, got.Attrs(), "Only(%v) sets exactly those fields", tt.a)
	}
}
