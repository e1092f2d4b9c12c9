package busypoll

import (
	"bytes"
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const sampleNetstat = `TcpExt: SyncookiesSent SyncookiesRecv BusyPollRxPackets TCPOrigDataSent
TcpExt: 0 0 4242 17
IpExt: InNoRoutes InTruncatedPkts
IpExt: 0 0
MPTcpExt: MPCapableSYNRX BusyPollRxPackets
MPTcpExt: 1 999
`

const sampleSnmp = `Ip: Forwarding DefaultTTL
Ip: 1 64
Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens InSegs OutSegs
Tcp: 1 200 120000 -1 3 123456789012 5
Udp: InDatagrams NoPorts
Udp: 0 0
`

func TestParseCounter(t *testing.T) {
	tests := []struct {
		name, input, group, counter string
		want                        uint64
		wantErr                     string
	}{
		{name: "netstat", input: sampleNetstat, group: "TcpExt", counter: "BusyPollRxPackets", want: 4242},
		{name: "group is matched exactly", input: sampleNetstat, group: "MPTcpExt", counter: "BusyPollRxPackets", want: 999},
		{name: "snmp, after a negative value", input: sampleSnmp, group: "Tcp", counter: "InSegs", want: 123456789012},
		{name: "last column", input: sampleSnmp, group: "Tcp", counter: "OutSegs", want: 5},
		{name: "extra spaces", input: "Tcp:  InSegs   OutSegs\nTcp:   7  8\n", group: "Tcp", counter: "InSegs", want: 7},
		{name: "missing counter", input: sampleNetstat, group: "TcpExt", counter: "NoSuchCounter",
			wantErr: "no counter TcpExt NoSuchCounter"},
		{name: "missing group", input: sampleSnmp, group: "TcpExt", counter: "BusyPollRxPackets",
			wantErr: "no TcpExt counters, so no TcpExt BusyPollRxPackets"},
		{name: "empty", input: "", group: "Tcp", counter: "InSegs", wantErr: "no Tcp counters"},
		{name: "header without values", input: "Tcp: InSegs OutSegs\n", group: "Tcp", counter: "InSegs",
			wantErr: "line 1: Tcp header without a value line"},
		{name: "header followed by another group", input: "Tcp: InSegs\nUdp: 1\n", group: "Tcp", counter: "InSegs",
			wantErr: `line 2: Tcp header followed by "Udp:"`},
		{name: "count mismatch", input: "Tcp: InSegs OutSegs\nTcp: 1\n", group: "Tcp", counter: "InSegs",
			wantErr: "line 2: Tcp has 2 names but 1 values"},
		{name: "not a number", input: "Tcp: InSegs\nTcp: many\n", group: "Tcp", counter: "InSegs",
			wantErr: `line 2: Tcp InSegs: strconv.ParseUint: parsing "many"`},
		{name: "negative", input: "Tcp: InSegs\nTcp: -1\n", group: "Tcp", counter: "InSegs",
			wantErr: "Tcp InSegs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseCounter(strings.NewReader(tt.input), tt.group, tt.counter)
			if tt.wantErr != "" {
				assert.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestCountersSub(t *testing.T) {
	tests := []struct {
		name      string
		now, prev Counters
		want      Counters
		wantShare float64
	}{
		{"growth", Counters{BusyPollRxPackets: 30, InSegs: 1100}, Counters{BusyPollRxPackets: 10, InSegs: 100},
			Counters{BusyPollRxPackets: 20, InSegs: 1000}, 0.02},
		{"no traffic", Counters{5, 5}, Counters{5, 5}, Counters{}, 0},
		{"went down", Counters{BusyPollRxPackets: 1, InSegs: 1}, Counters{BusyPollRxPackets: 2, InSegs: 3}, Counters{}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := tt.now.Sub(tt.prev)
			assert.Equal(t, tt.want, d)
			assert.InDelta(t, tt.wantShare, d.BusyPolledShare(), 1e-9)
		})
	}
}

// TestReadCountersLoopback reads the process's own namespace before and
// after a loopback transfer: InSegs must grow by at least the segments the
// transfer needed.
func TestReadCountersLoopback(t *testing.T) {
	runtime.LockOSThread() // read both snapshots from the same thread
	defer runtime.UnlockOSThread()
	before, err := ReadCounters()
	require.NoError(t, err)

	r := newTestReceiver(t, ReceiverConfig{Addr: loopback})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	done := receiveAsync(ctx, r, newHashWriter())
	const size = 1 << 20
	_, err = Send(ctx, r.Addr(), bytes.NewReader(randomData(size)))
	require.NoError(t, err)
	require.NoError(t, wait(t, done, 10*time.Second, "Receive").err)

	after, err := ReadCounters()
	require.NoError(t, err)
	d := after.Sub(before)
	// Loopback's MTU is 64 KiB: at least size/64 KiB data segments.
	assert.GreaterOrEqual(t, d.InSegs, uint64(size>>16), "InSegs grew by %d", d.InSegs)
	t.Logf("loopback transfer of %d bytes: %+v", size, d)
}
