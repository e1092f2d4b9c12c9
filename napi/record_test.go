package napi

import (
	"encoding/hex"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mdlayher/genetlink"
	"github.com/mdlayher/netlink"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/netdev-go/busypolltest/busypoll/testenv"
)

var record = flag.Bool("napi.record", false, "regenerate testdata/*.json from the running kernel (needs root)")

// A recording is one request to a real kernel and what it answered, kept
// under testdata/ and replayed by TestRecordings.
type recording struct {
	Comment string `json:"comment"`
	// Kernel is the release (uname -r) that answered.
	Kernel string `json:"kernel"`

	Request recordedRequest   `json:"request"`
	Replies []recordedMessage `json:"replies,omitempty"`
	Error   *recordedError    `json:"error,omitempty"`

	// Facts are what the recorder knew when it sent the request, for the
	// replay to compare the decoded replies with.
	Facts recordedFacts `json:"facts"`
}

// recordedRequest is the request as sent.
type recordedRequest struct {
	// Family is "netdev" or "nlctrl".
	Family  string              `json:"family"`
	Command uint8               `json:"command"`
	Flags   netlink.HeaderFlags `json:"flags"`
	// Attrs are the raw attributes (native byte order), one hex string per
	// top-level attribute, including its header and padding.
	Attrs []string `json:"attrs"`
}

// recordedMessage is one generic netlink reply.
type recordedMessage struct {
	Command uint8    `json:"command"`
	Version uint8    `json:"version"`
	Attrs   []string `json:"attrs"`
}

// recordedError is an error reply: errno and extended acknowledgement.
type recordedError struct {
	Errno   unix.Errno `json:"errno"`
	Message string     `json:"message,omitempty"`
	Offset  int        `json:"offset,omitempty"`
}

// recordedFacts are known independently of the replies they come with.
type recordedFacts struct {
	// FamilyID is the netdev family id the kernel gave.
	FamilyID uint16 `json:"family_id"`
	// IfIndex is the server end of the veth pair, from rtnetlink.
	IfIndex uint32 `json:"ifindex,omitempty"`
	// NAPIID is the id of the server end's NAPI, from the napi-get dump
	// recorded first.
	NAPIID uint32 `json:"napi_id,omitempty"`
	// Set is what napi-set applied before the request, in nanoseconds
	// for the timeouts. Fields not set are the kernel's defaults (zero).
	DeferHardIRQs     uint32   `json:"defer_hard_irqs,omitempty"`
	GROFlushTimeout   uint64   `json:"gro_flush_timeout_ns,omitempty"`
	IRQSuspendTimeout uint64   `json:"irq_suspend_timeout_ns,omitempty"`
	Threaded          Threaded `json:"threaded,omitempty"`
	// PID is the NAPI's kernel thread, found by name under /proc.
	PID uint32 `json:"pid,omitempty"`
	// SetThreaded is the threaded value a rejected napi-set sent.
	SetThreaded uint32 `json:"set_threaded,omitempty"`
}

// splitAttrs splits raw attributes into one hex string per attribute.
func splitAttrs(t *testing.T, b []byte) []string {
	t.Helper()
	out := []string{}
	for len(b) > 0 {
		require.GreaterOrEqual(t, len(b), 4, "attribute header")
		n := int(b[0]) | int(b[1])<<8 // nla_len, little endian on the recording machine
		n = (n + 3) &^ 3
		if n > len(b) {
			n = len(b)
		}
		out = append(out, hex.EncodeToString(b[:n]))
		b = b[n:]
	}
	return out
}

// joinAttrs undoes splitAttrs.
func joinAttrs(t *testing.T, hs []string) []byte {
	t.Helper()
	var b []byte
	for _, h := range hs {
		x, err := hex.DecodeString(h)
		require.NoError(t, err)
		b = append(b, x...)
	}
	return b
}

// recordOne sends r to the kernel and returns the recording, unwritten.
func recordOne(t *testing.T, c *Client, r request, comment string, facts recordedFacts) recording {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	if r.encode != nil {
		r.encode(ae)
	}
	req, err := ae.Encode()
	require.NoError(t, err)

	family := "netdev"
	if r.family == unix.GENL_ID_CTRL {
		family = "nlctrl"
	}
	facts.FamilyID = c.family
	rec := recording{
		Comment: comment,
		Kernel:  testenv.KernelRelease(t),
		Request: recordedRequest{
			Family:  family,
			Command: r.cmd,
			Flags:   netlink.Request | r.flags,
			Attrs:   splitAttrs(t, req),
		},
		Facts: facts,
	}

	msgs, err := c.execute(r)
	if err != nil {
		var oerr *netlink.OpError
		require.ErrorAs(t, err, &oerr)
		var errno unix.Errno
		require.ErrorAs(t, err, &errno)
		rec.Error = &recordedError{Errno: errno, Message: oerr.Message, Offset: oerr.Offset}
		return rec
	}
	for _, m := range msgs {
		rec.Replies = append(rec.Replies, recordedMessage{
			Command: m.Header.Command,
			Version: m.Header.Version,
			Attrs:   splitAttrs(t, m.Data),
		})
	}
	return rec
}

// writeRecording writes rec to testdata/name.
func writeRecording(t *testing.T, name string, rec recording) {
	t.Helper()
	b, err := json.MarshalIndent(rec, "", "  ")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join("testdata", name), append(b, '\n'), 0o644))
	t.Logf("wrote testdata/%s", name)
}

