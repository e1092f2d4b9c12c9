package napi

import (
	"errors"
	"fmt"
	"os"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
)

const (
	// ctrlVersion is the generic netlink controller's version.
	ctrlVersion = 2
)

// ctrlAttrName names a generic netlink controller attribute.
func ctrlAttrName(typ uint16) string {
	switch typ {
	case unix.CTRL_ATTR_FAMILY_ID:
		return "family-id"
	case unix.CTRL_ATTR_OP:
		return "op"
	default:
		return fmt.Sprintf("ctrl attribute %d", typ)
	}
}

// A Feature is something a caller may need from the kernel's napi-set.
type Feature int

// Features of napi-set.
const (
	// FeatureNAPISet: the napi-set command (Linux 6.13).
	FeatureNAPISet Feature = iota + 1
	// FeatureDeferHardIRQs: napi-set defer-hard-irqs (Linux 6.13).
	FeatureDeferHardIRQs
	// FeatureGROFlushTimeout: napi-set gro-flush-timeout (Linux 6.13).
	FeatureGROFlushTimeout
	// FeatureIRQSuspendTimeout: napi-set irq-suspend-timeout (Linux 6.13).
	FeatureIRQSuspendTimeout
	// FeatureThreaded: napi-set threaded, enabled or disabled (Linux 6.17).
	FeatureThreaded
	// FeatureThreadedBusyPoll: napi-set threaded busy-poll (Linux 6.19).
	FeatureThreadedBusyPoll
)

// FamilySince is the Linux version whose netdev family first had napi-get,
// the oldest command this package uses (6.8).
const FamilySince = "6.8"

var featureInfo = map[Feature]struct {
	name, since string
}{
	FeatureNAPISet:           {"napi-set", "6.13"},
	FeatureDeferHardIRQs:     {"napi-set defer-hard-irqs", "6.13"},
	FeatureGROFlushTimeout:   {"napi-set gro-flush-timeout", "6.13"},
	FeatureIRQSuspendTimeout: {"napi-set irq-suspend-timeout", "6.13"},
	FeatureThreaded:          {"napi-set threaded", "6.17"},
	FeatureThreadedBusyPoll:  {"napi-set threaded busy-poll", "6.19"},
}

// String names the feature, e.g. "napi-set irq-suspend-timeout".
func (f Feature) String() string {
	if i, ok := featureInfo[f]; ok {
		return i.name
	}
	return fmt.Sprintf("Feature(%d)", int(f))
}

// Since returns the upstream Linux version that brought the feature, e.g.
// "6.13", or "" for an unknown feature.
func (f Feature) Since() string { return featureInfo[f].since }

// Features is what the running kernel's napi-set accepts, read from the
// generic netlink controller's policy dump (CTRL_CMD_GETPOLICY).
type Features struct {
	// NAPISet tells whether the kernel has the napi-set command.
	NAPISet bool
	// SetAttrs are the napi-set attributes the kernel accepts, among
	// AttrDeferHardIRQs, AttrGROFlushTimeout, AttrIRQSuspendTimeout and
	// AttrThreaded.
	SetAttrs Attr
	// MaxThreaded is the largest threaded value napi-set accepts
	// (ThreadedEnabled or ThreadedBusyPoll); zero without AttrThreaded.
	MaxThreaded Threaded
}

// Has reports whether the kernel has feature f.
func (fs Features) Has(f Feature) bool {
	switch f {
	case FeatureNAPISet:
		return fs.NAPISet
	case FeatureDeferHardIRQs:
		return fs.NAPISet && fs.SetAttrs&AttrDeferHardIRQs != 0
	case FeatureGROFlushTimeout:
		return fs.NAPISet && fs.SetAttrs&AttrGROFlushTimeout != 0
	case FeatureIRQSuspendTimeout:
		return fs.NAPISet && fs.SetAttrs&AttrIRQSuspendTimeout != 0
	case FeatureThreaded:
		return fs.NAPISet && fs.SetAttrs&AttrThreaded != 0 && fs.MaxThreaded >= ThreadedEnabled
	case FeatureThreadedBusyPoll:
		return fs.NAPISet && fs.SetAttrs&AttrThreaded != 0 && fs.MaxThreaded >= ThreadedBusyPoll
	default:
		return false
	}
}

// ErrMissingFeature is matched (errors.Is) by the errors of
// Features.Missing. It is errors.ErrUnsupported.
var ErrMissingFeature = errors.ErrUnsupported

