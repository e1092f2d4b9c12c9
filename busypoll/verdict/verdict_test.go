package verdict_test

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll"
	"github.com/netdev-go/busypolltest/busypoll/verdict"
)

// recordings is the repository's testdata/ folder, where recordings of real
// runs (go test -run BusyPoll . -args -busypoll.record=FILE) are kept.
const recordings = "../../testdata"

func TestRankSumP(t *testing.T) {
	tests := []struct {
		name string
		a, b []uint64
		want float64
	}{
		{"a all above b, 3 and 3", []uint64{5, 6, 7}, []uint64{1, 2, 3}, 1.0 / 20},
		{"a all below b", []uint64{1, 2, 3}, []uint64{5, 6, 7}, 1},
		{"all tied", []uint64{0, 0, 0}, []uint64{0, 0, 0}, 1},
		// Ties share their mean rank: a={1,1}, b={0,0}: ranks 3.5 each.
		{"two tied pairs", []uint64{1, 1}, []uint64{0, 0}, 1.0 / 6},
		{"a all above b, 8 and 8", []uint64{16, 17, 18, 19, 20, 21, 22, 23}, []uint64{0, 1, 2, 3, 4, 5, 6, 7}, 1.0 / 12870},
		{"one lucky control", []uint64{16, 32, 32, 16, 26, 64, 96, 32}, []uint64{0, 0, 0, 0, 0, 57, 0, 0}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := verdict.RankSumP(tt.a, tt.b)
			if tt.want == 0 {
				assert.Less(t, got, verdict.SuspendAlpha)
				return
			}
			assert.InDelta(t, tt.want, got, 1e-12)
		})
	}
}

func TestPermutationP(t *testing.T) {
	// Pick 2 of {0, 1, 2, 3}: sums 1,2,3,3,4,5; at least 4 in 2 of 6.
	assert.InDelta(t, 2.0/6, verdict.PermutationP([]uint64{0, 1, 2, 3}, 2, 4), 1e-12)
	assert.InDelta(t, 1.0, verdict.PermutationP([]uint64{0, 1, 2, 3}, 2, 0), 1e-12)
	assert.Equal(t, 1.0, verdict.PermutationP([]uint64{1}, 2, 0), "k beyond n")
}

// arms builds a comparison from the busy-polled counts of each arm, 730 rx
// packets a transfer.
func arms(suspend, control []uint64) []verdict.Transfer {
	var ts []verdict.Transfer
	for _, n := range suspend {
		ts = append(ts, verdict.Transfer{Arm: verdict.ArmSuspend, IRQSuspendTimeout: 20 * time.Millisecond, RxPackets: 730, BusyPolled: n})
	}
	for _, n := range control {
		ts = append(ts, verdict.Transfer{Arm: verdict.ArmControl, RxPackets: 730, BusyPolled: n})
	}
	return ts
}

