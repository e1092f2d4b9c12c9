// Package verdict holds the rules by which TestBusyPoll decides, from
// measurements alone, whether a run proved what it claims: that the stream
// arrived intact through the configured NAPI, that busy polling came from the
// epoll parameters and nothing else, and that IRQ suspension made a measured
// difference against a control.
//
// The rules take plain measurements (Transfer records, counters, CPU times),
// so that they can be fed the measurements of broken cases (suspension made
// ineffective, busy polling from a sysctl, a wrong NAPI id, a short stream)
// and shown to fail; the records in the repository's testdata/ come from real
// runs, and testdata/README.md gives what they measured. Each error says
// what was compared, the numbers and the limit.
//
// # Where the busy-polled count comes from
//
// The count is TcpExt BusyPollRxPackets of the receiving namespace, which
// the kernel raises in exactly one place, __napi_busy_loop()
// (net/core/dev.c), for the packets a busy poll delivered. Its denominator
// is the server device's rx_packets (before GRO).
//
// # Suspension against its control
//
// On veth the effect of suspension is visible: veth_poll() re-enables its
// rx notification only when napi_complete_done() returns true, which it
// does not while the NAPI is deferred or its IRQs are suspended; packets
// then wait in the ring for the application's busy poll. So a comparison
// interleaves pairs of transfers on the same link and NAPI, one with the
// scenario's settings (ArmSuspend) and one with irq-suspend-timeout 0
// (ArmControl), in alternating order.
//
// SuspensionSequential is sequential: after each number of pairs in its
// schedule (LooksUpTo: the looks) it judges all pairs so far. It passes
// where
//
//  1. an exact one-sided Wilcoxon rank-sum test of the per-transfer
//     busy-polled counts (ties share their mean rank; every split of the
//     transfers into two groups of the arms' sizes is counted) gives a p at
//     most that look's Alpha, and
//  2. the effect is not a trace: the suspend arm's busy-polled share is at
//     least MinSuspendShare and at least SuspendFactor times the
//     control's.
//
// Otherwise it goes on, except that it fails at the last look, and from the
// second look on where p exceeds FutilityP (the effect is clearly absent).
// Ranks, not sums: one lucky control transfer (a single budget-sized busy
// poll) can outweigh a suspend arm that busy-polled in every transfer.
//
// Why a false pass stays rare whatever the distribution: where suspension
// has no effect the two arms are exchangeable, so at each look the exact
// rank-sum p is at most its Alpha with probability at most that Alpha,
// however the busy-polled counts look and however the looks depend on each
// other. A pass needs one look to succeed, so by the union bound (alpha
// spending in its simplest form) a comparison passes by chance with
// probability at most the sum of the looks' Alphas, SuspendAlpha; stopping
// early to fail only removes passes. A lower cap (-busypoll.compare-pairs)
// keeps the earlier looks' Alphas and gives the last look what is left.
// With fewer than 5 transfers per arm the smallest possible p is above
// SuspendAlpha, so the rule cannot pass.
//
// Under emulation (the project's QEMU VM) the effect of suspension on busy
// polling is not a verdict: TCG distorts the timing it depends on (see
// testdata/README.md for what was measured there). The suite then checks
// only that the epoll busy loop ran (BusyLoopRan), and the host run tests
// the effect.
//
// # Busy polling at all
//
// Where a device cannot show the effect (netdevsim: see busypoll/drvenv),
// BusyLoopRan checks that the napi:napi_poll trace shows the epoll busy
// loop polling the server's NAPI in task context with the epoll budget;
// without tracing, BusyPolledAtAll checks that BusyPollRxPackets grew.
//
// # Negative control
//
// NegativeControl takes one transfer with epoll busy polling off (prefer
// 0, usecs 0, SO_BUSY_POLL 0): it must busy-poll nothing, or busy polling
// comes from elsewhere and no busy-poll count of the run can be credited to
// EPIOCSPARAMS. The NAPI holds packets for a while after each poll during
// that transfer, so that a busy poll from anywhere else finds them.
// net.core.busy_read is neutralised by the receiver's SO_BUSY_POLL 0;
// net.core.busy_poll cannot be (it makes every epoll_wait busy-poll, in
// the initial namespace only), so Credited makes a run on such a host
// skip after checks 1 to 3, never pass.
//
// # Interrupts
//
// Where the device has interrupt lines (the nic backend), a third arm,
// ArmBaseline (no deferral, no suspension), gives two more rules over the
// per-transfer interrupts per received packet of the receiving NAPI's
// line:
//
//   - Deferral: with defer-hard-irqs and gro-flush-timeout on (the control
//     arm), at most DeferralRatio times the baseline's rate, and fewer by
//     more than chance (rank-sum p ≤ SuspendAlpha);
//   - SuspensionIRQs: the suspend arm passes the same test against the
//     baseline, and must not have raised clearly more than the control
//     (rank-sum p ≤ SuspendAlpha that it raised more fails). Fewer is what
//     suspension is for; whether it was is reported, not required, since
//     with deferral on a transfer raises about one interrupt, for the first
//     packet after an idle NAPI, which suspension cannot remove.
//
// # The NAPI thread
//
// In napi_threaded, BusyPollRxPackets stays 0 by design (the NAPI's kernel
// thread polls, not epoll). ThreadBusyPolls requires the thread to have
// used CPU in the transfer and, with no traffic at all, to keep spinning
// for a given share of a CPU (a plain threaded NAPI sleeps); ThreadPolled
// requires the napi:napi_poll trace to show that thread polling the
// device's packets, and other tasks next to none.
package verdict
