package verdict

import (
	"fmt"
	"strings"
)

// The sequential suspension rule (package documentation, "Suspension
// against its control"). A comparison adds interleaved pairs (one suspend, one control transfer)
// and looks at the measurements after each number of pairs in its schedule
// of Looks. At a look it passes if the exact rank-sum p of all the pairs so
// far is at most that look's Alpha and the effect is not a trace (the share
// conditions of Suspension); it fails at the last look, or earlier, from the
// second look on, where p exceeds FutilityP (the effect is clearly absent);
// otherwise it goes on to the next look.
//
// Why the false-pass bound holds whatever the distribution: where
// suspension has no effect the two arms are exchangeable, so at each look
// the exact rank-sum p is at most Alpha with probability at most Alpha,
// whatever the busy-polled counts look like and however the looks depend
// on each other; a pass needs one look to succeed, so by the union bound a
// comparison passes by chance in at most the sum of the looks' Alphas,
// SuspendAlpha (0.5 %). Stopping early to fail only removes passes.

// Look is one interim analysis of the sequential suspension rule: after
// Pairs pairs, pass if the rank-sum p is at most Alpha.
type Look struct {
	Pairs int
	Alpha float64
}

// SuspensionLooks is the schedule of the suspension comparison, whose Alphas
// add up to SuspendAlpha. The first look needs 6 pairs, whose smallest
// possible p, 1/924 = 0.00108 (every suspend transfer above every control),
// is below its Alpha: a clear effect decides in 12 transfers. The cap is
// 20 pairs, as many as the old fixed design's -busypoll.compare-pairs
// allowed.
var SuspensionLooks = []Look{{6, 0.0012}, {8, 0.0008}, {12, 0.001}, {16, 0.001}, {20, 0.001}}

// FutilityP: from the second look on, a comparison whose rank-sum p is above
// it stops and fails; with suspension working no recorded look came close.
const FutilityP = 0.5

// LooksUpTo is SuspensionLooks for a cap of maxPairs pairs: the looks before
// the cap, and a last look at the cap with what is left of SuspendAlpha.
func LooksUpTo(maxPairs int) []Look {
	var out []Look
	spent := 0.0
	for _, l := range SuspensionLooks {
		if l.Pairs >= maxPairs {
			break
		}
		out = append(out, l)
		spent += l.Alpha
	}
	return append(out, Look{Pairs: maxPairs, Alpha: SuspendAlpha - spent})
}

// Decision is what the sequential rule says after some pairs.
type Decision int

// The decisions of SuspensionSequential.
const (
	// Continue: add a pair and ask again.
	Continue Decision = iota
	// Pass: suspension made a measured difference.
	Pass
	// Fail: it did not, at the last look or clearly.
	Fail
)

// String names the decision: "continue", "pass" or "fail".
func (d Decision) String() string {
	return [...]string{"continue", "pass", "fail"}[d]
}

// SuspensionSequential applies the sequential suspension rule to ts, the
// transfers of one comparison so far, under the schedule looks (ascending
// Pairs): Continue unless the number of complete pairs is at a look, then
// the look's decision. Where it decides, the summary is for the log and,
// for Fail, the error says why.
func SuspensionSequential(ts []Transfer, looks []Look) (Decision, string, error) {
	pairs := min(Sum(ts, ArmSuspend).Transfers, Sum(ts, ArmControl).Transfers)
	k := -1
	for i, l := range looks {
		if l.Pairs == pairs {
			k = i
		}
	}
	if k < 0 {
		if pairs >= looks[len(looks)-1].Pairs {
			return Fail, "", fmt.Errorf("suspension comparison: %d pairs, past the last look at %d", pairs, looks[len(looks)-1].Pairs)
		}
		return Continue, "", nil
	}
	look := looks[k]
	summary, p, why := suspension(ts, look.Alpha)
	summary = fmt.Sprintf("%s (look %d of %d, %d pairs: pass at p ≤ %.4f)", summary, k+1, len(looks), pairs, look.Alpha)
	switch {
	case len(why) == 0:
		return Pass, summary, nil
	case k == len(looks)-1:
	case k > 0 && p > FutilityP:
		why = append(why, fmt.Sprintf("stopped at look %d of %d: p above %v, the effect is clearly absent", k+1, len(looks), FutilityP))
	default:
		return Continue, summary, nil
	}
	return Fail, summary, suspensionError(ts, why)
}

// ReplaySuspension applies the sequential rule to a recorded comparison the
// way the suite does, pair by pair in the recorded order: it returns the
// first decision other than Continue, the number of pairs it took and the
// rule's summary and error; Continue if the recording ends first.
func ReplaySuspension(ts []Transfer, looks []Look) (Decision, int, string, error) {
	var s, c int
	for i, t := range ts {
		switch t.Arm {
		case ArmSuspend:
			s++
		case ArmControl:
			c++
		default:
			continue
		}
		if s != c {
			continue
		}
		if d, summary, err := SuspensionSequential(ts[:i+1], looks); d != Continue {
			return d, s, summary, err
		}
	}
	return Continue, min(s, c), "", nil
}

// LooksString reads "6:0.0012 8:0.0008 ...", for the log.
func LooksString(looks []Look) string {
	var b strings.Builder
	for i, l := range looks {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%d:%.4g", l.Pairs, l.Alpha)
	}
	return b.String()
}
