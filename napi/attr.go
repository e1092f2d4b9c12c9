package napi

import (
	"fmt"
	"math"
	"time"

	"github.com/mdlayher/netlink"
)

// The decoders below record an error in ad that names the attribute, the
// length and what was expected; the caller's ad.Err() reports it.

// decodeU32 decodes a u32 attribute: exactly 4 bytes.
func decodeU32(ad *netlink.AttributeDecoder, name string) uint32 {
	var v uint32
	ad.Do(func(b []byte) error {
		if len(b) != 4 {
			return fmt.Errorf("attribute %s: %d bytes, want 4 (u32)", name, len(b))
		}
		v = ad.ByteOrder.Uint32(b)
		return nil
	})
	return v
}

// decodeUint decodes a uint attribute (NLA_UINT): 4 bytes when the value
// fits, else 8.
func decodeUint(ad *netlink.AttributeDecoder, name string) uint64 {
	var v uint64
	ad.Do(func(b []byte) error {
		switch len(b) {
		case 4:
			v = uint64(ad.ByteOrder.Uint32(b))
		case 8:
			v = ad.ByteOrder.Uint64(b)
		default:
			return fmt.Errorf("attribute %s: %d bytes, want 4 or 8 (uint)", name, len(b))
		}
		return nil
	})
	return v
}

// decodeUint32 decodes a u32 that the kernel may write as a uint (4 or 8
// bytes) and checks that the value fits 32 bits.
func decodeUint32(ad *netlink.AttributeDecoder, name string) uint32 {
	v := decodeUint(ad, name)
	if v > math.MaxUint32 {
		ad.Do(func([]byte) error {
			return fmt.Errorf("attribute %s: value %d is larger than %d", name, v, uint32(math.MaxUint32))
		})
		return 0
	}
	return uint32(v)
}

// decodeDuration decodes a uint attribute in nanoseconds.
func decodeDuration(ad *netlink.AttributeDecoder, name string) time.Duration {
	v := decodeUint(ad, name)
	if v > math.MaxInt64 {
		ad.Do(func([]byte) error {
			return fmt.Errorf("attribute %s: %d ns does not fit a time.Duration (max %d ns)", name, v, int64(math.MaxInt64))
		})
		return 0
	}
	return time.Duration(v)
}

// encodeUint encodes a uint attribute the way the kernel's nla_put_uint
// does: 4 bytes when the value fits, else 8.
func encodeUint(ae *netlink.AttributeEncoder, typ uint16, v uint64) {
	if v <= math.MaxUint32 {
		ae.Uint32(typ, uint32(v))
		return
	}
	ae.Uint64(typ, v)
}
