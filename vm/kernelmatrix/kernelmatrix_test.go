package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The recordings in testdata are vm/matrix's VM output (go test
// -test.v=test2json of three batch jobs) on Debian's kernels, unchanged:
// 7.3.4 with netdevsim built (every scenario passes), 6.18.15 without
// netdevsim (no linux-source-6.18) and without threaded busy-poll, 6.12.117
// with netdevsim but without napi-set, 6.1.176 without EPIOCSPARAMS and the
// netdev family (the napi package's kernel tests failed there); and
// vm/debian-kernel's messages for 6.19.14, whose packages are gone.
const (
	release73  = "7.3.4+deb13-amd64"
	release618 = "6.18.15+deb13-amd64"
	release612 = "6.12.117+deb13-amd64"
	release61  = "6.1.0-50-amd64"
)

func parseFile(t *testing.T, name string) *Run {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	require.NoError(t, err)
	defer f.Close()
	r, err := ParseRun(f)
	require.NoError(t, err)
	return r
}

func TestParseRun(t *testing.T) {
	r := parseFile(t, "vm-7.3.4.log")
	require.Len(t, r.Jobs, 3)
	for i, name := range []string{"TestBusyPoll", "napi", "netdevsim"} {
		assert.Equal(t, "github.com/netdev-go/busypolltest/"+name, r.Jobs[i].Name)
		assert.Equal(t, "ok", r.Jobs[i].Status)
		assert.Same(t, r.Jobs[i], r.Job(name))
	}
	bp := r.Job("TestBusyPoll")
	for _, be := range Backends {
		for _, sc := range Scenarios {
			tt := bp.Test("TestBusyPoll/" + be + "/" + sc)
			require.NotNil(t, tt, "%s/%s", be, sc)
			assert.Equal(t, "PASS", tt.Result, "%s/%s", be, sc)
		}
	}
	skip := r.Job("napi").Test("TestKernelNAPI/queue_napi-id")
	require.NotNil(t, skip)
	assert.Equal(t, "SKIP", skip.Result)
	assert.True(t, strings.HasPrefix(skip.Reason(), "queue-get reports no napi-id for the rx queue of "), skip.Reason())
	assert.Nil(t, r.Job("nosuch"))
	assert.Nil(t, r.Job("napi").Test("TestNoSuch"))
}

func TestParseRunShapes(t *testing.T) {
	tests := []struct {
		name, in string
		status   []string // each job's Status
		result   map[string]string
		reason   map[string]string
	}{
		{
			name: "plain -v output, indented results",
			in: "=== RUN   TestA\n=== RUN   TestA/x\n    a_test.go:10: kernel lacks y: needs Linux 6.13\n" +
				"    --- SKIP: TestA/x (0.00s)\n--- PASS: TestA (0.01s)\nPASS\nok  \tm/p\t0.1s\n",
			status: []string{"ok"},
			result: map[string]string{"TestA": "PASS", "TestA/x": "SKIP"},
			reason: map[string]string{"TestA/x": "kernel lacks y: needs Linux 6.13"},
		},
		{
			name: "a test's output that looks like a result does not count under test2json marks",
			in: "\x16=== RUN   TestA\n--- FAIL: TestA (0.00s)\n    a_test.go:3: done\n\x16--- PASS: TestA (0.01s)\n" +
				"ok  \tm/p\t0.1s\n",
			status: []string{"ok"},
			result: map[string]string{"TestA": "PASS"},
			reason: map[string]string{"TestA": "done"},
		},
		{
			name: "a multi-line message: the reason is its first line",
			in: "=== RUN   TestA\n    a_test.go:3: first\n        second\n--- FAIL: TestA (0.00s)\n" +
				"FAIL\tm/p\t0.2s (exit 1)\n",
			status: []string{"FAIL"},
			result: map[string]string{"TestA": "FAIL"},
			reason: map[string]string{"TestA": "first"},
		},
		{
			name:   "a job that never ended: no status, no result",
			in:     "ok  \tm/a\t1.0s\n=== RUN   TestB\n    b_test.go:1: working\n",
			status: []string{"ok", ""},
			result: map[string]string{"TestB": ""},
			reason: map[string]string{"TestB": "working"},
		},
		{
			name: "the last log message is the reason",
			in: "=== RUN   TestA\n    a_test.go:1: kernel 6.12\n=== RUN   TestA/x\n--- PASS: TestA/x (0.00s)\n" +
				"=== NAME  TestA\n    a_test.go:9: every scenario skipped\n--- SKIP: TestA (0.00s)\nok  \tm/p\t0.1s\n",
			status: []string{"ok"},
			result: map[string]string{"TestA": "SKIP", "TestA/x": "PASS"},
			reason: map[string]string{"TestA": "every scenario skipped"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRun(strings.NewReader(tc.in))
			require.NoError(t, err)
			require.Len(t, r.Jobs, len(tc.status))
			for i, s := range tc.status {
				assert.Equal(t, s, r.Jobs[i].Status, "job %d", i)
			}
			last := r.Jobs[len(r.Jobs)-1]
			for name, res := range tc.result {
				tt := last.Test(name)
				require.NotNil(t, tt, name)
				assert.Equal(t, res, tt.Result, name)
			}
			for name, why := range tc.reason {
				assert.Equal(t, why, last.Test(name).Reason(), name)
			}
		})
	}
}

