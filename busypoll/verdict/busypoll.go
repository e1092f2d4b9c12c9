package verdict

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/netdev-go/busypolltest/busypoll"
)

// The suspension rule (package documentation, "Suspension against its
// control"). Over the transfers of one comparison:
//
//   - the suspend arm busy-polled more than the control arm by more than
//     chance: in an exact Wilcoxon rank-sum test of the per-transfer
//     busy-polled counts (ties share their mean rank; every way of splitting
//     the transfers into two arms of the same sizes is counted), a
//     suspend-arm rank sum at least as large as the one measured arises in
//     at most SuspendAlpha of the splits. Where suspension has no effect the
//     two arms measure the same thing, so the test passes by chance in at
//     most that share of runs, whatever the distribution. Ranks, unlike
//     counts, do not let one lucky control transfer (a single budget-sized
//     win of the control's busy poll) outweigh a suspend arm that
//     busy-polled in every transfer;
//   - and the effect is not a trace: the suspend arm's busy-polled share is
//     at least MinSuspendShare and at least SuspendFactor times the
//     control's.
const (
	SuspendAlpha    = 0.005
	MinSuspendShare = 0.01
	SuspendFactor   = 2.0
)

// Suspension is the suspension rule at one fixed size, with the threshold
// SuspendAlpha: the transfers of ArmSuspend (irq-suspend-timeout on) must
// have busy-polled clearly more than those of ArmControl (the same settings
// with irq-suspend-timeout 0), measured on the same pair and NAPI. It
// returns a summary of both arms for the log. Check 4 uses it sequentially
// (SuspensionSequential), with a share of SuspendAlpha at each look; where
// the comparison is only logged (under emulation), it uses this.
func Suspension(ts []Transfer) (string, error) {
	summary, _, why := suspension(ts, SuspendAlpha)
	if len(why) == 0 {
		return summary, nil
	}
	return summary, suspensionError(ts, why)
}

// suspension applies the rule with the threshold alpha for p: the summary,
// p, and each condition missed (none: it passes).
func suspension(ts []Transfer, alpha float64) (string, float64, []string) {
	s, c := Sum(ts, ArmSuspend), Sum(ts, ArmControl)
	var susp, ctrl []uint64
	for _, t := range ts {
		switch t.Arm {
		case ArmSuspend:
			susp = append(susp, t.BusyPolled)
		case ArmControl:
			ctrl = append(ctrl, t.BusyPolled)
		}
	}
	p := RankSumP(susp, ctrl)
	summary := fmt.Sprintf("busy-polled with IRQ suspension %v, control without %v, rank-sum p=%.5f", s, c, p)
	if s.Transfers == 0 || c.Transfers == 0 {
		return summary, 1, []string{fmt.Sprintf("the comparison needs transfers in both arms: %d with suspension, %d control", s.Transfers, c.Transfers)}
	}
	var why []string
	if p > alpha {
		why = append(why, fmt.Sprintf("the difference is within chance (rank-sum p=%.4f, the rule needs at most %.4g)", p, alpha))
	}
	if s.Share() < MinSuspendShare {
		why = append(why, fmt.Sprintf("the suspend arm's share %.1f%% is below %.0f%%", 100*s.Share(), 100*MinSuspendShare))
	}
	if s.Share() < SuspendFactor*c.Share() {
		why = append(why, fmt.Sprintf("the suspend arm's share %.1f%% is below %.0f times the control's (%.1f%%)",
			100*s.Share(), SuspendFactor, 100*SuspendFactor*c.Share()))
	}
	return summary, p, why
}

func suspensionError(ts []Transfer, why []string) error {
	return fmt.Errorf("IRQ suspension made no measured difference: busy-polled with irq-suspend-timeout %v %v, "+
		"with irq-suspend-timeout 0 (the control, otherwise the same settings) %v; %s",
		suspendTimeoutOf(ts), Sum(ts, ArmSuspend), Sum(ts, ArmControl), strings.Join(why, "; "))
}

