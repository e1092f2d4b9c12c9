package napi

import (
	"errors"
	"math"
	"testing"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// policyAttr is one attribute of a policy in a synthetic policy dump.
type policyAttr struct {
	typ    uint16
	nlType uint32 // NL_ATTR_TYPE_*
	max    *uint64
}

// policyDump builds a controller policy dump the way the kernel lays it out
// (see testdata/policy-napi-set.json): first the op's policy indexes, then
// one message per attribute of each policy.
func policyDump(t *testing.T, op uint16, doPolicy uint32, policies map[uint32][]policyAttr) []genetlink.Message {
	t.Helper()
	msg := func(fn func(ae *netlink.AttributeEncoder)) genetlink.Message {
		ae := netlink.NewAttributeEncoder()
		ae.Uint16(unix.CTRL_ATTR_FAMILY_ID, testFamilyID)
		fn(ae)
		b, err := ae.Encode()
		require.NoError(t, err)
		return genetlink.Message{Header: genetlink.Header{Command: unix.CTRL_CMD_GETPOLICY, Version: ctrlVersion}, Data: b}
	}
	msgs := []genetlink.Message{msg(func(ae *netlink.AttributeEncoder) {
		ae.Nested(unix.CTRL_ATTR_OP_POLICY, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(op, func(ae *netlink.AttributeEncoder) error {
				ae.Uint32(unix.CTRL_ATTR_POLICY_DO, doPolicy)
				return nil
			})
			return nil
		})
	})}
	for idx := range uint32(len(policies)) {
		for _, a := range policies[idx] {
			msgs = append(msgs, msg(func(ae *netlink.AttributeEncoder) {
				ae.Nested(unix.CTRL_ATTR_POLICY, func(ae *netlink.AttributeEncoder) error {
					ae.Nested(uint16(idx), func(ae *netlink.AttributeEncoder) error {
						ae.Nested(a.typ, func(ae *netlink.AttributeEncoder) error {
							if a.max != nil {
								ae.Uint64(unix.NL_POLICY_TYPE_ATTR_MIN_VALUE_U, 0)
								ae.Uint64(unix.NL_POLICY_TYPE_ATTR_MAX_VALUE_U, *a.max)
							}
							ae.Uint32(unix.NL_POLICY_TYPE_ATTR_TYPE, a.nlType)
							return nil
						})
						return nil
					})
					return nil
				})
			}))
		}
	}
	return msgs
}

const nlAttrTypeUint = 16 // NL_ATTR_TYPE_UINT

// The napi-set policies of successive kernels.
var (
	policy613 = []policyAttr{
		{typ: attrNAPIID, nlType: unix.NL_ATTR_TYPE_U32, max: new(uint64(math.MaxUint32))},
		{typ: attrNAPIDeferHardIRQs, nlType: unix.NL_ATTR_TYPE_U32, max: new(uint64(math.MaxInt32))},
		{typ: attrNAPIGROFlushTimeout, nlType: nlAttrTypeUint, max: new(uint64(math.MaxUint64))},
		{typ: attrNAPIIRQSuspendTimeout, nlType: nlAttrTypeUint, max: new(uint64(math.MaxUint64))},
	}
	policy618 = append(policy613[:len(policy613):len(policy613)],
		policyAttr{typ: attrNAPIThreaded, nlType: unix.NL_ATTR_TYPE_U32, max: new(uint64(1))})
	policy619 = append(policy613[:len(policy613):len(policy613)],
		policyAttr{typ: attrNAPIThreaded, nlType: unix.NL_ATTR_TYPE_U32, max: new(uint64(2))})
)