func TestAgeCheck(t *testing.T) {
	tests := []struct {
		name    string
		in      Cell
		release string
		want    Verdict
	}{
		{"too old for napi-set", Cell{Skip, "lacks napi-set: needs Linux 6.13"}, "6.12.117+deb13-amd64", Skip},
		{"napi-set missing on 7.2", Cell{Skip, "lacks napi-set: needs Linux 6.13"}, "7.2.13+deb14-amd64", Fail},
		{"at the gate's own version", Cell{Skip, "needs Linux 6.19"}, "6.19.1", Fail},
		{"one of two reasons is due", Cell{Skip, "needs Linux 6.19; needs Linux 6.13"}, "6.18.15", Fail},
		{"netdevsim's link_device on 6.1", Cell{Skip, "cannot link devices (it arrived in Linux 6.9)"}, "6.1.0-50-amd64", Skip},
		{"a skip that names no version", Cell{Skip, "netdevsim unavailable"}, "7.3.4", Skip},
		{"a pass stays a pass", Cell{Verdict: Pass}, "7.3.4", Pass},
		{"an unreadable release counts as old", Cell{Skip, "needs Linux 6.13"}, "custom", Skip},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := ageCheck(tc.in, tc.release)
			assert.Equal(t, tc.want, got.Verdict, got.Reason)
		})
	}
}

func TestScenarioCell(t *testing.T) {
	r73 := parseFile(t, "vm-7.3.4.log").Job("TestBusyPoll")
	r618 := parseFile(t, "vm-6.18.15.log").Job("TestBusyPoll")
	r612 := parseFile(t, "vm-6.12.117.log").Job("TestBusyPoll")
	r61 := parseFile(t, "vm-6.1.176.log").Job("TestBusyPoll")
	tests := []struct {
		name              string
		job               *Job
		release           string
		backend, scenario string
		want              Verdict
		reason            string // a part of the reason
	}{
		{"7.3 veth suspend", r73, release73, "veth", "suspend", Pass, ""},
		{"7.3 netdevsim napi_threaded", r73, release73, "netdevsim", "napi_threaded", Pass, ""},
		{"6.18 veth plain", r618, release618, "veth", "plain", Pass, ""},
		{"6.18 lacks threaded busy-poll", r618, release618, "veth", "napi_threaded", Skip, "lacks napi-set threaded busy-poll: needs Linux 6.19"},
		{"6.18 has no netdevsim", r618, release618, "netdevsim", "plain", Skip, "netdevsim unavailable"},
		// The same output from a kernel that should have threaded busy-poll.
		{"a 7.2 kernel that lacks threaded busy-poll", r618, "7.2.13+deb14-amd64", "veth", "napi_threaded", Fail, "a feature of Linux 6.19"},
		{"6.12 lacks napi-set", r612, release612, "netdevsim", "suspend", Skip, "lacks napi-set: needs Linux 6.13"},
		{"6.1 lacks EPIOCSPARAMS", r61, release61, "veth", "plain", Skip, "lacks the EPIOCSPARAMS ioctl: needs Linux 6.9"},
		{"no TestBusyPoll job", nil, release73, "veth", "plain", Fail, "did not run"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := scenarioCell(tc.job, tc.backend, tc.scenario, tc.release)
			assert.Equal(t, tc.want, c.Verdict, c.Reason)
			assert.Contains(t, c.Reason, tc.reason)
			if strings.Contains(c.Reason, "needs Linux") {
				assert.NotContains(t, c.Reason, "(", "the probe's error is left out")
			}
			assert.NotContains(t, c.Reason, "kernel "+tc.release, "the release is in its own column")
		})
	}
}

