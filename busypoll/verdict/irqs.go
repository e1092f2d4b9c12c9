package verdict

import (
	"fmt"
	"strings"
)

// ArmBaseline is the nic backend's third arm: no deferral and no suspension
// (defer-hard-irqs 0, gro-flush-timeout 0, irq-suspend-timeout 0), the
// interrupt rate that deferral must lower.
const ArmBaseline Arm = "baseline"

// The interrupt rules (package documentation, "Interrupts"), over the
// transfers of one comparison, on the receiving NAPI's interrupt line:
//
//   - deferral works: the control arm (defer-hard-irqs and
//     gro-flush-timeout on, no suspension) raised at most DeferralRatio
//     times the baseline's interrupts per received packet, and fewer by
//     more than chance (rank-sum p ≤ SuspendAlpha on the per-transfer
//     rates);
//   - suspension keeps them down: the suspend arm passes the same test
//     against the baseline, and did not raise clearly more than the control
//     (rank-sum p ≤ SuspendAlpha that it raised more fails). Fewer is what
//     suspension is for; whether it was is reported, not required: with
//     deferral on, a transfer raises about one interrupt (the first packet
//     after an idle NAPI), which suspension cannot remove (what virtio-net
//     raised in the VM is in testdata/README.md).
const DeferralRatio = 0.5

// irqTotal adds up the interrupts and rx packets of an arm.
type irqTotal struct {
	Total
	irqs           uint64
	perTransferPPM []uint64 // interrupts per million packets, per transfer
}

// irqSum adds up the interrupts and rx packets of arm a in ts.
func irqSum(ts []Transfer, a Arm) irqTotal {
	s := irqTotal{Total: Sum(ts, a)}
	for _, t := range ofArm(ts, a) {
		s.irqs += t.IRQs
		ppm := uint64(0)
		if t.RxPackets > 0 {
			ppm = t.IRQs * 1_000_000 / t.RxPackets
		}
		s.perTransferPPM = append(s.perTransferPPM, ppm)
	}
	return s
}

func (s irqTotal) rate() float64 { return share(s.irqs, s.RxPackets) }

// String sums the arm up for the log.
func (s irqTotal) String() string {
	return fmt.Sprintf("%d IRQs for %d rx packets in %d transfers (%.4f per packet)", s.irqs, s.RxPackets, s.Transfers, s.rate())
}

// Deferral checks that defer-hard-irqs and gro-flush-timeout lowered the
// receiving NAPI's interrupts per packet against the baseline.
func Deferral(ts []Transfer) (string, error) {
	return belowBaseline(ts, ArmControl, "IRQ deferral made no measured difference", "with defer-hard-irqs and gro-flush-timeout on")
}

// belowBaseline checks that arm a raised clearly fewer interrupts per packet
// than the baseline.
func belowBaseline(ts []Transfer, a Arm, failure, what string) (string, error) {
	b, c := irqSum(ts, ArmBaseline), irqSum(ts, a)
	p := RankSumP(b.perTransferPPM, c.perTransferPPM)
	summary := fmt.Sprintf("interrupts without deferral %v, %s %v, rank-sum p=%.5f", b, what, c, p)
	if b.Transfers == 0 || c.Transfers == 0 {
		return summary, fmt.Errorf("interrupt comparison needs transfers in both arms: %d baseline, %d %s", b.Transfers, c.Transfers, a)
	}
	var why []string
	if c.rate() > DeferralRatio*b.rate() {
		why = append(why, fmt.Sprintf("%.4f per packet is above %.1f times the baseline's (%.4f)", c.rate(), DeferralRatio, DeferralRatio*b.rate()))
	}
	if p > SuspendAlpha {
		why = append(why, fmt.Sprintf("the difference is within chance (rank-sum p=%.4f, the rule needs at most %v)", p, SuspendAlpha))
	}
	if len(why) == 0 {
		return summary, nil
	}
	return summary, fmt.Errorf("%s: %s, %v; with defer-hard-irqs 0, gro-flush-timeout 0 and irq-suspend-timeout 0 (the baseline), %v; %s",
		failure, what, c, b, strings.Join(why, "; "))
}

// SuspensionIRQs checks that IRQ suspension kept the interrupts as low as
// deferral does: clearly below the baseline, and not clearly above deferral
// alone. It says whether it raised fewer than deferral alone.
func SuspensionIRQs(ts []Transfer) (string, error) {
	base, err := belowBaseline(ts, ArmSuspend, "IRQ suspension did not keep interrupts down", "with suspension")
	s, c := irqSum(ts, ArmSuspend), irqSum(ts, ArmControl)
	more := RankSumP(s.perTransferPPM, c.perTransferPPM)
	fewer := RankSumP(c.perTransferPPM, s.perTransferPPM)
	verdict := "not clearly fewer"
	if fewer <= SuspendAlpha && s.rate() < c.rate() {
		verdict = "fewer"
	}
	summary := fmt.Sprintf("%s; with suspension %.4f per packet, deferral alone %v: %s (rank-sum p=%.5f)", base, s.rate(), c, verdict, fewer)
	if err != nil {
		return summary, err
	}
	if c.Transfers == 0 {
		return summary, fmt.Errorf("suspension comparison needs control transfers")
	}
	if more <= SuspendAlpha && s.rate() > c.rate() {
		return summary, fmt.Errorf("IRQ suspension raised clearly more interrupts than deferral alone: %v against %v (rank-sum p=%.4f)", s, c, more)
	}
	return summary, nil
}