func TestSuspension(t *testing.T) {
	tests := []struct {
		name             string
		suspend, control []uint64
		wantErr          []string // empty: passes
	}{
		{"suspension works", []uint64{42, 42, 16, 88, 16, 19, 51, 16}, []uint64{0, 0, 0, 0, 0, 0, 0, 0}, nil},
		{"suspension works, one lucky control", []uint64{16, 32, 32, 16, 26, 64, 96, 32}, []uint64{0, 0, 0, 0, 0, 57, 0, 0}, nil},
		{"nothing busy-polled (defer 0, gro 0)", make([]uint64, 8), make([]uint64, 8), []string{
			"IRQ suspension made no measured difference",
			"irq-suspend-timeout 20ms 0.0% (0 of 5840 rx packets in 8 transfers)",
			"with irq-suspend-timeout 0 (the control, otherwise the same settings) 0.0% (0 of 5840",
			"within chance (rank-sum p=1.0000, the rule needs at most 0.005)",
			"below 1%",
		}},
		{"same as the control (suspend-timeout 0)", []uint64{0, 16, 0, 0, 32, 0, 0, 0}, []uint64{0, 0, 16, 0, 0, 0, 12, 0}, []string{
			"within chance", "below 1%",
		}},
		{"significant but a trace", []uint64{1, 1, 1, 1, 1, 1, 1, 1}, make([]uint64, 8), []string{
			"the suspend arm's share 0.1% is below 1%",
		}},
		{"control busy-polls as much", []uint64{300, 301, 302, 303, 304, 305, 306, 307}, []uint64{200, 200, 200, 200, 200, 200, 200, 200}, []string{
			"is below 2 times the control's (54.8%)",
		}},
		{"no control", []uint64{100, 100}, nil, []string{"needs transfers in both arms: 2 with suspension, 0 control"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			summary, err := verdict.Suspension(arms(tt.suspend, tt.control))
			assert.Contains(t, summary, "busy-polled with IRQ suspension")
			if len(tt.wantErr) == 0 {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
		})
	}
}

// subtest is one recorded comparison: the transfers of one round of one
// subtest.
type subtest struct {
	run, scenario string
	round         int
	transfers     []verdict.Transfer
	negative      *verdict.Transfer
}

// readRecording reads a gzipped recording of -busypoll.record.
func readRecording(t *testing.T, name string) []subtest {
	t.Helper()
	f, err := os.Open(filepath.Join(recordings, name))
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	type key struct {
		run   string
		round int
	}
	byKey := map[key]*subtest{}
	negatives := map[string]verdict.Transfer{}
	var order []key
	sc := bufio.NewScanner(zr)
	for sc.Scan() {
		var tr verdict.Transfer
		require.NoError(t, json.Unmarshal(sc.Bytes(), &tr), "%s: %s", name, sc.Text())
		if tr.Arm == verdict.ArmNegative {
			negatives[tr.Run] = tr
			continue
		}
		k := key{tr.Run, tr.Round}
		s := byKey[k]
		if s == nil {
			s = &subtest{run: tr.Run, scenario: tr.Scenario, round: tr.Round}
			byKey[k] = s
			order = append(order, k)
		}
		s.transfers = append(s.transfers, tr)
	}
	require.NoError(t, sc.Err())
	var out []subtest
	for _, k := range order {
		s := *byKey[k]
		if n, ok := negatives[s.run]; ok {
			s.negative = &n
		}
		out = append(out, s)
	}
	require.NotEmpty(t, out, name)
	return out
}

// TestSuspensionRecorded replays the comparisons of real runs (veth, this
// project's 2-CPU host, kernel 6.18, recorded with the suite's sequential
// rule) through that rule, pair by pair as the suite applies it: each must
// reach its decision exactly where the recording ends (the suite stopped
// there), with suspension working it must pass (at most 1 false failure in
// 200), with suspension made ineffective fail (at most 1 false pass in
// 100). testdata/README.md's rates come from these recordings.
func TestSuspensionRecorded(t *testing.T) {
	tests := []struct {
		file     string
		working  bool
		maxWrong float64 // share of comparisons allowed the wrong verdict
	}{
		{"veth-suspend-working.jsonl.gz", true, 1.0 / 200},
		{"veth-suspend-timeout-0.jsonl.gz", false, 1.0 / 100},
		{"veth-defer-0-gro-0.jsonl.gz", false, 1.0 / 100},
	}
	looks := verdict.LooksUpTo(verdict.SuspensionLooks[len(verdict.SuspensionLooks)-1].Pairs)
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			subs := readRecording(t, tt.file)
			wrong := 0
			byPairs := map[int]int{}
			var ps []float64
			for _, s := range subs {
				d, pairs, _, _ := verdict.ReplaySuspension(s.transfers, looks)
				recorded := verdict.Sum(s.transfers, verdict.ArmSuspend).Transfers
				if !assert.NotEqual(t, verdict.Continue, d, "run %s round %d: undecided after %d pairs", s.run, s.round, pairs) {
					continue
				}
				assert.Equal(t, recorded, pairs, "run %s round %d: the rule decides (%v) after %d pairs, the suite stopped after %d", s.run, s.round, d, pairs, recorded)
				if (d == verdict.Pass) != tt.working {
					wrong++
				}
				byPairs[pairs]++
				var a, b []uint64
				for _, tr := range s.transfers {
					if tr.Arm == verdict.ArmSuspend {
						a = append(a, tr.BusyPolled)
					} else if tr.Arm == verdict.ArmControl {
						b = append(b, tr.BusyPolled)
					}
				}
				ps = append(ps, verdict.RankSumP(a, b))
			}
			sort.Float64s(ps)
			t.Logf("%s: %d comparisons, %d with the wrong verdict; decided after pairs: %v; rank-sum p at the decision: smallest %.5f, median %.5f, largest %.5f",
				tt.file, len(subs), wrong, byPairs, ps[0], ps[len(ps)/2], ps[len(ps)-1])
			assert.LessOrEqual(t, float64(wrong), math.Floor(tt.maxWrong*float64(len(subs))),
				"%d of %d recorded comparisons got the wrong verdict", wrong, len(subs))
		})
	}
}