func TestScenarioCellFailures(t *testing.T) {
	log := "=== RUN   TestBusyPoll\n=== RUN   TestBusyPoll/veth\n=== RUN   TestBusyPoll/veth/plain\n" +
		"=== RUN   TestBusyPoll/veth/plain/check-4\n    busypoll_test.go:1: busy-polled 0 of 180 packets\n" +
		"--- FAIL: TestBusyPoll/veth/plain/check-4 (0.00s)\n--- FAIL: TestBusyPoll/veth/plain (1.00s)\n" +
		"=== RUN   TestBusyPoll/veth/suspend\n    busypoll_test.go:2: transfer 1\n"
	r, err := ParseRun(strings.NewReader(log))
	require.NoError(t, err)
	j := r.Jobs[0]
	tests := []struct {
		scenario string
		reason   string
	}{
		{"plain", "check-4: busy-polled 0 of 180 packets"},
		{"suspend", "started but reported no result: the VM stopped before the job ended"},
		{"link_flap", "no result: the VM stopped before the job ended"},
	}
	for _, tc := range tests {
		t.Run(tc.scenario, func(t *testing.T) {
			c := scenarioCell(j, "veth", tc.scenario, release73)
			assert.Equal(t, Cell{Fail, tc.reason}, c)
		})
	}
}

func TestPackageCell(t *testing.T) {
	r73 := parseFile(t, "vm-7.3.4.log")
	r618 := parseFile(t, "vm-6.18.15.log")
	r612 := parseFile(t, "vm-6.12.117.log")
	r61 := parseFile(t, "vm-6.1.176.log")
	failed, err := ParseRun(strings.NewReader("=== RUN   TestKernelNAPI\n    k_test.go:1: napi-set: EINVAL\n" +
		"--- FAIL: TestKernelNAPI (0.01s)\nFAIL\tm/napi\t0.1s (exit 1)\n"))
	require.NoError(t, err)
	tests := []struct {
		name    string
		job     *Job
		pkg     Package
		release string
		want    Cell
	}{
		{"7.3 napi: veth links no queue to its NAPI", r73.Job("napi"), Packages[0], release73,
			Cell{Pass, "skipped TestKernelNAPI/queue_napi-id"}},
		{"7.3 netdevsim", r73.Job("netdevsim"), Packages[1], release73, Cell{Verdict: Pass}},
		{"6.18 napi", r618.Job("napi"), Packages[0], release618, Cell{Pass, "skipped TestKernelNAPI/queue_napi-id"}},
		{"6.18 netdevsim: no module", r618.Job("netdevsim"), Packages[1], release618, Cell{Verdict: Skip}},
		{"6.12 napi: no napi-set", r612.Job("napi"), Packages[0], release612, Cell{Skip, "TestKernelNAPI: kernel has no napi-set: needs Linux 6.13; …"}},
		{"6.12 netdevsim", r612.Job("netdevsim"), Packages[1], release612, Cell{Verdict: Pass}},
		{"6.1 napi: failed for want of the netdev family", r61.Job("napi"), Packages[0], release61,
			Cell{Fail, `TestKernelNAPI: dial netdev in napi-sv-98-1: napi: kernel has no generic netlink family "netdev" (needs Linux 6.3): netlink receive: no such file or directo… (and 1 more)`}},
		{"6.1 netdevsim: no link_device", r61.Job("netdevsim"), Packages[1], release61, Cell{Verdict: Skip}},
		{"a failed test", failed.Jobs[0], Packages[0], release73, Cell{Fail, "TestKernelNAPI: napi-set: EINVAL"}},
		{"no job", nil, Packages[0], release73, Cell{Fail, "the napi job did not run (VM output has no such job)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := packageCell(tc.job, tc.pkg, tc.release)
			assert.Equal(t, tc.want.Verdict, c.Verdict, c.Reason)
			if tc.want.Reason != "" {
				assert.Equal(t, tc.want.Reason, c.Reason)
			}
		})
	}
}

// On 6.1 netdevsim loads but has no link_device (Linux 6.9): the kernel's
// age, not a module that was built and not found.
func TestPackageCellNetdevsimTooOld(t *testing.T) {
	c := packageCell(parseFile(t, "vm-6.1.176.log").Job("netdevsim"), Packages[1], release61)
	require.Equal(t, Skip, c.Verdict, c.Reason)
	assert.Contains(t, c.Reason, "arrived in Linux 6.9")
	assert.Equal(t, c, netdevsimCheck(c, "built"))
}

