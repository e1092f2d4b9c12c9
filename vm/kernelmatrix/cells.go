package main

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
	"github.com/netdev-go/busypolltest/napi"
)

// Verdict is a cell's outcome.
type Verdict string

// The outcomes of a cell.
const (
	Pass Verdict = "PASS"
	Skip Verdict = "SKIP"
	Fail Verdict = "FAIL"
	// None: nothing ran (a kernel that cannot be fetched).
	None Verdict = ""
)

// Cell is one entry of the table: a verdict and, for SKIP and FAIL, a
// one-line reason.
type Cell struct {
	Verdict Verdict
	Reason  string
}

// String renders the cell as the table shows it: "PASS", "SKIP: reason".
func (c Cell) String() string {
	switch {
	case c.Verdict == None:
		return "—"
	case c.Reason == "":
		return string(c.Verdict)
	default:
		return string(c.Verdict) + ": " + c.Reason
	}
}

// sinceRE finds where a message says which Linux version brought what is
// missing: "needs Linux 6.13" (napi.Features.Missing, the suite's gates),
// "arrived in Linux 6.9" (netdevsim's link_device).
var sinceRE = regexp.MustCompile(`(?:needs|arrived in|came in) Linux (\d+\.\d+)`)

// ageCheck turns a SKIP whose reason says the kernel is too old into a FAIL
// when the kernel release is at or above that version: the feature should be
// there, so its absence is a regression or a broken build, not an old kernel.
func ageCheck(c Cell, release string) Cell {
	if c.Verdict != Skip {
		return c
	}
	for _, m := range sinceRE.FindAllStringSubmatch(c.Reason, -1) {
		if kernelfeature.AtLeast(release, m[1]) {
			return Cell{Fail, fmt.Sprintf("skipped for a feature of Linux %s, which this kernel should have: %s", m[1], c.Reason)}
		}
	}
	return c
}

// shortReason makes a skip or failure message fit a table cell: the
// "kernel RELEASE " prefix and a trailing "(the probe's error)" go, which
// the release column and the VM's log already say; of a list of missing
// features ("...; ...") the first stays. Where the message said which Linux
// version brings what is missing, the short one still says it (ageCheck and
// netdevsimCheck read it).
func shortReason(s, release string) string {
	full := s
	s = strings.TrimPrefix(s, "kernel "+release+" ")
	if strings.HasSuffix(s, ")") {
		if i := matchingOpen(s, len(s)-1); i > 0 && s[i-1] == ' ' {
			s = s[:i-1]
		}
	}
	depth := 0
	for i := 0; i < len(s)-1; i++ {
		switch s[i] {
		case '(':
			depth++
		case ')':
			depth--
		case ';':
			if depth == 0 && s[i+1] == ' ' {
				s = s[:i] + "; …"
				i = len(s)
			}
		}
	}
	if n := 140; len(s) > n {
		for !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n] + "…"
	}
	if m := sinceRE.FindString(full); m != "" && !sinceRE.MatchString(s) {
		s += " [" + m + "]"
	}
	return s
}

