package napi

import (
	"io"
	"testing"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/genetlink/genltest"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nlenc"
	"github.com/mdlayher/netlink/nltest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// testFamilyID is the netdev family id the fakes hand out.
const testFamilyID = 0x1b

// testClient returns a Client whose netdev family resolves through
// genltest.ServeFamily and whose other requests go to fn.
func testClient(t *testing.T, fn genltest.Func) *Client {
	t.Helper()
	conn := genltest.Dial(genltest.ServeFamily(genetlink.Family{
		ID:      testFamilyID,
		Name:    familyName,
		Version: familyVersion,
	}, fn))
	c, err := newClient(conn)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// expect returns a fake that checks that the request has the family,
// command, flags and exact attribute bytes given, then answers with replies
// (or with err, e.g. genltest.Error(0) for an acknowledgement). No replies
// and no error is an empty dump.
func expect(t *testing.T, family uint16, cmd uint8, flags netlink.HeaderFlags, attrs []byte, replies []genetlink.Message, err error) genltest.Func {
	t.Helper()
	calls := 0
	t.Cleanup(func() { assert.Equal(t, 1, calls, "requests sent to the fake") })
	return genltest.CheckRequest(family, cmd, flags, func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
		calls++
		if len(attrs) == 0 {
			assert.Empty(t, greq.Data, "request attributes")
		} else {
			assert.Equal(t, attrs, greq.Data, "request attributes")
		}
		assert.Equal(t, cmd, greq.Header.Command, "request command")
		if len(replies) == 0 && err == nil {
			// Without this, nltest would ask fn again for a multicast message.
			return nil, io.EOF
		}
		return replies, err
	})
}

// never returns a fake that fails the test if a request reaches it.
func never(t *testing.T) genltest.Func {
	t.Helper()
	return func(greq genetlink.Message, _ netlink.Message) ([]genetlink.Message, error) {
		t.Errorf("unexpected request: command %d, attributes %x", greq.Header.Command, greq.Data)
		return nil, genltest.Error(int(unix.EIO))
	}
}

// attrs encodes attributes with the netlink package's marshaller, as the
// kernel would lay them out.
func attrs(t *testing.T, as ...netlink.Attribute) []byte {
	t.Helper()
	if len(as) == 0 {
		return nil
	}
	b, err := netlink.MarshalAttributes(as)
	require.NoError(t, err)
	return b
}

func a32(typ uint16, v uint32) netlink.Attribute {
	return netlink.Attribute{Type: typ, Data: nlenc.Uint32Bytes(v)}
}

func a64(typ uint16, v uint64) netlink.Attribute {
	return netlink.Attribute{Type: typ, Data: nlenc.Uint64Bytes(v)}
}

func a16(typ uint16, v uint16) netlink.Attribute {
	return netlink.Attribute{Type: typ, Data: nlenc.Uint16Bytes(v)}
}

func araw(typ uint16, b ...byte) netlink.Attribute {
	return netlink.Attribute{Type: typ, Data: b}
}

// reply is one generic netlink reply of command cmd carrying as.
func reply(t *testing.T, cmd uint8, as ...netlink.Attribute) genetlink.Message {
	t.Helper()
	return genetlink.Message{
		Header: genetlink.Header{Command: cmd, Version: familyVersion},
		Data:   attrs(t, as...),
	}
}

// extAckClient returns a Client whose requests all fail with errno and an
// extended acknowledgement carrying msg (if not empty) and offset (if not
// zero). Unlike genltest.Error, it also fails dumps the way the kernel does:
// nltest.Error copies the request's flags, and the dump flags overlap
// NLM_F_ACK_TLVS.
func extAckClient(t *testing.T, errno unix.Errno, msg string, offset uint32) *Client {
	t.Helper()
	conn := genetlink.NewConn(nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
		require.Len(t, reqs, 1)
		return []netlink.Message{errorReply(t, reqs[0], errno, msg, offset)}, nil
	}))
	c := &Client{c: conn, family: testFamilyID}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// errorReply is the kernel's error reply to req, laid out as the kernel does
// with extended acknowledgements on: struct nlmsgerr with the request's
// header (capped), then NLMSGERR_ATTR_MSG (if msg is not empty) and
// NLMSGERR_ATTR_OFFS (if offset is not zero).
func errorReply(t *testing.T, req netlink.Message, errno unix.Errno, msg string, offset uint32) netlink.Message {
	t.Helper()
	hdr := req.Header
	hdr.Length = 16 // the request's header only, as with NETLINK_CAP_ACK
	hb, err := netlink.Message{Header: hdr}.MarshalBinary()
	require.NoError(t, err)

	var tlvs []netlink.Attribute
	if msg != "" {
		tlvs = append(tlvs, netlink.Attribute{Type: unix.NLMSGERR_ATTR_MSG, Data: nlenc.Bytes(msg)})
	}
	if offset != 0 {
		tlvs = append(tlvs, a32(unix.NLMSGERR_ATTR_OFFS, offset))
	}
	data := append(nlenc.Int32Bytes(-int32(errno)), hb...)
	data = append(data, attrs(t, tlvs...)...)

	return netlink.Message{
		Header: netlink.Header{
			Type:     netlink.Error,
			Flags:    netlink.Capped | netlink.AcknowledgeTLVs,
			Sequence: req.Header.Sequence,
			PID:      req.Header.PID,
		},
		Data: data,
	}
}
