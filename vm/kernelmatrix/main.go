// Command kernelmatrix writes vm/matrix's table: for each kernel it ran,
// TestBusyPoll's verdict per backend and scenario and a summary of the napi
// and netdevsim packages' kernel tests, read from the VM's go test -v output.
//
//	kernelmatrix [-o FILE] [-date D] [-took SECONDS] [-load TEXT] [-command TEXT] RESULTS
//
// RESULTS holds one folder per kernel series as vm/matrix writes them:
//
//	list             "SERIES RELEASE VERSION SOURCE HEADERS" (vm/debian-kernel --list)
//	fetch.rc         vm/debian-kernel's exit status; fetch.log its messages
//	fetch.secs       how long the fetch took
//	netdevsim.status the kernel folder's: "built" or why not
//	vm.log, vm.rc    the batch VM's output and exit status (absent if not fetched)
//	vm.secs          how long the VM took
//
// It writes the table as Markdown to FILE (default stdout), keeping the
// section "## Notes" that FILE ends with, if any (written by hand: what the
// table showed), prints a line per kernel on stderr and exits 1 if a kernel that could be fetched has a
// FAIL cell, 2 if RESULTS cannot be read.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("kernelmatrix", flag.ContinueOnError)
	fs.SetOutput(stderr)
	out := fs.String("o", "", "write the table to this file instead of stdout")
	var h Header
	fs.StringVar(&h.Date, "date", "", "the date of the measurement")
	fs.StringVar(&h.Took, "took", "", "how long vm/matrix took, in seconds")
	fs.StringVar(&h.Load, "load", "", "the machine's load (uptime) at the start and end")
	fs.StringVar(&h.Command, "command", "vm/matrix", "the command that made the results")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "usage: kernelmatrix [-o FILE] [-date D] [-took S] [-load TEXT] [-command TEXT] RESULTS")
		return 2
	}
	kernels, err := ReadResults(fs.Arg(0))
	if err != nil {
		fmt.Fprintf(stderr, "kernelmatrix: %v\n", err)
		return 2
	}
	var b strings.Builder
	if err := WriteMarkdown(&b, h, kernels); err != nil {
		fmt.Fprintf(stderr, "kernelmatrix: %v\n", err)
		return 2
	}
	if *out == "" {
		if _, err := io.WriteString(stdout, b.String()); err != nil {
			fmt.Fprintf(stderr, "kernelmatrix: %v\n", err)
			return 2
		}
	} else {
		// Hand-written notes at the end of the file stay.
		old, err := os.ReadFile(*out)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			fmt.Fprintf(stderr, "kernelmatrix: %v\n", err)
			return 2
		}
		if err := os.WriteFile(*out, []byte(b.String()+Notes(string(old))), 0o644); err != nil {
			fmt.Fprintf(stderr, "kernelmatrix: %v\n", err)
			return 2
		}
	}
	failed := false
	for _, k := range kernels {
		fmt.Fprintf(stderr, "kernelmatrix: %s\n", k.Summary())
		failed = failed || k.Failed()
	}
	if failed {
		return 1
	}
	return 0
}

// Kernel is one kernel series' results.
type Kernel struct {
	Series, Release, Version string
	// Unfetchable is why the kernel could not be fetched (its packages are
	// gone from the archive); "" if it was.
	Unfetchable string
	// Netdevsim is the kernel folder's netdevsim.status.
	Netdevsim string
	// FetchSecs and VMSecs are the times the fetch and the VM took; VMSecs
	// is "" if no VM ran.
	FetchSecs, VMSecs string
	// Rows maps a backend to its cells: one per scenario, then the package
	// summary ("" Verdict where the backend has none).
	Rows map[string][]Cell
	// NAPISet is what TestBusyPoll logged of the kernel's napi-set.
	NAPISet string
	// Surprises are features present or missing against their gates.
	Surprises []string
	// Harness is set when the run itself broke (fetch or VM failed
	// without test results).
	Harness string
}

// Failed tells whether the kernel has a FAIL cell or a broken run.
func (k *Kernel) Failed() bool {
	if k.Unfetchable != "" {
		return false
	}
	if k.Harness != "" {
		return true
	}
	for _, row := range k.Rows {
		for _, c := range row {
			if c.Verdict == Fail {
				return true
			}
		}
	}
	return false
}

// Summary is one line about the kernel: counts of its verdicts.
func (k *Kernel) Summary() string {
	if k.Unfetchable != "" {
		return fmt.Sprintf("%s: cannot be fetched: %s", k.Release, k.Unfetchable)
	}
	if k.Harness != "" {
		return fmt.Sprintf("%s: FAIL: %s", k.Release, k.Harness)
	}
	n := map[Verdict]int{}
	for _, row := range k.Rows {
		for _, c := range row {
			n[c.Verdict]++
		}
	}
	return fmt.Sprintf("%s: %d PASS, %d SKIP, %d FAIL (netdevsim: %s)", k.Release, n[Pass], n[Skip], n[Fail], k.Netdevsim)
}

// ReadResults reads every kernel folder of dir, oldest series first.
func ReadResults(dir string) ([]*Kernel, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var ks []*Kernel
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		k, err := ReadKernel(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		ks = append(ks, k)
	}
	if len(ks) == 0 {
		return nil, fmt.Errorf("%s holds no kernel folder", dir)
	}
	sort.SliceStable(ks, func(i, j int) bool { return olderSeries(ks[i].Series, ks[j].Series) })
	return ks, nil
}