func TestLooksUpTo(t *testing.T) {
	for _, maxPairs := range []int{1, 5, 6, 7, 12, 20} {
		looks := verdict.LooksUpTo(maxPairs)
		var sum float64
		for i, l := range looks {
			sum += l.Alpha
			assert.Positive(t, l.Alpha)
			if i > 0 {
				assert.Greater(t, l.Pairs, looks[i-1].Pairs)
			}
		}
		assert.InDelta(t, verdict.SuspendAlpha, sum, 1e-12, "cap %d: the looks spend exactly SuspendAlpha (%s)", maxPairs, verdict.LooksString(looks))
		assert.Equal(t, maxPairs, looks[len(looks)-1].Pairs, "the last look is at the cap")
	}
	assert.Equal(t, verdict.SuspensionLooks, verdict.LooksUpTo(20))
}

// pairsOf builds an interleaved comparison from per-pair busy-polled
// counts, in the suite's order (suspend, control; control, suspend; ...).
func pairsOf(suspend, control []uint64) []verdict.Transfer {
	var ts []verdict.Transfer
	for i := range suspend {
		s := verdict.Transfer{Arm: verdict.ArmSuspend, IRQSuspendTimeout: 20 * time.Millisecond, RxPackets: 730, BusyPolled: suspend[i]}
		c := verdict.Transfer{Arm: verdict.ArmControl, RxPackets: 730, BusyPolled: control[i]}
		if i%2 == 0 {
			ts = append(ts, s, c)
		} else {
			ts = append(ts, c, s)
		}
	}
	return ts
}

func repeat(v []uint64, n int) []uint64 {
	var out []uint64
	for len(out) < n {
		out = append(out, v...)
	}
	return out[:n]
}

func TestSuspensionSequential(t *testing.T) {
	tests := []struct {
		name             string
		suspend, control []uint64 // per pair, as many as the rule may ask for
		want             verdict.Decision
		wantPairs        int
		wantErr          string
	}{
		{"clear effect: first look", repeat([]uint64{42, 80, 16, 88}, 20), make([]uint64, 20), verdict.Pass, 6, ""},
		// One control transfer busy-polls as much as a suspend one: 6
		// pairs give p = 0.0043 > 0.0012, 8 pairs pass.
		{"one lucky control: second look", repeat([]uint64{42, 80, 16, 88}, 20), append([]uint64{57}, make([]uint64, 19)...), verdict.Pass, 8, ""},
		{"no effect, nothing busy-polled: futility at the second look", make([]uint64, 20), make([]uint64, 20), verdict.Fail, 8,
			"stopped at look 2 of 5: p above 0.5"},
		{"no effect, both arms the same: futility", repeat([]uint64{0, 16, 0, 32}, 20), repeat([]uint64{16, 0, 32, 0}, 20), verdict.Fail, 8, "clearly absent"},
		{"significant but a trace: until the cap", repeat([]uint64{1}, 20), make([]uint64, 20), verdict.Fail, 20, "the suspend arm's share 0.1% is below 1%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, pairs, summary, err := verdict.ReplaySuspension(pairsOf(tt.suspend, tt.control), verdict.SuspensionLooks)
			assert.Equal(t, tt.want, d, summary)
			assert.Equal(t, tt.wantPairs, pairs, summary)
			assert.Contains(t, summary, fmt.Sprintf("%d pairs: pass at p ≤", tt.wantPairs))
			if tt.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), "IRQ suspension made no measured difference")
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}
	d, _, err := verdict.SuspensionSequential(pairsOf(make([]uint64, 5), make([]uint64, 5)), verdict.SuspensionLooks)
	assert.Equal(t, verdict.Continue, d, "between looks")
	assert.NoError(t, err)
}

