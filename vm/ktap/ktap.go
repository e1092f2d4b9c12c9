package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Exit statuses, as kselftest defines them (KSFT_PASS, KSFT_FAIL and
// KSFT_SKIP in tools/testing/selftests/kselftest.h); the kselftest runner
// (tools/testing/selftests/kselftest/runner.sh) reports exit 4 as "# SKIP"
// and any other non-zero exit as a failure.
const (
	exitPass = 0
	exitFail = 1
	exitSkip = 4
)

// event is one test2json event (go doc cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

// result is what a test came to.
type result int

const (
	running result = iota // no end event: the binary died or timed out under it
	passed
	failed
	skipped
)

// test is one Go test or subtest.
type test struct {
	name     string // the last element of its Go name
	result   result
	output   []string // its own output lines, without go test's framing lines
	children []*test
}

// run collects the tests of one package's event stream.
type run struct {
	top    []*test
	byName map[string]*test
	pkgOut []string // output of no test (the package's summary, a build error)
	pkgEnd string   // the package's end action: pass, fail, skip or ""
}

// read reads test2json events from r until EOF. A line that is no JSON
// event (a build error that go test printed as text) counts as package
// output.
func read(r io.Reader) (*run, error) {
	ru := &run{byName: map[string]*test{}}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	partial := map[string]string{} // a test's output line not yet ended by "\n"
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &e) != nil || e.Action == "" {
			ru.pkgOut = append(ru.pkgOut, string(line))
			continue
		}
		if e.Test == "" {
			switch e.Action {
			case "output", "build-output":
				ru.pkgOut = append(ru.pkgOut, splitOutput(partial, "", e.Output)...)
			case "pass", "fail", "skip", "build-fail":
				ru.pkgEnd = e.Action
			}
			continue
		}
		t := ru.get(e.Test)
		switch e.Action {
		case "output":
			for _, l := range splitOutput(partial, e.Test, e.Output) {
				if !framing(l) {
					t.output = append(t.output, l)
				}
			}
		case "pass":
			t.result = passed
		case "fail":
			t.result = failed
		case "skip":
			t.result = skipped
		}
	}
	for name, rest := range partial {
		if name == "" {
			ru.pkgOut = append(ru.pkgOut, rest)
		} else if !framing(rest) {
			t := ru.get(name)
			t.output = append(t.output, rest)
		}
	}
	return ru, sc.Err()
}

// splitOutput returns the complete lines of out (an event's output, which
// need not end a line), keeping an unfinished line for the next event of
// the same test.
func splitOutput(partial map[string]string, name, out string) []string {
	out = partial[name] + out
	delete(partial, name)
	lines := strings.SplitAfter(out, "\n")
	if last := lines[len(lines)-1]; !strings.HasSuffix(last, "\n") {
		if last != "" {
			partial[name] = last
		}
		lines = lines[:len(lines)-1]
	}
	for i, l := range lines {
		lines[i] = strings.TrimSuffix(l, "\n")
	}
	return lines
}