func TestFeatures(t *testing.T) {
	all3 := AttrDeferHardIRQs | AttrGROFlushTimeout | AttrIRQSuspendTimeout
	tests := []struct {
		name    string
		replies []genetlink.Message
		errno   unix.Errno // the kernel fails the dump
		offset  uint32     // and points at this request attribute
		want    Features
		wantErr string
	}{
		{
			name:    "6.13",
			replies: policyDump(t, cmdNAPISet, 0, map[uint32][]policyAttr{0: policy613}),
			want:    Features{NAPISet: true, SetAttrs: all3},
		},
		{
			name:    "6.18: threaded up to enabled",
			replies: policyDump(t, cmdNAPISet, 0, map[uint32][]policyAttr{0: policy618}),
			want:    Features{NAPISet: true, SetAttrs: all3 | AttrThreaded, MaxThreaded: ThreadedEnabled},
		},
		{
			name:    "6.19: threaded up to busy-poll",
			replies: policyDump(t, cmdNAPISet, 0, map[uint32][]policyAttr{0: policy619}),
			want:    Features{NAPISet: true, SetAttrs: all3 | AttrThreaded, MaxThreaded: ThreadedBusyPoll},
		},
		{
			name: "only the do policy counts",
			replies: policyDump(t, cmdNAPISet, 1, map[uint32][]policyAttr{
				0: policy619,
				1: policy613,
			}),
			want: Features{NAPISet: true, SetAttrs: all3},
		},
		{
			name: "threaded without a range",
			replies: policyDump(t, cmdNAPISet, 0, map[uint32][]policyAttr{0: {
				{typ: attrNAPIThreaded, nlType: unix.NL_ATTR_TYPE_U32},
			}}),
			want: Features{NAPISet: true, SetAttrs: AttrThreaded, MaxThreaded: ThreadedEnabled},
		},
		{
			name: "unknown attributes are ignored",
			replies: policyDump(t, cmdNAPISet, 0, map[uint32][]policyAttr{0: {
				{typ: 42, nlType: unix.NL_ATTR_TYPE_U32},
				{typ: attrNAPIGROFlushTimeout, nlType: nlAttrTypeUint},
			}}),
			want: Features{NAPISet: true, SetAttrs: AttrGROFlushTimeout},
		},
		{
			// The kernel points at CTRL_ATTR_OP, after the 8 bytes of
			// CTRL_ATTR_FAMILY_ID.
			name:   "no napi-set before 6.13: ENOENT",
			errno:  unix.ENOENT,
			offset: 16 + 4 + 8,
			want:   Features{},
		},
		{
			name:  "napi-set without attributes: ENODATA",
			errno: unix.ENODATA,
			want:  Features{NAPISet: true},
		},
		{
			name:    "other errors are errors",
			errno:   unix.EACCES,
			wantErr: "napi: getpolicy dump netdev napi-set: permission denied",
		},
		{
			name:    "a dump about another op",
			replies: policyDump(t, 99, 0, map[uint32][]policyAttr{0: policy618}),
			wantErr: "napi: getpolicy dump netdev napi-set: policy dump does not mention napi-set",
		},
		{
			name: "threaded maximum beyond 32 bits",
			replies: policyDump(t, cmdNAPISet, 0, map[uint32][]policyAttr{0: {
				{typ: attrNAPIThreaded, nlType: unix.NL_ATTR_TYPE_U32, max: new(uint64(1 << 40))},
			}}),
			wantErr: "napi: getpolicy dump netdev napi-set: threaded policy max 1099511627776 does not fit 32 bits",
		},
	}
	reqAttrs := attrs(t, a16(unix.CTRL_ATTR_FAMILY_ID, testFamilyID), a32(unix.CTRL_ATTR_OP, cmdNAPISet))
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var c *Client
			if tt.errno != 0 {
				// genltest.Error cannot fail a dump as the kernel does.
				c = extAckClient(t, tt.errno, "", tt.offset)
			} else {
				c = testClient(t, expect(t, unix.GENL_ID_CTRL, unix.CTRL_CMD_GETPOLICY, netlink.Request|netlink.Dump,
					reqAttrs, tt.replies, nil))
			}
			fs, err := c.Features()
			if tt.wantErr != "" {
				require.EqualError(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, fs)
		})
	}
}