func TestNegativeControl(t *testing.T) {
	clean := verdict.Transfer{Arm: verdict.ArmNegative, RxPackets: 729}
	leaky := verdict.Transfer{Arm: verdict.ArmNegative, RxPackets: 729, BusyPolled: 312, SocketBusyPoll: 50}
	assert.NoError(t, verdict.NegativeControl(clean, busypoll.Sysctls{}))
	assert.NoError(t, verdict.NegativeControl(clean, busypoll.Sysctls{BusyRead: 50}))
	// net.core.busy_poll on: busy polling is expected; Credited reports it.
	assert.NoError(t, verdict.NegativeControl(leaky, busypoll.Sysctls{BusyPoll: 50}))
	err := verdict.NegativeControl(leaky, busypoll.Sysctls{BusyRead: 50})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "negative control: 312 of 729 rx packets were busy-polled with epoll busy polling off")
	assert.Contains(t, err.Error(), "SO_BUSY_POLL 50 on the accepted socket and net.core.busy_poll=0 net.core.busy_read=50")
	assert.Contains(t, err.Error(), "busy polling comes from somewhere unknown")
}

func TestCredited(t *testing.T) {
	assert.NoError(t, verdict.Credited(busypoll.Sysctls{}))
	assert.NoError(t, verdict.Credited(busypoll.Sysctls{BusyRead: 50}), "busy_read is neutralised per socket")
	err := verdict.Credited(busypoll.Sysctls{BusyPoll: 50})
	require.ErrorIs(t, err, verdict.ErrNotCredited)
	assert.Contains(t, err.Error(), "net.core.busy_poll=50")
	assert.Contains(t, err.Error(), "sysctl -w net.core.busy_poll=0")
}

func TestStream(t *testing.T) {
	assert.NoError(t, verdict.Stream(100, 100, 100, "ab", "ab"))
	tests := []struct {
		name                string
		sent, received      int64
		sentSum, receiveSum string
		want                string
	}{
		{"short stream", 100, 60, "ab", "cd", "received 60 of the 100 bytes sent"},
		{"short send", 40, 40, "ab", "ab", "sent 40 bytes, want 100"},
		{"corrupted", 100, 100, "0123456789abcdef0123", "fedcba9876543210fedc", "SHA-256 of the stream received fedcba9876543210… differs from the one sent 0123456789abcdef…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verdict.Stream(100, tt.sent, tt.received, tt.sentSum, tt.receiveSum)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestNAPI(t *testing.T) {
	assert.NoError(t, verdict.NAPI(8193, 8193))
	assert.NoError(t, verdict.NAPI(8194, 8193, 8194))
	err := verdict.NAPI(8200, 8193)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "SO_INCOMING_NAPI_ID of the accepted socket is 8200, not a configured NAPI [8193]")
	err = verdict.NAPI(0, 8193)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "is 0: the data came through no NAPI")
}

