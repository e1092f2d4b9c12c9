package napi

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// loadRecording reads testdata/name, written by TestRecord.
func loadRecording(t *testing.T, name string) recording {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	require.NoError(t, err, "regenerate with: sudo go test ./napi -run TestRecord -napi.record")
	var rec recording
	require.NoError(t, json.Unmarshal(b, &rec))
	return rec
}

// replayClient returns a Client whose one request must be the recorded
// request, byte for byte, and gets the recorded answer, framed as the kernel
// frames it (dumps end with NLMSG_DONE; errors carry the extended
// acknowledgement).
func replayClient(t *testing.T, rec recording) *Client {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the recordings are little endian; this machine is not")
	}
	family := netlink.HeaderType(rec.Facts.FamilyID)
	if rec.Request.Family == "nlctrl" {
		family = unix.GENL_ID_CTRL
	}
	calls := 0
	t.Cleanup(func() { assert.Equal(t, 1, calls, "requests sent") })

	conn := genetlink.NewConn(nltest.Dial(func(reqs []netlink.Message) ([]netlink.Message, error) {
		if len(reqs) == 0 {
			return nil, errors.New("no request")
		}
		calls++
		req := reqs[0]
		var greq genetlink.Message
		require.NoError(t, greq.UnmarshalBinary(req.Data))
		assert.Equal(t, family, req.Header.Type, "request family")
		assert.Equal(t, rec.Request.Flags, req.Header.Flags, "request flags")
		assert.Equal(t, rec.Request.Command, greq.Header.Command, "request command")
		assert.Equal(t, joinAttrs(t, rec.Request.Attrs), greq.Data, "request attributes")

		if e := rec.Error; e != nil {
			return []netlink.Message{errorReply(t, req, e.Errno, e.Message, uint32(e.Offset))}, nil
		}
		var out []netlink.Message
		for _, m := range rec.messages(t) {
			b, err := m.MarshalBinary()
			require.NoError(t, err)
			out = append(out, netlink.Message{
				Header: netlink.Header{Type: family, Sequence: req.Header.Sequence, PID: req.Header.PID},
				Data:   b,
			})
		}
		if req.Header.Flags&netlink.Dump != 0 {
			out = append(out, netlink.Message{
				Header: netlink.Header{Sequence: req.Header.Sequence, PID: req.Header.PID},
				Data:   make([]byte, 4), // NLMSG_DONE carries an errno of 0
			})
			return nltest.Multipart(out)
		}
		return out, nil
	}))
	c := &Client{c: conn, family: rec.Facts.FamilyID}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rawNAPIAttrs returns the attributes of a recorded napi-get reply by type,
// parsed with the netlink package alone.
func rawNAPIAttrs(t *testing.T, m recordedMessage) map[uint16][]byte {
	t.Helper()
	as, err := netlink.UnmarshalAttributes(joinAttrs(t, m.Attrs))
	require.NoError(t, err)
	out := make(map[uint16][]byte)
	for _, a := range as {
		out[a.Type] = a.Data
	}
	return out
}

// presentIn returns the optional attributes a recorded reply carries.
func presentIn(raw map[uint16][]byte) Attr {
	var p Attr
	for typ, a := range map[uint16]Attr{
		attrNAPIIRQ:               AttrIRQ,
		attrNAPIPID:               AttrPID,
		attrNAPIDeferHardIRQs:     AttrDeferHardIRQs,
		attrNAPIGROFlushTimeout:   AttrGROFlushTimeout,
		attrNAPIIRQSuspendTimeout: AttrIRQSuspendTimeout,
		attrNAPIThreaded:          AttrThreaded,
	} {
		if _, ok := raw[typ]; ok {
			p |= a
		}
	}
	return p
}

// wantNAPI is the NAPI the recorder configured before recording.
func wantNAPI(f recordedFacts, present Attr) NAPI {
	return NAPI{
		ID:                f.NAPIID,
		IfIndex:           f.IfIndex,
		PID:               f.PID,
		DeferHardIRQs:     f.DeferHardIRQs,
		GROFlushTimeout:   time.Duration(f.GROFlushTimeout),
		IRQSuspendTimeout: time.Duration(f.IRQSuspendTimeout),
		Threaded:          f.Threaded,
		Present:           present,
	}
}