// RankSumP is the exact one-sided p-value of a Wilcoxon rank-sum
// (Mann-Whitney) test that a values tend to be larger than b values: the
// share of the ways to split all the values into groups of len(a) and len(b)
// whose first group has a rank sum at least a's. Tied values share their
// mean rank, which makes the test conservative where many values tie (all
// zeros give 1).
func RankSumP(a, b []uint64) float64 {
	all := append(append([]uint64(nil), a...), b...)
	order := make([]int, len(all))
	for i := range order {
		order[i] = i
	}
	sort.Slice(order, func(i, j int) bool { return all[order[i]] < all[order[j]] })
	// Twice the mean rank, so that ranks of ties stay integers.
	ranks := make([]uint64, len(all))
	for i := 0; i < len(order); {
		j := i
		for j < len(order) && all[order[j]] == all[order[i]] {
			j++
		}
		for k := i; k < j; k++ {
			ranks[order[k]] = uint64(i + 1 + j) // 2 × (i+1 + j)/2
		}
		i = j
	}
	var observed uint64
	for i := range a {
		observed += ranks[i]
	}
	return PermutationP(ranks, len(a), observed)
}

// PermutationP is the exact one-sided p-value of a permutation test: the
// share of the ways to pick k of counts whose sum is at least observed.
func PermutationP(counts []uint64, k int, observed uint64) float64 {
	n := len(counts)
	if k < 0 || k > n {
		return 1
	}
	var total uint64
	for _, c := range counts {
		total += c
	}
	// ways[j][s]: number of subsets of j of the counts seen so far that
	// sum to s. Counts are per-transfer packet numbers, so the table stays
	// small; float64 holds the binomial numbers of any sensible n.
	ways := make([][]float64, k+1)
	for j := range ways {
		ways[j] = make([]float64, total+1)
	}
	ways[0][0] = 1
	for _, c := range counts {
		for j := k; j >= 1; j-- {
			for s := int(total); s >= int(c); s-- {
				ways[j][s] += ways[j-1][s-int(c)]
			}
		}
	}
	var atLeast, all float64
	for s := uint64(0); s <= total; s++ {
		all += ways[k][s]
		if s >= observed {
			atLeast += ways[k][s]
		}
	}
	if all == 0 {
		return 1
	}
	return atLeast / all
}

func suspendTimeoutOf(ts []Transfer) time.Duration {
	for _, t := range ts {
		if t.Arm == ArmSuspend {
			return t.IRQSuspendTimeout
		}
	}
	return 0
}

// BusyPolledAtAll is check 4 on a backend that cannot show the effect of
// IRQ suspension: busy polling delivered at least one packet in ts.
func BusyPolledAtAll(ts []Transfer) error {
	var total Total
	var waits int
	for _, t := range ts {
		total.Transfers++
		total.RxPackets += t.RxPackets
		total.BusyPolled += t.BusyPolled
		waits += t.EpollWaits
	}
	if total.BusyPolled > 0 {
		return nil
	}
	return fmt.Errorf("no packet was busy-polled in %d transfers (%d rx packets, %d epoll_wait calls): TcpExt BusyPollRxPackets "+
		"of the receiving namespace did not grow, the data arrived through the device's own rx processing only",
		total.Transfers, total.RxPackets, waits)
}

// NegativeControl checks the transfer made with epoll busy polling off
// (prefer 0, usecs 0): it must have busy-polled nothing. Where net.core.busy_poll is on, busy polling is
// expected and Credited reports it instead.
func NegativeControl(t Transfer, s busypoll.Sysctls) error {
	if t.BusyPolled == 0 || s.BusyPoll != 0 {
		return nil
	}
	return fmt.Errorf("negative control: %d of %d rx packets were busy-polled with epoll busy polling off (prefer 0, usecs 0), "+
		"SO_BUSY_POLL %d on the accepted socket and %v: busy polling comes from somewhere unknown, "+
		"so no busy-poll count of this run can be credited to EPIOCSPARAMS", t.BusyPolled, t.RxPackets, t.SocketBusyPoll, s)
}

