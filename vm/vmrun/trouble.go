package main

import (
	"regexp"
	"strings"
)

// A kernelReport is a report of kernel trouble seen on the console: a
// WARNING, a BUG (KASAN and KFENCE reports are BUGs too), an Oops, a lockdep
// or RCU report, a hung task, a UBSAN report, a panic.
type kernelReport struct {
	Kind  string   // what matched, e.g. "WARNING", "RCU stall"
	Lines []string // from its first line to its end marker, or at most reportLines
	Ended bool     // its end marker was seen (else it was cut after reportLines)
}

// First is the line that identifies the report (the "WARNING: CPU: ..." line
// rather than the "cut here" line that comes before it).
func (r kernelReport) First() string {
	for _, l := range r.Lines {
		if k, _ := reportStart(stripTimestamp(l)); k != "" && k != "cut here" && k != "call trace" {
			return l
		}
	}
	for _, l := range r.Lines {
		if _, ok := reportStart(stripTimestamp(l)); ok {
			return l
		}
	}
	return r.Lines[0]
}

// Limits of what a troubleScanner keeps.
const (
	reportLines = 40 // lines per report when no end marker comes
	maxReports  = 8  // reports kept in full; later ones are only counted
	contextKept = 8  // lines before a bare "Call Trace:" that belong to it
)

// consoleTimestamp is the prefix of a console line with CONFIG_PRINTK_TIME
// ("[    1.234567] "), optionally followed by a caller id
// (CONFIG_PRINTK_CALLER, "[    T1] ").
var consoleTimestamp = regexp.MustCompile(`^\[\s*\d+\.\d+\]\s?(\[\s*[TC]\d+\]\s?)?`)

func stripTimestamp(line string) string {
	return consoleTimestamp.ReplaceAllString(line, "")
}

// reportStarts are the first lines of the kernel's reports, as the kernel
// prints them (lib/bug.c, kernel/panic.c, arch/x86/kernel/dumpstack.c,
// kernel/locking/lockdep.c, kernel/rcu/tree_stall.h, kernel/hung_task.c,
// mm/kasan/report.c, lib/ubsan.c), matched at the start of the line after
// the timestamp. A word such as WARNING in the middle of an ordinary message
// ("RETBleed: WARNING: ...", "vminit: ...") is not a report.
var reportStarts = []struct {
	kind string
	re   *regexp.Regexp
}{
	{"cut here", regexp.MustCompile(`^-+\[ cut here \]-+$`)},
	{"panic", regexp.MustCompile(`^Kernel panic - not syncing`)},
	// lockdep: "WARNING: possible circular locking dependency detected",
	// "WARNING: possible recursive locking detected", "WARNING: inconsistent
	// lock state", "WARNING: suspicious RCU usage", ...
	{"lockdep", regexp.MustCompile(`^WARNING: (possible (circular|recursive) locking|inconsistent lock state|suspicious RCU usage|bad unlock balance|held lock freed|lock held|possible irq lock inversion|HARDIRQ-safe|SOFTIRQ-safe|nested lock)`)},
	// WARN(): "WARNING: CPU: 0 PID: 1 at net/core/dev.c:123 func+0x12/0x34".
	{"WARNING", regexp.MustCompile(`^WARNING: `)},
	{"KASAN", regexp.MustCompile(`^BUG: KASAN: `)},
	// "BUG: kernel NULL pointer dereference", "BUG: unable to handle page
	// fault", "BUG: sleeping function called from invalid context", "BUG:
	// soft lockup", "BUG: workqueue lockup", "BUG: KFENCE: ...".
	{"BUG", regexp.MustCompile(`^BUG: `)},
	{"BUG", regexp.MustCompile(`^kernel BUG at \S+`)},
	// "Oops: 0002 [#1] PREEMPT SMP", "Oops: general protection fault, ...".
	{"Oops", regexp.MustCompile(`^Oops: `)},
	{"Oops", regexp.MustCompile(`^(general protection fault|stack segment|double fault|invalid opcode)(:|,| \d)`)},
	// "rcu: INFO: rcu_sched detected stalls on CPUs/tasks:", "rcu: INFO:
	// rcu_preempt self-detected stall on CPU", "... detected expedited stalls".
	{"RCU stall", regexp.MustCompile(`^(rcu: )?INFO: rcu_\w+ (self-)?detected (expedited )?stalls?`)},
	{"hung task", regexp.MustCompile(`^INFO: task \S.* blocked for more than \d+ seconds`)},
	{"UBSAN", regexp.MustCompile(`^UBSAN: `)},
	// A stack dump on its own (dump_stack(), a page allocation failure): the
	// lines before it say why.
	{"call trace", regexp.MustCompile(`^Call Trace:$`)},
}