// TestRecordings replays what a real kernel answered (testdata/, written by
// TestRecord) and checks the decoded values against what the recorder had
// set, and the requests against what the kernel was sent.
func TestRecordings(t *testing.T) {
	t.Run("napi-get dump, defaults, 4-byte uints", func(t *testing.T) {
		rec := loadRecording(t, "napi-get-dump-defaults.json")
		require.Len(t, rec.Replies, 1)
		raw := rawNAPIAttrs(t, rec.Replies[0])
		require.Len(t, raw[attrNAPIGROFlushTimeout], 4, "the recording holds a 4-byte gro-flush-timeout")
		require.Len(t, raw[attrNAPIIRQSuspendTimeout], 4, "the recording holds a 4-byte irq-suspend-timeout")
		require.NotContains(t, raw, uint16(attrNAPIPID), "not threaded: no pid")
		require.NotContains(t, raw, uint16(attrNAPIIRQ), "veth: no irq")

		ns, err := replayClient(t, rec).NAPIs(rec.Facts.IfIndex)
		require.NoError(t, err)
		assert.Equal(t, []NAPI{wantNAPI(rec.Facts, presentIn(raw))}, ns)
		assert.False(t, ns[0].Has(AttrPID))
		assert.False(t, ns[0].Has(AttrIRQ))
	})

	t.Run("napi-get, 8-byte uint", func(t *testing.T) {
		rec := loadRecording(t, "napi-get-uint64.json")
		require.Len(t, rec.Replies, 1)
		raw := rawNAPIAttrs(t, rec.Replies[0])
		require.Len(t, raw[attrNAPIGROFlushTimeout], 8, "gro-flush-timeout 5 s is 8 bytes on the wire")
		require.Len(t, raw[attrNAPIIRQSuspendTimeout], 4, "irq-suspend-timeout 20 ms is 4 bytes on the wire")

		n, err := replayClient(t, rec).NAPI(rec.Facts.NAPIID)
		require.NoError(t, err)
		assert.Equal(t, wantNAPI(rec.Facts, presentIn(raw)), n)
		assert.Equal(t, recordGROFlushTimeout, n.GROFlushTimeout)
		assert.Equal(t, recordIRQSuspendTimeout, n.IRQSuspendTimeout)
		assert.Equal(t, uint32(recordDeferHardIRQs), n.DeferHardIRQs)
	})

	t.Run("napi-get, threaded, with pid", func(t *testing.T) {
		rec := loadRecording(t, "napi-get-threaded.json")
		require.Len(t, rec.Replies, 1)
		raw := rawNAPIAttrs(t, rec.Replies[0])
		require.Contains(t, raw, uint16(attrNAPIPID), "threaded: the recording has a pid")

		n, err := replayClient(t, rec).NAPI(rec.Facts.NAPIID)
		require.NoError(t, err)
		assert.Equal(t, wantNAPI(rec.Facts, presentIn(raw)), n)
		assert.True(t, n.Has(AttrPID|AttrThreaded))
		assert.Equal(t, ThreadedEnabled, n.Threaded)
		assert.NotZero(t, n.PID)
	})

	t.Run("queue-get dump", func(t *testing.T) {
		rec := loadRecording(t, "queue-get-dump.json")
		var want []Queue
		for _, m := range rec.Replies {
			raw := rawNAPIAttrs(t, m)
			q := Queue{IfIndex: rec.Facts.IfIndex, Type: QueueType(binary.NativeEndian.Uint32(raw[attrQueueType]))}
			if _, ok := raw[attrQueueNAPIID]; ok {
				q.NAPIID = rec.Facts.NAPIID
			}
			want = append(want, q)
		}
		require.Len(t, want, 2, "the veth has one rx and one tx queue")

		qs, err := replayClient(t, rec).Queues(rec.Facts.IfIndex)
		require.NoError(t, err)
		assert.Equal(t, want, qs)
		assert.Equal(t, QueueRX, qs[0].Type)
		assert.Equal(t, QueueTX, qs[1].Type)
	})

	t.Run("policy", func(t *testing.T) {
		rec := loadRecording(t, "policy-napi-set.json")
		fs, err := replayClient(t, rec).Features()
		require.NoError(t, err)
		assert.True(t, fs.NAPISet)
		assert.NoError(t, fs.Missing(FeatureNAPISet, FeatureDeferHardIRQs, FeatureGROFlushTimeout, FeatureIRQSuspendTimeout),
			"every kernel with napi-set has these")
		if strings.HasPrefix(rec.Kernel, "6.18.") {
			// Recorded on 6.18: threaded is there, busy-poll is not yet.
			assert.Equal(t, Features{
				NAPISet:     true,
				SetAttrs:    AttrDeferHardIRQs | AttrGROFlushTimeout | AttrIRQSuspendTimeout | AttrThreaded,
				MaxThreaded: ThreadedEnabled,
			}, fs)
			assert.EqualError(t, fs.Missing(FeatureThreadedBusyPoll), "kernel has no napi-set threaded busy-poll: needs Linux 6.19")
		}
	})

	t.Run("napi-set of an unknown id", func(t *testing.T) {
		rec := loadRecording(t, "napi-set-enoent.json")
		require.NotNil(t, rec.Error)
		err := replayClient(t, rec).SetNAPI(1, Settings{DeferHardIRQs: new(uint32(0))})
		require.EqualError(t, err, "napi: napi-set id 1: attribute id: no such file or directory")
		assert.ErrorIs(t, err, os.ErrNotExist)
		assert.ErrorIs(t, err, unix.ENOENT)
	})

	t.Run("napi-set threaded out of range", func(t *testing.T) {
		rec := loadRecording(t, "napi-set-threaded-range.json")
		require.NotNil(t, rec.Error)
		require.NotEmpty(t, rec.Error.Message, "the policy explains itself")
		c := replayClient(t, rec)
		var err error
		if mode := Threaded(rec.Facts.SetThreaded); mode <= ThreadedBusyPoll {
			err = c.SetNAPI(rec.Facts.NAPIID, Settings{Threaded: &mode})
		} else {
			_, err = c.execute(napiSetRequest(rec.Facts.NAPIID, Settings{Threaded: &mode}))
		}
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, "threaded", e.Attr)
		assert.Equal(t, rec.Error.Message, e.Message)
		assert.ErrorIs(t, err, rec.Error.Errno)
		assert.Contains(t, err.Error(), "napi: napi-set id ")
		assert.Contains(t, err.Error(), ": attribute threaded: "+rec.Error.Message+": ")
		t.Logf("replayed: %v", err)
	})
}