func TestBusyPolledAtAll(t *testing.T) {
	assert.NoError(t, verdict.BusyPolledAtAll([]verdict.Transfer{{RxPackets: 700}, {RxPackets: 700, BusyPolled: 16}}))
	err := verdict.BusyPolledAtAll([]verdict.Transfer{{RxPackets: 700, EpollWaits: 3}, {RxPackets: 701, EpollWaits: 4}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no packet was busy-polled in 2 transfers (1401 rx packets, 7 epoll_wait calls)")
}

func TestThreadBusyPolls(t *testing.T) {
	assert.NoError(t, verdict.ThreadBusyPolls(3*time.Millisecond, 0.97, 100*time.Millisecond, 0.25))
	err := verdict.ThreadBusyPolls(3*time.Millisecond, 0.02, 100*time.Millisecond, 0.25)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "with no traffic the NAPI's kernel thread used 2% of a CPU over 100ms, below 25%")
	err = verdict.ThreadBusyPolls(0, 0, 100*time.Millisecond, 0.25)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "used no CPU during the transfer")
}

func TestThreadPolled(t *testing.T) {
	assert.NoError(t, verdict.ThreadPolled(412, map[int]uint64{412: 730}, 730, 0))
	tests := []struct {
		name string
		work map[int]uint64
		lost uint64
		want string
	}{
		{"softirq polled instead", map[int]uint64{14: 730}, 0, "the NAPI's kernel thread 412 polled 0 of the 730 packets the device received, below 90%"},
		{"shared with a busy poller", map[int]uint64{412: 700, 4242: 30}, 0, "other tasks polled 30 of the 730 packets polled"},
		{"lost events", map[int]uint64{412: 730}, 5, "the trace lost 5 napi_poll events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := verdict.ThreadPolled(412, tt.work, 730, tt.lost)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestBusyLoopRan(t *testing.T) {
	assert.NoError(t, verdict.BusyLoopRan(3, 0, 16), "polls that found nothing still show the loop ran")
	err := verdict.BusyLoopRan(0, 0, 16)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "the epoll busy loop never polled the NAPI")
}

// irqArms builds a three-arm comparison from per-transfer interrupt counts,
// 186 rx packets a transfer.
func irqArms(baseline, control, suspend []uint64) []verdict.Transfer {
	var ts []verdict.Transfer
	for arm, counts := range map[verdict.Arm][]uint64{verdict.ArmBaseline: baseline, verdict.ArmControl: control, verdict.ArmSuspend: suspend} {
		for _, n := range counts {
			ts = append(ts, verdict.Transfer{Arm: arm, RxPackets: 186, IRQs: n})
		}
	}
	return ts
}

func TestIRQVerdicts(t *testing.T) {
	// Measured on virtio-net in the VM: about 13 per transfer without
	// deferral, 0 or 1 with it.
	baseline := []uint64{13, 14, 12, 13, 15, 13, 12, 13}
	deferred := []uint64{1, 0, 1, 1, 0, 1, 0, 0}
	suspended := []uint64{1, 1, 1, 0, 1, 1, 1, 0}

	_, err := verdict.Deferral(irqArms(baseline, deferred, suspended))
	assert.NoError(t, err)
	_, err = verdict.SuspensionIRQs(irqArms(baseline, deferred, suspended))
	assert.NoError(t, err, "a few more single interrupts are no failure")

	// -busypoll.defer-hard-irqs=0 -busypoll.gro-flush-timeout=0s: the
	// control is the baseline.
	_, err = verdict.Deferral(irqArms(baseline, baseline, baseline))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "IRQ deferral made no measured difference")
	assert.Contains(t, err.Error(), "within chance")

	_, err = verdict.SuspensionIRQs(irqArms(baseline, deferred, baseline))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "IRQ suspension did not keep interrupts down")

	_, err = verdict.SuspensionIRQs(irqArms(baseline, make([]uint64, 8), []uint64{5, 5, 6, 5, 5, 6, 5, 5}))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "raised clearly more interrupts than deferral alone")

	summary, err := verdict.SuspensionIRQs(irqArms(baseline, []uint64{3, 3, 3, 3, 3, 3, 3, 3}, make([]uint64, 8)))
	assert.NoError(t, err)
	assert.Contains(t, summary, ": fewer (rank-sum")
}