func TestShortReason(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"the release and the nested probe error go",
			"kernel 6.1.0-50-amd64 lacks the EPIOCSPARAMS ioctl: needs Linux 6.9 (busypoll: probe: needs Linux 6.9: unsupported operation (operation not supported))",
			"lacks the EPIOCSPARAMS ioctl: needs Linux 6.9"},
		{"of a list the first stays", "kernel has no napi-set: needs Linux 6.13; kernel has no napi-set defer-hard-irqs: needs Linux 6.13",
			"kernel has no napi-set: needs Linux 6.13; …"},
		{"a list inside parentheses stays whole", "cannot link devices (no link_device; it arrived in Linux 6.9): stat: no such file",
			"cannot link devices (no link_device; it arrived in Linux 6.9): stat: no such file"},
		{"the version that brings it is kept", "lacks x (as the probe says): " + strings.Repeat("y", 150) + " (needs Linux 6.9)",
			"lacks x (as the probe says): " + strings.Repeat("y", 111) + "… [needs Linux 6.9]"},
		{"a long one is cut on a character", strings.Repeat("é", 100), strings.Repeat("é", 70) + "…"},
		{"nothing to do", "netdevsim unavailable", "netdevsim unavailable"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, shortReason(tc.in, release61))
		})
	}
}

func TestNetdevsimCheck(t *testing.T) {
	tests := []struct {
		name   string
		in     Cell
		status string
		want   Verdict
	}{
		{"built, yet the test found none", Cell{Skip, "netdevsim unavailable"}, "built", Fail},
		{"built, on a kernel too old for the test", Cell{Skip, "lacks EPIOCSPARAMS: needs Linux 6.9"}, "built", Skip},
		{"not built", Cell{Skip, "netdevsim unavailable"}, "not built: Debian has no linux-source-6.18 package", Skip},
		{"a pass", Cell{Verdict: Pass}, "built", Pass},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, netdevsimCheck(tc.in, tc.status).Verdict)
		})
	}
}

func TestUnfetchable(t *testing.T) {
	b, err := os.ReadFile("testdata/fetch-6.19.14.log")
	require.NoError(t, err)
	tests := []struct {
		name, log string
		ok        bool
		want      string
	}{
		{"6.19.14: modules and base are gone", string(b), true,
			"Version '6.19.14-1~bpo13+1' for 'linux-modules-6.19.14+deb13-amd64' was not found; " +
				"Version '6.19.14-1~bpo13+1' for 'linux-base-6.19.14+deb13-amd64' was not found"},
		{"the archive's address is left out", "E: Failed to fetch http://mirror.example/debian/pool/main/l/linux/linux-image-1_amd64.deb  404  Not Found [IP: 192.0.2.1 80]\n" +
			"debian-kernel: [1s] FAILED at step 'download': apt-get download failed (...)\n", true,
			"Failed to fetch linux-image-1_amd64.deb 404 Not Found"},
		{"another failure is not this", "debian-kernel: [3s] FAILED at step 'unpack kernel': command exited with 2\n", false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			why, ok := Unfetchable(tc.log)
			assert.Equal(t, tc.ok, ok)
			assert.Equal(t, tc.want, why)
		})
	}
}

func TestSurprises(t *testing.T) {
	const all = "napi-set: defer-hard-irqs|gro-flush-timeout|irq-suspend-timeout|threaded (threaded max busy-poll)"
	tests := []struct {
		name, release, napiSet string
		want                   []string
	}{
		{"7.3 has all", release73, all, nil},
		{"6.18 up to threaded enabled", release618, "napi-set: defer-hard-irqs|gro-flush-timeout|irq-suspend-timeout|threaded (threaded max enabled)", nil},
		{"6.12 has none", "6.12.117+deb13-amd64", "no napi-set", nil},
		{"not logged", "6.1.0-50-amd64", "", nil},
		{"threaded on 6.16", "6.16.12+deb13-amd64", "napi-set: defer-hard-irqs|gro-flush-timeout|irq-suspend-timeout|threaded (threaded max enabled)",
			[]string{"napi-set threaded is there before its gate (Linux 6.17)"}},
		{"no threaded on 6.17", "6.17.13+deb13-amd64", "napi-set: defer-hard-irqs|gro-flush-timeout|irq-suspend-timeout",
			[]string{"napi-set threaded is missing although its gate is Linux 6.17"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Surprises(tc.release, tc.napiSet))
		})
	}
}