// messages returns the genetlink replies of rec.
func (rec recording) messages(t *testing.T) []genetlink.Message {
	t.Helper()
	var msgs []genetlink.Message
	for _, m := range rec.Replies {
		msgs = append(msgs, genetlink.Message{
			Header: genetlink.Header{Command: m.Command, Version: m.Version},
			Data:   joinAttrs(t, m.Attrs),
		})
	}
	return msgs
}

// The values the recorder sets: gro-flush-timeout 5 s exceeds 2^32-1 ns, so
// the kernel sends it as 8 bytes; irq-suspend-timeout 20 ms fits 4 bytes.
const (
	recordDeferHardIRQs     = 100
	recordGROFlushTimeout   = 5 * time.Second
	recordIRQSuspendTimeout = 20 * time.Millisecond
)

// TestRecord regenerates testdata/ from the running kernel:
//
//	sudo go test ./napi -run TestRecord -napi.record
func TestRecord(t *testing.T) {
	if !*record {
		t.Skip("regenerates testdata/ only with -napi.record (as root)")
	}
	testenv.NeedRoot(t, "creates network namespaces and a veth pair and runs napi-set (CAP_NET_ADMIN)")

	v := newTestVeth(t)
	c := dialIn(t, v.Server)
	ifindex := uint32(v.Pair.Server.Index)
	fs, err := c.Features()
	require.NoError(t, err)
	require.NoError(t, fs.Missing(FeatureNAPISet, FeatureDeferHardIRQs, FeatureGROFlushTimeout, FeatureIRQSuspendTimeout),
		"the recordings need napi-set")

	writeRecording(t, "policy-napi-set.json", recordOne(t, c, policyRequest(c.family),
		"controller policy dump (CTRL_CMD_GETPOLICY) for netdev op napi-set", recordedFacts{}))

	dump := recordOne(t, c, napiDumpRequest(ifindex),
		"napi-get dump of a veth with GRO on, kernel defaults: 4-byte uints, no irq, no pid",
		recordedFacts{IfIndex: ifindex})
	ns, err := parseNAPIs(dump.messages(t))
	require.NoError(t, err)
	require.Len(t, ns, 1, "the veth has one rx queue, so one NAPI")
	id := ns[0].ID
	dump.Facts.NAPIID = id
	writeRecording(t, "napi-get-dump-defaults.json", dump)

	snap, err := c.Snapshot(id)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, c.Restore(id, snap)) })

	writeRecording(t, "queue-get-dump.json", recordOne(t, c, queueDumpRequest(ifindex),
		"queue-get dump of the same veth: one rx queue with the NAPI, one tx queue without",
		recordedFacts{IfIndex: ifindex, NAPIID: id}))

	set := Settings{
		DeferHardIRQs:     new(uint32(recordDeferHardIRQs)),
		GROFlushTimeout:   new(recordGROFlushTimeout),
		IRQSuspendTimeout: new(recordIRQSuspendTimeout),
	}
	require.NoError(t, c.SetNAPI(id, set))
	facts := recordedFacts{
		IfIndex: ifindex, NAPIID: id,
		DeferHardIRQs:     recordDeferHardIRQs,
		GROFlushTimeout:   uint64(recordGROFlushTimeout),
		IRQSuspendTimeout: uint64(recordIRQSuspendTimeout),
	}
	writeRecording(t, "napi-get-uint64.json", recordOne(t, c, napiGetRequest(id),
		"napi-get after napi-set defer-hard-irqs 100, gro-flush-timeout 5 s (8 bytes), irq-suspend-timeout 20 ms (4 bytes)",
		facts))

	if fs.Has(FeatureThreaded) {
		require.NoError(t, c.SetNAPI(id, Settings{Threaded: new(ThreadedEnabled)}))
		pids := napiThreadPIDs(t, v.Pair.Server.Name, id)
		require.Len(t, pids, 1, "kernel threads named for NAPI %d", id)
		facts.Threaded = ThreadedEnabled
		facts.PID = pids[0]
		writeRecording(t, "napi-get-threaded.json", recordOne(t, c, napiGetRequest(id),
			"napi-get of the same NAPI, threaded: now with pid", facts))
		require.NoError(t, c.SetNAPI(id, Settings{Threaded: new(ThreadedDisabled)}))
	} else {
		t.Logf("not recording napi-get-threaded.json: %v", fs.Missing(FeatureThreaded))
	}

	// NAPI ids start above NR_CPUS: 1 is never one.
	writeRecording(t, "napi-set-enoent.json", recordOne(t, c, napiSetRequest(1, Settings{DeferHardIRQs: new(uint32(0))}),
		"napi-set of NAPI id 1, which cannot exist: ENOENT pointing at the id attribute",
		recordedFacts{}))

	if fs.Has(FeatureThreaded) {
		bad := Threaded(fs.MaxThreaded + 1)
		rec := recordOne(t, c, napiSetRequest(id, Settings{Threaded: &bad}),
			"napi-set threaded one above the policy's maximum: rejected by the policy (ERANGE), with a message",
			recordedFacts{NAPIID: id, SetThreaded: uint32(bad)})
		require.NotNil(t, rec.Error, "the kernel accepted threaded %d", bad)
		writeRecording(t, "napi-set-threaded-range.json", rec)
	}

	// The error replies must not have changed anything.
	n, err := c.NAPI(id)
	require.NoError(t, err)
	require.Equal(t, set, Settings{DeferHardIRQs: new(n.DeferHardIRQs), GROFlushTimeout: new(n.GROFlushTimeout), IRQSuspendTimeout: new(n.IRQSuspendTimeout)})
	if fs.Has(FeatureThreaded) {
		require.Equal(t, ThreadedDisabled, n.Threaded)
	}
}