// reportEnd is the kernel's end marker of a WARNING, BUG, Oops or panic:
// "---[ end trace 0000000000000000 ]---", "---[ end Kernel panic - not syncing: ... ]---".
var reportEnd = regexp.MustCompile(`^-+\[ end (trace|Kernel panic)`)

// reportStart returns the kind of report that line (without its timestamp)
// starts, or "".
func reportStart(line string) (kind string, ok bool) {
	for _, s := range reportStarts {
		if s.re.MatchString(line) {
			return s.kind, true
		}
	}
	return "", false
}

// A troubleScanner reads the kernel console line by line and collects the
// reports of kernel trouble in it. Make it with newTroubleScanner.
type troubleScanner struct {
	reports []kernelReport
	more    int // reports after the first maxReports
	cur     *kernelReport
	recent  []string // the last contextKept lines outside a report
	// sinceCut counts lines since a report was cut at reportLines (-1:
	// none was). The rest of a long report (lockdep, KASAN, an RCU stall
	// list the CPUs' stacks) holds more stack dumps, which are not new reports.
	sinceCut int
}

func newTroubleScanner() *troubleScanner { return &troubleScanner{sinceCut: -1} }

// Line takes one console line (without its line end).
func (s *troubleScanner) Line(line string) {
	line = strings.TrimRight(line, "\r")
	bare := stripTimestamp(line)
	if s.cur != nil {
		kind, starts := reportStart(bare)
		switch {
		case starts && s.cur.Kind == "cut here" && kind != "cut here" && kind != "call trace":
			// The line after "cut here" says what it is.
			s.cur.Kind = kind
		case starts && kind == "panic" && s.cur.Kind != "panic":
			// A panic ends the run: it gets its own report.
			s.finish(false)
			s.start(kind, line)
			return
		}
		s.cur.Lines = append(s.cur.Lines, line)
		if reportEnd.MatchString(bare) {
			s.finish(true)
		} else if len(s.cur.Lines) >= reportLines {
			s.finish(false)
		}
		return
	}
	if s.sinceCut >= 0 {
		s.sinceCut++
	}
	if kind, starts := reportStart(bare); starts && !(kind == "call trace" && s.sinceCut >= 0 && s.sinceCut < 200) {
		s.start(kind, line)
		return
	}
	s.recent = append(s.recent, line)
	if len(s.recent) > contextKept {
		s.recent = s.recent[1:]
	}
}

func (s *troubleScanner) start(kind, line string) {
	if len(s.reports) >= maxReports {
		s.more++
	}
	s.cur = &kernelReport{Kind: kind}
	if kind == "call trace" {
		s.cur.Lines = append(s.cur.Lines, s.recent...)
	} else if n := len(s.recent); n > 0 && strings.HasPrefix(stripTimestamp(s.recent[n-1]), "=====") {
		// lockdep and KASAN reports start with a line of '='.
		s.cur.Lines = append(s.cur.Lines, s.recent[n-1])
	}
	s.recent = s.recent[:0]
	s.cur.Lines = append(s.cur.Lines, line)
}

func (s *troubleScanner) finish(ended bool) {
	s.cur.Ended = ended
	s.sinceCut = -1
	if !ended {
		s.sinceCut = 0
	}
	if len(s.reports) < maxReports {
		s.reports = append(s.reports, *s.cur)
	}
	s.cur = nil
}

// Reports returns the reports seen so far, the one still being read
// included, and how many more there were beyond those kept.
func (s *troubleScanner) Reports() ([]kernelReport, int) {
	r := append([]kernelReport(nil), s.reports...)
	if s.cur != nil && len(r) < maxReports {
		r = append(r, *s.cur)
	}
	return r, s.more
}
