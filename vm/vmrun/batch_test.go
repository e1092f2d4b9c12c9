package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/netdev-go/busypolltest/vm/vminit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseBatch(t *testing.T) {
	jobs, err := parseBatch(strings.NewReader(`
# comment
example.com/a /src/a /bin/a.test -test.v=true -test.timeout=1m

example.com/b	/src/b	/bin/b.test
`), "jobs")
	require.NoError(t, err)
	assert.Equal(t, []batchJob{
		{name: "example.com/a", dir: "/src/a", binary: "/bin/a.test", args: []string{"-test.v=true", "-test.timeout=1m"}},
		{name: "example.com/b", dir: "/src/b", binary: "/bin/b.test", args: []string{}},
	}, jobs)
}

func TestParseBatchErrors(t *testing.T) {
	tests := []struct{ text, want string }{
		{"", "jobs: no jobs (want lines of NAME DIR BINARY [test flags])"},
		{"# only a comment\n", "jobs: no jobs (want lines of NAME DIR BINARY [test flags])"},
		{"a /src/a\n", `jobs:1: want NAME DIR BINARY [test flags], got "a /src/a"`},
		{"a src/a /bin/a\n", `jobs:1: DIR "src/a" is not an absolute path`},
		{"a /src/a a.test\n", `jobs:1: BINARY "a.test" is not an absolute path`},
		{"a /src/a /bin/a\n\na /src/b /bin/b\n", `jobs:3: job name "a" is already used on line 1`},
		{"x /a /b\n", ""},
	}
	for _, tt := range tests {
		_, err := parseBatch(strings.NewReader(tt.text), "jobs")
		if tt.want == "" {
			assert.NoError(t, err, "%q", tt.text)
			continue
		}
		assert.EqualError(t, err, tt.want, "%q", tt.text)
	}
	var many strings.Builder
	for i := range maxBatchJobs + 1 {
		many.WriteString("j" + strings.Repeat("x", i) + " /a /b\n")
	}
	_, err := parseBatch(strings.NewReader(many.String()), "jobs")
	assert.EqualError(t, err, "jobs: more than 256 jobs")
}

func TestBatchLimit(t *testing.T) {
	jobs := []batchJob{{name: "a", args: []string{"-test.timeout=1m"}}, {name: "b"}}
	d, src, err := batchLimit(0, jobs)
	require.NoError(t, err)
	assert.Equal(t, time.Minute+timeoutMargin+defaultTimeout, d)
	assert.Equal(t, "the sum of the 2 jobs' limits", src)
	d, _, err = batchLimit(time.Hour, jobs)
	require.NoError(t, err)
	assert.Equal(t, time.Hour, d)
	_, _, err = batchLimit(0, []batchJob{{name: "c", args: []string{"-test.timeout=soon"}}})
	assert.EqualError(t, err, `job c: test flag -test.timeout="soon": not a duration`)
}

func TestBatchReporter(t *testing.T) {
	var out bytes.Buffer
	clock := time.Unix(100, 0)
	b := &batchReporter{out: &out, jobs: []batchJob{{name: "pkg/a"}, {name: "pkg/b"}, {name: "pkg/c"}},
		now: func() time.Time { return clock }}
	b.onJob(vminit.Status{Kind: vminit.Begin, Job: 0})
	clock = clock.Add(1500 * time.Millisecond)
	b.onJob(vminit.Status{Kind: vminit.End, Job: 0})
	b.onJob(vminit.Status{Kind: vminit.Begin, Job: 1})
	clock = clock.Add(250 * time.Millisecond)
	b.onJob(vminit.Status{Kind: vminit.End, Job: 1, Code: 137, Msg: "killed by signal 9 (SIGKILL)"})
	b.onJob(vminit.Status{Kind: vminit.End, Job: 7})
	assert.Equal(t, "ok  \tpkg/a\t1.500s\n"+
		"FAIL\tpkg/b\t0.250s (exit 137: killed by signal 9 (SIGKILL))\n"+
		"vmrun: status record for job 7 of 3\n", out.String())
	assert.Equal(t, 2, b.ended)
}