// matchingOpen is the index of the "(" that the ")" at s[end] closes, or -1.
func matchingOpen(s string, end int) int {
	depth := 0
	for i := end; i >= 0; i-- {
		switch s[i] {
		case ')':
			depth++
		case '(':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// Scenarios are TestBusyPoll's scenarios, in the table's column order.
var Scenarios = []string{"plain", "suspend", "napi_threaded", "link_flap"}

// Backends are TestBusyPoll's backends that the matrix runs.
var Backends = []string{"veth", "netdevsim"}

// scenarioCell is the verdict of TestBusyPoll/BACKEND/SCENARIO in job j (the
// TestBusyPoll job) on a kernel of release.
func scenarioCell(j *Job, backend, scenario, release string) Cell {
	if j == nil {
		return Cell{Fail, "the TestBusyPoll job did not run (VM output has no such job)"}
	}
	name := "TestBusyPoll/" + backend + "/" + scenario
	if t := j.Test(name); t != nil {
		return testCell(t, j, release)
	}
	// A parent that skipped or failed before the subtest started speaks for
	// it: an old kernel skips TestBusyPoll/netdevsim as a whole.
	for _, parent := range []string{"TestBusyPoll/" + backend, "TestBusyPoll"} {
		t := j.Test(parent)
		switch {
		case t == nil || t.Result == "":
			continue
		case t.Result == "PASS":
			return Cell{Fail, fmt.Sprintf("%s passed without running %s/%s", parent, backend, scenario)}
		default:
			return testCell(t, j, release)
		}
	}
	return Cell{Fail, "no result: " + jobEnd(j)}
}

// testCell is one test's verdict.
func testCell(t *Test, j *Job, release string) Cell {
	switch t.Result {
	case "PASS":
		return Cell{Verdict: Pass}
	case "SKIP":
		return ageCheck(Cell{Skip, shortReason(t.Reason(), release)}, release)
	case "FAIL":
		return Cell{Fail, firstFailure(t, j, release)}
	default:
		return Cell{Fail, "started but reported no result: " + jobEnd(j)}
	}
}

// firstFailure is the reason of the first failed test at or below t (the
// innermost failure says most), named by its path below t.
func firstFailure(t *Test, j *Job, release string) string {
	for _, u := range j.Tests {
		if u.Result != "FAIL" || !strings.HasPrefix(u.Name, t.Name+"/") {
			continue
		}
		if hasFailedChild(u, j) {
			continue
		}
		return strings.TrimPrefix(u.Name, t.Name+"/") + ": " + shortReason(u.Reason(), release)
	}
	return shortReason(t.Reason(), release)
}

func hasFailedChild(t *Test, j *Job) bool {
	for _, u := range j.Tests {
		if u.Result == "FAIL" && strings.HasPrefix(u.Name, t.Name+"/") {
			return true
		}
	}
	return false
}

// jobEnd says how a job ended, for a test without a result.
func jobEnd(j *Job) string {
	switch j.Status {
	case "":
		return "the VM stopped before the job ended"
	case "ok":
		return "the job ended ok"
	default:
		return strings.TrimSpace("the job failed " + j.Detail)
	}
}

// Package is one test package summarised in the table: its job's name and
// the prefix of its kernel tests' names.
type Package struct {
	Job, KernelTests string
	// Backend is the table row the summary goes in: the backend the
	// package's kernel tests use.
	Backend string
}

// Packages are the packages whose kernel tests the matrix summarises: napi's
// run on a veth pair, netdevsim's on netdevsim.
var Packages = []Package{
	{Job: "napi", KernelTests: "TestKernel", Backend: "veth"},
	{Job: "netdevsim", KernelTests: "TestNetdevsimKernel", Backend: "netdevsim"},
}

// asRootSkips are skips that every run as root has: tests that only a
// normal user can do. They say nothing about the kernel.
var asRootSkips = regexp.MustCompile(`^needs a non-root user`)

// packageCell summarises a package's tests: FAIL if any test or the job
// failed (or a skip is a regression by ageCheck), SKIP if none of its
// kernel tests ran, else PASS, naming the kernel subtests that skipped.
func packageCell(j *Job, p Package, release string) Cell {
	if j == nil {
		return Cell{Fail, "the " + p.Job + " job did not run (VM output has no such job)"}
	}
	var failed []string
	for _, t := range j.Tests {
		if t.Result == "FAIL" && !hasFailedChild(t, j) {
			failed = append(failed, t.Name+": "+shortReason(t.Reason(), release))
		} else if t.Result == "" {
			failed = append(failed, t.Name+": no result")
		}
	}
	if len(failed) > 0 {
		more := ""
		if len(failed) > 1 {
			more = fmt.Sprintf(" (and %d more)", len(failed)-1)
		}
		return Cell{Fail, failed[0] + more}
	}
	if j.Status != "ok" {
		return Cell{Fail, jobEnd(j)}
	}
	ran, top := 0, 0
	var skipped []string
	for _, t := range j.Tests {
		if !strings.HasPrefix(t.Name, p.KernelTests) {
			continue
		}
		if t.Result == "SKIP" {
			reason := shortReason(t.Reason(), release)
			if asRootSkips.MatchString(reason) {
				continue
			}
			if c := ageCheck(Cell{Skip, reason}, release); c.Verdict == Fail {
				return Cell{Fail, t.Name + " " + c.Reason}
			}
			if !strings.Contains(t.Name, "/") {
				top++
				skipped = append(skipped, t.Name+": "+reason)
			} else {
				skipped = append(skipped, t.Name)
			}
			continue
		}
		if !strings.Contains(t.Name, "/") {
			top++
			ran++
		}
	}
	switch {
	case top == 0:
		return Cell{Fail, "no " + p.KernelTests + "* test in the " + p.Job + " job"}
	case ran == 0:
		return Cell{Skip, skipped[0]}
	case len(skipped) > 0:
		sort.Strings(skipped)
		return Cell{Pass, "skipped " + strings.Join(skipped, ", ")}
	default:
		return Cell{Verdict: Pass}
	}
}

// napiSetRE finds the suite's log line of what the kernel's napi-set takes.
var napiSetRE = regexp.MustCompile(`^kernel napi-set: (.*)$`)

// NAPISet returns what TestBusyPoll logged of the kernel's napi-set, e.g.
// "napi-set: defer-hard-irqs|gro-flush-timeout|irq-suspend-timeout", or "".
func NAPISet(j *Job) string {
	t := j.Test("TestBusyPoll")
	if t == nil {
		return ""
	}
	for _, l := range t.Log {
		if m := napiSetRE.FindStringSubmatch(l); m != nil {
			return m[1]
		}
	}
	return ""
}

// Surprises compares what a kernel's napi-set takes (NAPISet's text) with
// the Linux versions the suite's gates give (napi.Feature.Since): a feature
// present on a kernel older than its gate, or missing on a newer one.
func Surprises(release, napiSet string) []string {
	if napiSet == "" {
		return nil
	}
	has := map[napi.Feature]bool{}
	if napiSet != "no napi-set" {
		has[napi.FeatureNAPISet] = true
		attrs, threaded, _ := strings.Cut(strings.TrimPrefix(napiSet, "napi-set: "), " (")
		for _, a := range strings.Split(attrs, "|") {
			switch a {
			case "defer-hard-irqs":
				has[napi.FeatureDeferHardIRQs] = true
			case "gro-flush-timeout":
				has[napi.FeatureGROFlushTimeout] = true
			case "irq-suspend-timeout":
				has[napi.FeatureIRQSuspendTimeout] = true
			case "threaded":
				has[napi.FeatureThreaded] = true
			}
		}
		if strings.Contains(threaded, "max busy-poll") {
			has[napi.FeatureThreadedBusyPoll] = true
		}
	}
	var out []string
	for _, f := range []napi.Feature{napi.FeatureNAPISet, napi.FeatureDeferHardIRQs, napi.FeatureGROFlushTimeout,
		napi.FeatureIRQSuspendTimeout, napi.FeatureThreaded, napi.FeatureThreadedBusyPoll} {
		due := kernelfeature.AtLeast(release, f.Since())
		switch {
		case has[f] && !due:
			out = append(out, fmt.Sprintf("%s is there before its gate (Linux %s)", f, f.Since()))
		case !has[f] && due:
			out = append(out, fmt.Sprintf("%s is missing although its gate is Linux %s", f, f.Since()))
		}
	}
	return out
}
