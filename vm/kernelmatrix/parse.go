package main

import (
	"bufio"
	"io"
	"regexp"
	"strings"
)

// frameMark starts every line that go test prints about a test's progress
// under -test.v=test2json (testing's marker byte ^V), so that a test's own
// output that looks like "--- FAIL" is not taken for a result.
const frameMark = "\x16"

// Test is what a test binary said about one test or subtest.
type Test struct {
	// Name is the full name, e.g. "TestBusyPoll/veth/plain".
	Name string
	// Result is "PASS", "FAIL" or "SKIP"; "" if the test started but never
	// reported one (the binary died or the VM stopped).
	Result string
	// Log holds the test's log messages (t.Log, t.Skip, t.Fatal ...), each
	// without its "file.go:NNN: " prefix, continuation lines joined by
	// newlines.
	Log []string
}

// Reason is the one-line reason of a skip or failure: the first line of the
// test's last log message ("" without one). For testify's report of a failed
// assertion, whose first line is empty, it is the "Error:" entry (with the
// error on the line after "Received unexpected error:"), after the
// "Messages:" entry if there is one.
func (t *Test) Reason() string {
	if len(t.Log) == 0 {
		return ""
	}
	msg := t.Log[len(t.Log)-1]
	first, rest, _ := strings.Cut(msg, "\n")
	if strings.TrimSpace(first) != "" || rest == "" {
		return strings.TrimSpace(first)
	}
	lines := strings.Split(rest, "\n")
	var errText, messages string
	for i, l := range lines {
		key, value, ok := strings.Cut(strings.TrimSpace(l), ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch key {
		case "Error":
			errText = value
			if strings.HasSuffix(value, ":") && i+1 < len(lines) {
				errText = strings.TrimSpace(lines[i+1])
			}
		case "Messages":
			messages = value
		}
	}
	switch {
	case errText == "":
		return strings.TrimSpace(lines[0])
	case messages != "":
		return messages + ": " + errText
	default:
		return errText
	}
}

// Job is one test binary's run in a batch VM (vmrun -batch).
type Job struct {
	// Name is the batch job's name, e.g. "github.com/netdev-go/busypolltest/napi".
	Name string
	// Status is "ok" or "FAIL" from vmrun's summary line; "" if the VM
	// printed none for this job.
	Status string
	// Detail is the rest of a FAIL summary line, e.g. "(exit 1)".
	Detail string
	// Tests in the order they started.
	Tests  []*Test
	byName map[string]*Test
}

// Test returns the named test, or nil if the job never started it.
func (j *Job) Test(name string) *Test {
	if j == nil {
		return nil
	}
	return j.byName[name]
}

// Run is the whole output of one batch VM.
type Run struct {
	Jobs []*Job
}

// Job returns the job whose name ends in "/"+suffix (or is suffix), or nil.
func (r *Run) Job(suffix string) *Job {
	for _, j := range r.Jobs {
		if j.Name == suffix || strings.HasSuffix(j.Name, "/"+suffix) {
			return j
		}
	}
	return nil
}

var (
	// "=== RUN   TestX/y", "=== NAME  TestX", "=== CONT  TestX", "=== PAUSE TestX"
	frameRE = regexp.MustCompile(`^=== (RUN|NAME|CONT|PAUSE) +(\S+)`)
	// "--- PASS: TestX/y (0.12s)", possibly indented (plain -v output)
	resultRE = regexp.MustCompile(`^ *--- (PASS|FAIL|SKIP): (\S+) \(`)
	// vmrun's summary line after each job of a batch.
	summaryRE = regexp.MustCompile(`^(ok  |FAIL)\t(\S+)\t\S+s(?: (.*))?$`)
	// A log line: "    file.go:123: message".
	logRE = regexp.MustCompile(`^ +[\w.-]+\.go:\d+: (.*)$`)
)

// ParseRun reads a batch VM's output: go test -v output (with or without
// test2json framing marks) of each job, each followed by vmrun's "ok  \tNAME"
// or "FAIL\tNAME" line. Output after the last summary line (a job that never
// ended) forms a job with an empty Status and Name.
func ParseRun(r io.Reader) (*Run, error) {
	run := &Run{}
	job := newJob()
	var cur, lastLog *Test
	// Once a framing mark is seen, only marked lines are frames and results.
	marked := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimRight(sc.Text(), "\r")
		framed := strings.HasPrefix(line, frameMark)
		text := strings.TrimPrefix(line, frameMark)
		marked = marked || framed
		if m := summaryRE.FindStringSubmatch(text); m != nil && !framed {
			job.Name, job.Status, job.Detail = m[2], strings.TrimSpace(m[1]), m[3]
			run.Jobs = append(run.Jobs, job)
			job, cur, lastLog = newJob(), nil, nil
			continue
		}
		if framed || !marked {
			if m := frameRE.FindStringSubmatch(text); m != nil {
				cur, lastLog = job.get(m[2]), nil
				continue
			}
			if m := resultRE.FindStringSubmatch(text); m != nil {
				job.get(m[2]).Result = m[1]
				cur, lastLog = nil, nil
				continue
			}
		}
		if framed || cur == nil {
			continue
		}
		if m := logRE.FindStringSubmatch(text); m != nil {
			cur.Log = append(cur.Log, m[1])
			lastLog = cur
			continue
		}
		// A continuation line of a multi-line message is indented deeper.
		if lastLog == cur && strings.HasPrefix(text, "        ") && len(cur.Log) > 0 {
			cur.Log[len(cur.Log)-1] += "\n" + strings.TrimSpace(text)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(job.Tests) > 0 {
		run.Jobs = append(run.Jobs, job)
	}
	return run, nil
}

func newJob() *Job { return &Job{byName: map[string]*Test{}} }

func (j *Job) get(name string) *Test {
	t := j.byName[name]
	if t == nil {
		t = &Test{Name: name}
		j.byName[name] = t
		j.Tests = append(j.Tests, t)
	}
	return t
}