// olderSeries orders "6.1" < "6.12" < "7.0".
func olderSeries(a, b string) bool {
	pa, _ := kernelfeature.MajorMinor(a)
	pb, _ := kernelfeature.MajorMinor(b)
	if pa[0] != pb[0] {
		return pa[0] < pb[0]
	}
	return pa[1] < pb[1]
}

// ReadKernel reads one kernel folder of the results (see the package doc).
func ReadKernel(dir string) (*Kernel, error) {
	list, err := readTrim(dir, "list")
	if err != nil {
		return nil, err
	}
	f := strings.Fields(list)
	if len(f) < 3 {
		return nil, fmt.Errorf("%s/list: %q is not \"SERIES RELEASE VERSION SOURCE HEADERS\"", dir, list)
	}
	k := &Kernel{Series: f[0], Release: f[1], Version: f[2], Rows: map[string][]Cell{}}
	k.FetchSecs, _ = readTrim(dir, "fetch.secs")
	k.VMSecs, _ = readTrim(dir, "vm.secs")
	rc, err := readTrim(dir, "fetch.rc")
	if err != nil {
		return nil, err
	}
	if rc != "0" {
		log, _ := os.ReadFile(filepath.Join(dir, "fetch.log"))
		if why, ok := Unfetchable(string(log)); ok {
			k.Unfetchable = why
		} else {
			k.Harness = "vm/debian-kernel failed (exit " + rc + "): " + lastFailure(string(log))
		}
		return k, nil
	}
	k.Netdevsim, _ = readTrim(dir, "netdevsim.status")
	vmrc, err := readTrim(dir, "vm.rc")
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, "vm.log"))
	if err != nil {
		return nil, err
	}
	r, err := ParseRun(strings.NewReader(string(b)))
	if err != nil {
		return nil, fmt.Errorf("%s/vm.log: %w", dir, err)
	}
	if len(r.Jobs) == 0 {
		k.Harness = fmt.Sprintf("the VM ran no test (exit %s): %s", vmrc, lastLine(string(b)))
		return k, nil
	}
	k.fill(r)
	return k, nil
}

// fill computes the kernel's cells from its VM run.
func (k *Kernel) fill(r *Run) {
	bp := r.Job("TestBusyPoll")
	for _, be := range Backends {
		var row []Cell
		for _, sc := range Scenarios {
			c := scenarioCell(bp, be, sc, k.Release)
			if be == "netdevsim" {
				c = netdevsimCheck(c, k.Netdevsim)
			}
			row = append(row, c)
		}
		pc := Cell{}
		for _, p := range Packages {
			if p.Backend == be {
				pc = packageCell(r.Job(p.Job), p, k.Release)
				if be == "netdevsim" {
					pc = netdevsimCheck(pc, k.Netdevsim)
				}
			}
		}
		k.Rows[be] = append(row, pc)
	}
	if bp != nil {
		k.NAPISet = NAPISet(bp)
		k.Surprises = Surprises(k.Release, k.NAPISet)
	}
}

// netdevsimCheck: where netdevsim was built for the kernel, a netdevsim
// test that skips for any reason but the kernel's age is a FAIL (the module
// is there, so the test should have found it); where it was not built, the
// skip says so.
func netdevsimCheck(c Cell, status string) Cell {
	if c.Verdict != Skip || sinceRE.MatchString(c.Reason) {
		return c
	}
	if status == "built" {
		return Cell{Fail, "netdevsim was built for this kernel, yet: " + c.Reason}
	}
	return Cell{Skip, "netdevsim " + status}
}

// aptErrRE finds apt's error lines; urlRE and ipRE what of them names the
// archive's host, which the table leaves out.
var (
	aptErrRE = regexp.MustCompile(`(?m)^E: (.*)$`)
	urlRE    = regexp.MustCompile(`[a-z]+://\S*/(\S+)`)
	ipRE     = regexp.MustCompile(`\s*\[IP: [^\]]*\]`)
)

// Unfetchable tells from vm/debian-kernel's messages whether the kernel's
// packages could not be downloaded (listed in the archive, but gone), and
// returns apt's reason without host names.
func Unfetchable(log string) (string, bool) {
	if !strings.Contains(log, "apt-get download failed") {
		return "", false
	}
	var why []string
	seen := map[string]bool{}
	for _, m := range aptErrRE.FindAllStringSubmatch(log, -1) {
		s := urlRE.ReplaceAllString(m[1], "$1")
		s = ipRE.ReplaceAllString(s, "")
		s = strings.Join(strings.Fields(s), " ")
		if !seen[s] {
			seen[s] = true
			why = append(why, s)
		}
	}
	if len(why) == 0 {
		return "apt-get download failed", true
	}
	if len(why) > 2 {
		why = append(why[:2], fmt.Sprintf("and %d more", len(why)-2))
	}
	return strings.Join(why, "; "), true
}

// lastFailure is vm/debian-kernel's FAILED line, or its last line.
func lastFailure(log string) string {
	lines := strings.Split(strings.TrimSpace(log), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.Contains(lines[i], "FAILED") {
			return strings.TrimSpace(lines[i])
		}
	}
	return lastLine(log)
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return s
}

func readTrim(dir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("%s: no %s", dir, name)
	}
	return strings.TrimSpace(string(b)), err
}

// notesHeading starts the hand-written end of the table's file.
const notesHeading = "## Notes\n"

// Notes returns the hand-written section that md ends with: from its
// "## Notes" heading on, after a blank line; "" if it has none.
func Notes(md string) string {
	i := strings.Index(md, "\n"+notesHeading)
	if i < 0 {
		return ""
	}
	return "\n" + md[i+1:]
}