func TestFeaturesMalformed(t *testing.T) {
	// A policy maximum of 2 bytes: the decoder names what it expected.
	ae := netlink.NewAttributeEncoder()
	ae.Nested(unix.CTRL_ATTR_OP_POLICY, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(cmdNAPISet, func(ae *netlink.AttributeEncoder) error {
			ae.Uint32(unix.CTRL_ATTR_POLICY_DO, 0)
			return nil
		})
		return nil
	})
	ae.Nested(unix.CTRL_ATTR_POLICY, func(ae *netlink.AttributeEncoder) error {
		ae.Nested(0, func(ae *netlink.AttributeEncoder) error {
			ae.Nested(attrNAPIThreaded, func(ae *netlink.AttributeEncoder) error {
				ae.Uint16(unix.NL_POLICY_TYPE_ATTR_MAX_VALUE_U, 1)
				return nil
			})
			return nil
		})
		return nil
	})
	b, err := ae.Encode()
	require.NoError(t, err)
	c := testClient(t, func(genetlink.Message, netlink.Message) ([]genetlink.Message, error) {
		return []genetlink.Message{{Header: genetlink.Header{Command: unix.CTRL_CMD_GETPOLICY}, Data: b}}, nil
	})
	_, err = c.Features()
	require.EqualError(t, err, "napi: getpolicy dump netdev napi-set: attribute policy max-value-u: 2 bytes, want 4 or 8 (uint)")
}

func TestFeaturesMissing(t *testing.T) {
	f613 := Features{NAPISet: true, SetAttrs: AttrDeferHardIRQs | AttrGROFlushTimeout | AttrIRQSuspendTimeout}
	f618 := Features{NAPISet: true, SetAttrs: f613.SetAttrs | AttrThreaded, MaxThreaded: ThreadedEnabled}
	f619 := Features{NAPISet: true, SetAttrs: f618.SetAttrs, MaxThreaded: ThreadedBusyPoll}
	everything := []Feature{FeatureNAPISet, FeatureDeferHardIRQs, FeatureGROFlushTimeout,
		FeatureIRQSuspendTimeout, FeatureThreaded, FeatureThreadedBusyPoll}

	tests := []struct {
		name  string
		fs    Features
		needs []Feature
		want  string // "" for nil
	}{
		{name: "nothing needed", fs: Features{}},
		{name: "6.19 has everything", fs: f619, needs: everything},
		{name: "6.18 has threaded", fs: f618, needs: []Feature{FeatureIRQSuspendTimeout, FeatureThreaded}},
		{
			name: "6.18 lacks threaded busy-poll", fs: f618, needs: everything,
			want: "kernel has no napi-set threaded busy-poll: needs Linux 6.19",
		},
		{
			name: "6.13 lacks threaded", fs: f613, needs: []Feature{FeatureIRQSuspendTimeout, FeatureThreaded},
			want: "kernel has no napi-set threaded: needs Linux 6.17",
		},
		{
			name: "6.12 lacks all", fs: Features{}, needs: []Feature{FeatureNAPISet, FeatureIRQSuspendTimeout},
			want: "kernel has no napi-set: needs Linux 6.13; kernel has no napi-set irq-suspend-timeout: needs Linux 6.13",
		},
		{
			name: "attributes without napi-set count for nothing", fs: Features{SetAttrs: f619.SetAttrs, MaxThreaded: 2},
			needs: []Feature{FeatureDeferHardIRQs},
			want:  "kernel has no napi-set defer-hard-irqs: needs Linux 6.13",
		},
		{
			name: "unknown feature", fs: f619, needs: []Feature{Feature(42)},
			want: "kernel has no Feature(42)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.fs.Missing(tt.needs...)
			if tt.want == "" {
				require.NoError(t, err)
				for _, f := range tt.needs {
					assert.True(t, tt.fs.Has(f), "Has(%v)", f)
				}
				return
			}
			require.EqualError(t, err, tt.want)
			assert.ErrorIs(t, err, errors.ErrUnsupported)
			assert.ErrorIs(t, err, ErrMissingFeature)
		})
	}
}

func TestFeaturesString(t *testing.T) {
	assert.Equal(t, "no napi-set", Features{}.String())
	assert.Equal(t, "napi-set: defer-hard-irqs|gro-flush-timeout|irq-suspend-timeout",
		Features{NAPISet: true, SetAttrs: AttrDeferHardIRQs | AttrGROFlushTimeout | AttrIRQSuspendTimeout}.String())
	assert.Equal(t, "napi-set: irq-suspend-timeout|threaded (threaded max busy-poll)",
		Features{NAPISet: true, SetAttrs: AttrIRQSuspendTimeout | AttrThreaded, MaxThreaded: ThreadedBusyPoll}.String())
}
