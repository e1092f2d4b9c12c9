package main

import (
	"bufio"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/netdev-go/busypolltest/vm/vminit"
)

// batchJob is one test binary to run in the VM, with its package folder.
type batchJob struct {
	name, dir, binary string
	args              []string
}

// maxBatchJobs bounds a batch file (one VM runs the jobs one after the
// other; more than this is a mistake).
const maxBatchJobs = 256

// parseBatch reads a batch file: one job per line, as NAME DIR BINARY
// [test flags], separated by blanks; empty lines and lines starting with #
// are skipped. DIR and BINARY must be absolute (the file is read from
// wherever vmrun runs), NAME must be unique.
func parseBatch(r io.Reader, file string) ([]batchJob, error) {
	var jobs []batchJob
	names := map[string]int{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 3 {
			return nil, fmt.Errorf("%s:%d: want NAME DIR BINARY [test flags], got %q", file, n, line)
		}
		j := batchJob{name: f[0], dir: f[1], binary: f[2], args: f[3:]}
		for _, p := range []struct{ what, v string }{{"DIR", j.dir}, {"BINARY", j.binary}} {
			if !filepath.IsAbs(p.v) {
				return nil, fmt.Errorf("%s:%d: %s %q is not an absolute path", file, n, p.what, p.v)
			}
		}
		if prev, ok := names[j.name]; ok {
			return nil, fmt.Errorf("%s:%d: job name %q is already used on line %d", file, n, j.name, prev)
		}
		names[j.name] = n
		jobs = append(jobs, j)
		if len(jobs) > maxBatchJobs {
			return nil, fmt.Errorf("%s: more than %d jobs", file, maxBatchJobs)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	if len(jobs) == 0 {
		return nil, fmt.Errorf("%s: no jobs (want lines of NAME DIR BINARY [test flags])", file)
	}
	return jobs, nil
}

// batchLimit is the hard limit for a batch: the explicit one if given, else
// the sum of the jobs' own limits (see timeLimit).
func batchLimit(explicit time.Duration, jobs []batchJob) (time.Duration, string, error) {
	if explicit > 0 {
		return explicit, "-timeout or " + envTimeout, nil
	}
	var sum time.Duration
	for _, j := range jobs {
		d, _, err := timeLimit(0, j.args)
		if err != nil {
			return 0, "", fmt.Errorf("job %s: %w", j.name, err)
		}
		sum += d
	}
	return min(sum, maxTimeout), fmt.Sprintf("the sum of the %d jobs' limits", len(jobs)), nil
}

// batchReporter turns a batch's Begin and End records into go test's
// summary lines ("ok  \tNAME\t1.234s", "FAIL\tNAME\t1.234s (exit 1)"),
// written to out after each job's own output.
type batchReporter struct {
	out   io.Writer
	jobs  []batchJob
	begun time.Time
	now   func() time.Time
	ended int // jobs that reported their end
}

func (b *batchReporter) onJob(s vminit.Status) {
	if s.Job < 0 || s.Job >= len(b.jobs) {
		fmt.Fprintf(b.out, "vmrun: status record for job %d of %d\n", s.Job, len(b.jobs))
		return
	}
	switch s.Kind {
	case vminit.Begin:
		b.begun = b.now()
	case vminit.End:
		b.ended++
		secs := b.now().Sub(b.begun).Seconds()
		if s.Code == 0 {
			fmt.Fprintf(b.out, "ok  \t%s\t%.3fs\n", b.jobs[s.Job].name, secs)
			return
		}
		how := ""
		if s.Msg != "" {
			how = ": " + s.Msg
		}
		fmt.Fprintf(b.out, "FAIL\t%s\t%.3fs (exit %d%s)\n", b.jobs[s.Job].name, secs, s.Code, how)
	}
}