// framing tells go test's own lines about a test (=== RUN, --- PASS: ...),
// which the KTAP result lines replace.
func framing(l string) bool {
	s := strings.TrimLeft(l, " ")
	for _, p := range []string{"=== RUN ", "=== PAUSE ", "=== CONT ", "=== NAME ", "--- PASS: ", "--- FAIL: ", "--- SKIP: "} {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// get returns the test of that full Go name, making it (and its parents)
// where it is new, in the order they first appear.
func (ru *run) get(full string) *test {
	if t, ok := ru.byName[full]; ok {
		return t
	}
	t := &test{name: full}
	if i := strings.LastIndexByte(full, '/'); i >= 0 {
		// A subtest's name may hold a slash of its own only as part of
		// its parent's: Go escapes none, so the longest known parent wins.
		parent := ru.get(full[:i])
		t.name = full[i+1:]
		parent.children = append(parent.children, t)
	} else {
		ru.top = append(ru.top, t)
	}
	ru.byName[full] = t
	return t
}

// counts are the leaf results of a run and whether any result at any level
// was "not ok", from which its exit status follows.
type counts struct {
	pass, fail, skip int
	notOK            bool
}

// status is the kselftest exit status: 1 on any failure, 0 when something
// passed, 4 when everything skipped (or nothing ran at all: a run with no
// result is a failure, see write).
func (c counts) status() int {
	switch {
	case c.notOK || c.fail > 0:
		return exitFail
	case c.pass > 0:
		return exitPass
	default:
		return exitSkip
	}
}

// write prints ru as KTAP on w and returns the exit status. cmdErr, when
// not empty, says how the command that produced the events ended badly
// (it failed with no failed test, e.g. a crash before the first test).
func write(w io.Writer, ru *run, cmdErr string) int {
	var c counts
	top := ru.top
	failedTest := false
	for _, t := range top {
		if effective(t) == failed || effective(t) == running {
			failedTest = true
		}
	}
	var pkgFail *test
	if !failedTest && (ru.pkgEnd == "fail" || ru.pkgEnd == "build-fail" || cmdErr != "" || len(top) == 0) {
		// A failure no test took: report it as a result of its own.
		pkgFail = &test{name: "go-test", result: failed, output: ru.pkgOut}
		if cmdErr != "" {
			pkgFail.output = append(pkgFail.output, cmdErr)
		}
		if len(top) == 0 && ru.pkgEnd != "fail" && cmdErr == "" {
			pkgFail.output = append(pkgFail.output, "no test ran")
		}
		top = append(top[:len(top):len(top)], pkgFail)
	}
	// TAP version 13 at the top, as kselftest's own C helpers print it
	// (ksft_print_header in kselftest.h) and as NIPA's parser expects after
	// the runner's "# " prefix; nested levels say KTAP version 1
	// (Documentation/dev-tools/ktap.rst accepts both).
	fmt.Fprintln(w, "TAP version 13")
	writeLevel(w, top, "", &c)
	if pkgFail == nil && ru.pkgEnd == "fail" {
		// Every failure is already a test's; the package's summary lines
		// ("FAIL", the exit status) go out as diagnostics.
		writeDiag(w, "", ru.pkgOut)
	}
	fmt.Fprintf(w, "# totals: pass:%d fail:%d skip:%d\n", c.pass, c.fail, c.skip)
	return c.status()
}

// writeLevel prints the plan and results of the tests of one level.
func writeLevel(w io.Writer, tests []*test, indent string, c *counts) {
	fmt.Fprintf(w, "%s1..%d\n", indent, len(tests))
	for i, t := range tests {
		if len(t.children) > 0 {
			fmt.Fprintf(w, "%s  KTAP version 1\n", indent)
			writeLevel(w, t.children, indent+"  ", c)
		}
		res := effective(t)
		if res == failed || res == running {
			c.notOK = true
		}
		if len(t.children) == 0 {
			switch res {
			case passed:
				c.pass++
			case skipped:
				c.skip++
			default:
				c.fail++
			}
		}
		desc := strings.ReplaceAll(t.name, "#", "_") // '#' starts a directive
		num := i + 1
		switch res {
		case passed:
			fmt.Fprintf(w, "%sok %d %s\n", indent, num, desc)
		case skipped:
			reason, diag := skipReason(t)
			writeDiag(w, indent, diag)
			fmt.Fprintf(w, "%sok %d %s # SKIP %s\n", indent, num, desc, reason)
		case failed:
			writeDiag(w, indent, t.output)
			fmt.Fprintf(w, "%snot ok %d %s\n", indent, num, desc)
		case running:
			writeDiag(w, indent, t.output)
			directive := ""
			if why := timedOut(t); why != "" {
				directive = " # TIMEOUT " + why
			} else if len(t.children) == 0 || allEnded(t) {
				directive = " # ERROR the test binary ended before this test did"
			}
			fmt.Fprintf(w, "%snot ok %d %s%s\n", indent, num, desc, directive)
		}
	}
}

// effective is the result to report for t: a parent fails with a child
// (go test already says so, but not for a child that never ended), and a
// passed parent whose every child skipped counts as skipped
// (Documentation/dev-tools/ktap.rst suggests it).
func effective(t *test) result {
	if t.result == failed || t.result == running {
		return t.result
	}
	if len(t.children) == 0 {
		return t.result
	}
	allSkipped := true
	for _, ch := range t.children {
		switch effective(ch) {
		case failed, running:
			return failed
		case passed:
			allSkipped = false
		}
	}
	if allSkipped {
		return skipped
	}
	return t.result
}

// allEnded tells whether every child of t ended.
func allEnded(t *test) bool {
	for _, ch := range t.children {
		if ch.result == running {
			return false
		}
	}
	return true
}

// timedOut returns the testing package's words when the binary's
// -test.timeout ended t ("test timed out after 2s": its panic, which names
// the running tests), else "".
func timedOut(t *test) string {
	for _, l := range t.output {
		if why, ok := strings.CutPrefix(l, "panic: "); ok && strings.HasPrefix(why, "test timed out after ") {
			return why
		}
	}
	for _, ch := range t.children {
		if ch.result == running {
			if why := timedOut(ch); why != "" {
				return why
			}
		}
	}
	return ""
}

// skipReason returns why t skipped, for its result line, and its other
// output lines, for diagnostics. The reason is the last line t logged (what
// t.Skip said); a parent whose children all skipped says so.
func skipReason(t *test) (string, []string) {
	if len(t.output) == 0 {
		if len(t.children) > 0 {
			return "every subtest skipped", nil
		}
		return "skipped", nil
	}
	if t.result == passed {
		return "every subtest skipped", t.output
	}
	last := len(t.output) - 1
	for last > 0 && strings.TrimSpace(t.output[last]) == "" {
		last--
	}
	return oneLine(t.output[last]), t.output[:last]
}

// oneLine makes a log line fit after a directive.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return "skipped"
	}
	return s
}

// writeDiag prints lines as diagnostic lines at that indentation. Go
// indents a test's log lines by four spaces; that indentation goes.
func writeDiag(w io.Writer, indent string, lines []string) {
	for _, l := range lines {
		l = strings.TrimRight(strings.TrimPrefix(l, "    "), " \t\r")
		if l == "" {
			fmt.Fprintf(w, "%s#\n", indent)
			continue
		}
		fmt.Fprintf(w, "%s# %s\n", indent, l)
	}
}
