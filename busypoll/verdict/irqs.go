package verdict

import (
	"fmt"
	"strings"
)

// ArmBaseline is the nic backend's third arm: no deferral and no suspension
// (defer-hard-irqs 0, gro-flush-timeout 0, irq-suspend-timeout 0), the
// interrupt rate that deferral must lower.
const ArmBaseline Arm = "baseline"

// The interrupt rules (README, "The nic backend"), over the transfers of one
// comparison, on the receiving NAPI's interrupt line:
//
//   - deferral works: the control arm (defer-hard-irqs and
//     gro-flush-timeout on, no suspension) raised at most DeferralRatio
//     times the baseline's interrupts per received packet, and fewer by
//     more than chance (rank-sum p ≤ SuspendAlpha on the per-transfer
//     rates);
//   - suspension does not undo it: the suspend arm raised at most
//     SuspensionIRQSlack times the control's interrupts per packet. Fewer
//     is what suspension is for; whether it was is reported, not required,
//     since a device may show no difference.
const (
	DeferralRatio      = 0.5
	SuspensionIRQSlack = 1.25
)

// irqTotal adds up the interrupts and rx packets of an arm.
type irqTotal struct {
	transfers      int
	irqs, packets  uint64
	perTransferPPM []uint64 // interrupts per million packets, per transfer
}

func irqSum(ts []Transfer, a Arm) irqTotal {
	var s irqTotal
	for _, t := range ts {
		if t.Arm != a {
			continue
		}
		s.transfers++
		s.irqs += t.IRQs
		s.packets += t.RxPackets
		ppm := uint64(0)
		if t.RxPackets > 0 {
			ppm = t.IRQs * 1_000_000 / t.RxPackets
		}
		s.perTransferPPM = append(s.perTransferPPM, ppm)
	}
	return s
}

func (s irqTotal) rate() float64 { return share(s.irqs, s.packets) }

func (s irqTotal) String() string {
	return fmt.Sprintf("%d IRQs for %d rx packets in %d transfers (%.4f per packet)", s.irqs, s.packets, s.transfers, s.rate())
}

// Deferral checks that defer-hard-irqs and gro-flush-timeout lowered the
// receiving NAPI's interrupts per packet against the baseline.
func Deferral(ts []Transfer) (string, error) {
	b, c := irqSum(ts, ArmBaseline), irqSum(ts, ArmControl)
	p := RankSumP(b.perTransferPPM, c.perTransferPPM)
	summary := fmt.Sprintf("interrupts without deferral %v, with deferral %v, rank-sum p=%.5f", b, c, p)
	if b.transfers == 0 || c.transfers == 0 {
		return summary, fmt.Errorf("deferral comparison needs transfers in both arms: %d baseline, %d with deferral", b.transfers, c.transfers)
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
	return summary, fmt.Errorf("IRQ deferral made no measured difference: with defer-hard-irqs and gro-flush-timeout on, %v; "+
		"with both 0 (the baseline), %v; %s", c, b, strings.Join(why, "; "))
}

// SuspensionIRQs checks that IRQ suspension raised no more interrupts per
// packet than deferral alone (within SuspensionIRQSlack), and says whether
// it raised fewer.
func SuspensionIRQs(ts []Transfer) (string, error) {
	s, c := irqSum(ts, ArmSuspend), irqSum(ts, ArmControl)
	p := RankSumP(c.perTransferPPM, s.perTransferPPM)
	fewer := "not clearly fewer"
	if p <= SuspendAlpha && s.rate() < c.rate() {
		fewer = "fewer"
	}
	summary := fmt.Sprintf("interrupts with suspension %v, with deferral alone %v: %s (rank-sum p=%.5f)", s, c, fewer, p)
	if s.transfers == 0 || c.transfers == 0 {
		return summary, fmt.Errorf("suspension comparison needs transfers in both arms: %d with suspension, %d control", s.transfers, c.transfers)
	}
	if s.rate() > SuspensionIRQSlack*c.rate() {
		return summary, fmt.Errorf("IRQ suspension raised more interrupts than deferral alone: %v against %v; the rule allows at most %.2f times (%.4f per packet)",
			s, c, SuspensionIRQSlack, SuspensionIRQSlack*c.rate())
	}
	return summary, nil
}