// writeKernel lays out one kernel folder of vm/matrix's results.
func writeKernel(t *testing.T, dir, list, fetchRC, netdevsim, vmLog string) {
	t.Helper()
	d := filepath.Join(dir, strings.Fields(list)[0])
	require.NoError(t, os.MkdirAll(d, 0o755))
	files := map[string]string{"list": list, "fetch.rc": fetchRC, "fetch.secs": "12"}
	if fetchRC == "0" {
		files["netdevsim.status"] = netdevsim
		files["vm.rc"] = "0"
		files["vm.secs"] = "40"
		b, err := os.ReadFile(filepath.Join("testdata", vmLog))
		require.NoError(t, err)
		files["vm.log"] = string(b)
	} else {
		b, err := os.ReadFile(filepath.Join("testdata", vmLog))
		require.NoError(t, err)
		files["fetch.log"] = string(b)
	}
	for name, s := range files {
		require.NoError(t, os.WriteFile(filepath.Join(d, name), []byte(s+"\n"), 0o644))
	}
}

func TestRun(t *testing.T) {
	dir := t.TempDir()
	writeKernel(t, dir, "7.3 7.3.4+deb13-amd64 7.3.4-1~bpo13+1 yes yes", "0", "built", "vm-7.3.4.log")
	writeKernel(t, dir, "6.18 6.18.15+deb13-amd64 6.18.15-1~bpo13+1 no no", "0", "not built: Debian has no linux-source-6.18 package", "vm-6.18.15.log")
	writeKernel(t, dir, "6.19 6.19.14+deb13-amd64 6.19.14-1~bpo13+1 no no", "1", "", "fetch-6.19.14.log")
	out := filepath.Join(t.TempDir(), "KERNELS.md")
	var stdout, stderr bytes.Buffer
	code := run([]string{"-o", out, "-date", "2026-12-02", "-took", "300", dir}, &stdout, &stderr)
	require.Equal(t, 0, code, stderr.String())
	b, err := os.ReadFile(out)
	require.NoError(t, err)
	md := string(b)
	assert.Contains(t, md, "- Measured: 2026-12-02\n")
	assert.Contains(t, md, "| 7.3.4+deb13-amd64 | netdevsim | PASS | PASS | PASS | PASS | PASS |\n")
	assert.Contains(t, md, "| 6.18.15+deb13-amd64 | veth | PASS | PASS | SKIP: lacks napi-set threaded busy-poll: needs Linux 6.19 | PASS |")
	assert.Contains(t, md, "| 6.19.14+deb13-amd64 | — | cannot be fetched: Version '6.19.14-1~bpo13+1' for 'linux-modules-6.19.14+deb13-amd64' was not found")
	// Oldest first.
	assert.Less(t, strings.Index(md, "| 6.18.15"), strings.Index(md, "| 6.19.14"))
	assert.Less(t, strings.Index(md, "| 6.19.14"), strings.Index(md, "| 7.3.4"))
	assert.Contains(t, stderr.String(), "kernelmatrix: 7.3.4+deb13-amd64: 10 PASS, 0 SKIP, 0 FAIL (netdevsim: built)\n")

	// The notes at the end of the file stay when it is written again.
	notes := "## Notes\n\n- written by hand\n"
	require.NoError(t, os.WriteFile(out, []byte(md+"\n"+notes), 0o644))
	require.Equal(t, 0, run([]string{"-o", out, "-date", "2026-12-03", dir}, &stdout, &stderr))
	b, err = os.ReadFile(out)
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(string(b), "\n\n"+notes), string(b))
	assert.Contains(t, string(b), "- Measured: 2026-12-03\n")
	assert.Equal(t, 1, strings.Count(string(b), "## Notes"))

	// A netdevsim that was built but not found fails the run.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "6.18", "netdevsim.status"), []byte("built\n"), 0o644))
	stderr.Reset()
	assert.Equal(t, 1, run([]string{"-o", out, dir}, &stdout, &stderr), stderr.String())
	assert.Contains(t, stderr.String(), "6.18.15+deb13-amd64: 4 PASS, 2 SKIP, 4 FAIL")
}

func TestRunBadResults(t *testing.T) {
	tests := []struct {
		name  string
		setup func(dir string)
	}{
		{"an empty folder", func(string) {}},
		{"a kernel folder without its list", func(dir string) { require.NoError(t, os.Mkdir(filepath.Join(dir, "7.3"), 0o755)) }},
		{"a fetched kernel without its VM's output", func(dir string) {
			d := filepath.Join(dir, "7.3")
			require.NoError(t, os.Mkdir(d, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(d, "list"), []byte("7.3 7.3.4 7.3.4-1 yes yes\n"), 0o644))
			require.NoError(t, os.WriteFile(filepath.Join(d, "fetch.rc"), []byte("0\n"), 0o644))
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(dir)
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 2, run([]string{dir}, &stdout, &stderr))
			assert.Contains(t, stderr.String(), "kernelmatrix: ")
		})
	}
}