// Missing returns nil if the kernel has every feature in needs, and
// otherwise an error that names each missing feature and the Linux version
// that brought it, such as "kernel has no napi-set irq-suspend-timeout:
// needs Linux 6.13". The error matches errors.ErrUnsupported. It is meant as
// a skip reason; its parts are kernelfeature.UnsupportedFeatureErrors, for
// testenv.SkipIfNotSupported.
func (fs Features) Missing(needs ...Feature) error {
	var missing kernelfeature.Missing
	for _, f := range needs {
		if !fs.Has(f) {
			missing = append(missing, &kernelfeature.UnsupportedFeatureError{Name: f.String(), MinimumVersion: f.Since()})
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return missing
}

// String describes fs, e.g. "napi-set: defer-hard-irqs|gro-flush-timeout|
// irq-suspend-timeout|threaded (max enabled)".
func (fs Features) String() string {
	if !fs.NAPISet {
		return "no napi-set"
	}
	s := "napi-set: " + fs.SetAttrs.String()
	if fs.SetAttrs&AttrThreaded != 0 {
		s += fmt.Sprintf(" (threaded max %v)", fs.MaxThreaded)
	}
	return s
}

// Features reads what the running kernel's napi-set accepts from the
// generic netlink controller's policy dump for the netdev family's napi-set
// command. A kernel without napi-set is not an error: the result has
// NAPISet false. It needs no privileges.
func (c *Client) Features() (Features, error) {
	r := policyRequest(c.family)
	msgs, err := c.execute(r)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// ENOENT: the family has no such command.
		return Features{}, nil
	case errors.Is(err, unix.ENODATA):
		// The command exists but takes no attributes.
		return Features{NAPISet: true}, nil
	case err != nil:
		return Features{}, err
	}

	fs, err := parseNAPISetPolicy(msgs)
	if err != nil {
		return Features{}, fmt.Errorf("napi: %s %s: %w", r.op, r.object, err)
	}
	return fs, nil
}

// policyRequest is the controller's policy dump request for napi-set of the
// netdev family, whose id is family.
func policyRequest(family uint16) request {
	return request{
		op:      "getpolicy dump",
		object:  "netdev napi-set",
		family:  unix.GENL_ID_CTRL,
		version: ctrlVersion,
		cmd:     unix.CTRL_CMD_GETPOLICY,
		flags:   netlink.Dump,
		encode: func(ae *netlink.AttributeEncoder) {
			ae.Uint16(unix.CTRL_ATTR_FAMILY_ID, family)
			ae.Uint32(unix.CTRL_ATTR_OP, cmdNAPISet)
		},
		names: ctrlAttrName,
	}
}

// attrPolicy is what the policy dump says about one attribute.
type attrPolicy struct {
	max    uint64 // NL_POLICY_TYPE_ATTR_MAX_VALUE_U
	hasMax bool
}

// parseNAPISetPolicy parses the controller's policy dump for napi-set: a
// message with the op's policy indexes (CTRL_ATTR_OP_POLICY), then one
// message per attribute of each policy (CTRL_ATTR_POLICY).
func parseNAPISetPolicy(msgs []genetlink.Message) (Features, error) {
	var (
		doPolicy   uint32
		haveDo     bool
		policies   = make(map[uint32]map[uint16]attrPolicy)
		sawNAPISet bool
	)
	for _, m := range msgs {
		ad, err := netlink.NewAttributeDecoder(m.Data)
		if err != nil {
			return Features{}, err
		}
		for ad.Next() {
			switch ad.Type() {
			case unix.CTRL_ATTR_OP_POLICY:
				ad.Nested(func(ops *netlink.AttributeDecoder) error {
					for ops.Next() {
						if ops.Type() != cmdNAPISet {
							continue
						}
						sawNAPISet = true
						ops.Nested(func(op *netlink.AttributeDecoder) error {
							for op.Next() {
								if op.Type() == unix.CTRL_ATTR_POLICY_DO {
									doPolicy = decodeU32(op, "op-policy do")
									haveDo = true
								}
							}
							return op.Err()
						})
					}
					return ops.Err()
				})
			case unix.CTRL_ATTR_POLICY:
				ad.Nested(func(pols *netlink.AttributeDecoder) error {
					for pols.Next() {
						idx := uint32(pols.Type())
						pols.Nested(func(attrs *netlink.AttributeDecoder) error {
							for attrs.Next() {
								typ := attrs.Type()
								attrs.Nested(func(pd *netlink.AttributeDecoder) error {
									var p attrPolicy
									for pd.Next() {
										if pd.Type() == unix.NL_POLICY_TYPE_ATTR_MAX_VALUE_U {
											p.max = decodeUint(pd, "policy max-value-u")
											p.hasMax = true
										}
									}
									if policies[idx] == nil {
										policies[idx] = make(map[uint16]attrPolicy)
									}
									policies[idx][typ] = p
									return pd.Err()
								})
							}
							return attrs.Err()
						})
					}
					return pols.Err()
				})
			}
		}
		if err := ad.Err(); err != nil {
			return Features{}, err
		}
	}

	if !sawNAPISet {
		return Features{}, errors.New("policy dump does not mention napi-set")
	}
	fs := Features{NAPISet: true}
	if !haveDo {
		return fs, nil
	}
	for typ, p := range policies[doPolicy] {
		switch typ {
		case attrNAPIDeferHardIRQs:
			fs.SetAttrs |= AttrDeferHardIRQs
		case attrNAPIGROFlushTimeout:
			fs.SetAttrs |= AttrGROFlushTimeout
		case attrNAPIIRQSuspendTimeout:
			fs.SetAttrs |= AttrIRQSuspendTimeout
		case attrNAPIThreaded:
			fs.SetAttrs |= AttrThreaded
			switch {
			case !p.hasMax:
				// No range reported: assume the first threaded kernels.
				fs.MaxThreaded = ThreadedEnabled
			case p.max > uint64(^uint32(0)):
				return Features{}, fmt.Errorf("threaded policy max %d does not fit 32 bits", p.max)
			default:
				fs.MaxThreaded = Threaded(p.max)
			}
		}
	}
	return fs, nil
}