// ErrNotCredited is matched by Credited's error.
var ErrNotCredited = errors.New("busy polling cannot be credited to EPIOCSPARAMS")

// Credited tells whether the host lets a run credit busy polling to the
// epoll parameters. net.core.busy_poll makes every epoll instance busy-poll,
// and no socket option turns it off, so then no busy-poll proof is possible;
// net.core.busy_read is neutralised per socket (SO_BUSY_POLL 0) and does not
// matter. The error says which setting and how to rerun.
func Credited(s busypoll.Sysctls) error {
	if s.BusyPoll == 0 {
		return nil
	}
	return fmt.Errorf("%w: this host sets net.core.busy_poll=%d, which makes every epoll_wait busy-poll whatever its parameters "+
		"(no socket option turns it off), so the busy-poll proof is impossible here; "+
		"rerun after sysctl -w net.core.busy_poll=0 (the test never changes it)", ErrNotCredited, s.BusyPoll)
}

// ThreadBusyPolls is check 4 of napi_threaded: the NAPI's kernel thread used
// CPU during the transfer, and with no traffic it kept polling for at least
// minShare of the idle window (a thread in threaded busy-poll mode spins; a
// plain threaded NAPI sleeps).
func ThreadBusyPolls(transferCPU time.Duration, idleShare float64, idleWindow time.Duration, minShare float64) error {
	var errs []error
	if transferCPU <= 0 {
		errs = append(errs, errors.New("the NAPI's kernel thread used no CPU during the transfer: threaded busy polling did not run"))
	}
	if idleShare < minShare {
		errs = append(errs, fmt.Errorf("with no traffic the NAPI's kernel thread used %.0f%% of a CPU over %v, below %.0f%%: a thread "+
			"that busy polls keeps polling (measured 89-102%%), a plain threaded NAPI sleeps (1-2%%)",
			100*idleShare, idleWindow, 100*minShare))
	}
	return errors.Join(errs...)
}

// ThreadPolled is the second part of check 4 of napi_threaded, from the
// napi:napi_poll tracepoint: the NAPI's kernel thread (tid) polled at least
// 90 % of the packets the device received during the transfer, and other
// tasks at most 1 % of all the packets polled. work is the packets polled
// by task id; lost counts events the trace dropped.
func ThreadPolled(tid int, work map[int]uint64, rxPackets, lost uint64) error {
	var total uint64
	for _, w := range work {
		total += w
	}
	mine := work[tid]
	var errs []error
	if lost > 0 {
		errs = append(errs, fmt.Errorf("the trace lost %d napi_poll events, so it cannot tell who polled", lost))
	}
	if 10*mine < 9*rxPackets {
		errs = append(errs, fmt.Errorf("the NAPI's kernel thread %d polled %d of the %d packets the device received, below 90%%", tid, mine, rxPackets))
	}
	if others := total - mine; 100*others > total {
		errs = append(errs, fmt.Errorf("other tasks polled %d of the %d packets polled (more than 1%%), by task id (-1: softirq context): %v", others, total, work))
	}
	return errors.Join(errs...)
}

// BusyLoopRan is check 4 on a backend that cannot show the effect of IRQ
// suspension, from the napi:napi_poll tracepoint: the epoll busy loop polled
// the server's NAPI (polls in task context with the epoll budget) at least
// once, whether or not it found packets.
func BusyLoopRan(polls int, work uint64, budget int) error {
	if polls > 0 {
		return nil
	}
	return fmt.Errorf("the epoll busy loop never polled the NAPI: the napi:napi_poll trace shows no poll in task context with "+
		"the epoll budget %d (%d packets): epoll busy polling did not run", budget, work)
}
