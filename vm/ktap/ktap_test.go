package main

import (
	"bytes"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var update = flag.Bool("update", false, "rewrite testdata/*.ktap from the converter's output")

// The recordings in testdata/*.json are go test -json streams of small
// throwaway tests (one passing, one failing with a two-line message, skips,
// nested and parallel subtests, a panic in a subtest, a subtest killed by
// -timeout 2s), recorded with go 1.26, and testdata/busypoll-*.json are
// TestBusyPoll's own; testdata/*.ktap is what they convert
// to (go test ./vm/ktap -update rewrites those).
func TestConvertRecordings(t *testing.T) {
	tests := []struct {
		name   string
		status int
		// lines that must appear in this order (not necessarily adjacent)
		want []string
	}{
		{"pass", exitPass, []string{"TAP version 13", "1..1", "ok 1 TestPass"}},
		{"fail", exitFail, []string{"1..2", "ok 1 TestPass", "# rec_test.go:19: got 3, want 4", "#     second line of the message", "not ok 2 TestFail"}},
		{"skip", exitSkip, []string{"1..2", "ok 1 TestSkip # SKIP rec_test.go:23: needs root: CAP_NET_ADMIN",
			"  KTAP version 1", "  1..2", "  ok 1 x # SKIP rec_test.go:47: x: kernel lacks it", "ok 2 TestAllSkipped # SKIP every subtest skipped"}},
		{"nested", exitFail, []string{"1..4", "  KTAP version 1", "  1..3", "    KTAP version 1", "    1..2", "    ok 1 one",
			"    # rec_test.go:32: two broke", "    not ok 2 two", "  not ok 1 a", "  ok 2 b_x # SKIP rec_test.go:34: no netdevsim",
			"    ok 1 p1", "    ok 2 p2", "  ok 3 par", "not ok 3 TestNested"}},
		{"panic", exitFail, []string{"  not ok 1 inner", "# panic: assignment to entry in nil map [recovered, repanicked]", "not ok 2 TestPanic"}},
		{"timeout", exitFail, []string{"ok 1 TestPass", "  # panic: test timed out after 2s", "  # \t\tTestHang/sleeper (2s)",
			"  not ok 1 sleeper # TIMEOUT test timed out after 2s", "not ok 2 TestHang # TIMEOUT test timed out after 2s"}},
		// TestBusyPoll of this module on a 6.18 host without netdevsim:
		// as root, as the user nobody, and with -busypoll.suspend-timeout=0
		// (the suspension checks must fail).
		{"busypoll-root", exitPass, []string{"1..1", "  1..2", "    ok 1 plain # SKIP busypoll_test.go:662: netdevsim unavailable: /sys/bus/netdevsim does not exist: the kernel has no module support (no /proc/modules) and netdevsim is not built in (needs CONFIG_NETDEVSIM=y)",
			"  ok 1 netdevsim # SKIP busypoll_test.go:525: every netdevsim scenario skipped (reasons above)", "    ok 2 suspend", "  ok 2 veth", "ok 1 TestBusyPoll"}},
		{"busypoll-nobody", exitSkip, []string{"1..1", "ok 1 TestBusyPoll # SKIP busypoll_test.go:488: needs root (CAP_SYS_ADMIN for namespaces, CAP_NET_ADMIN for napi-set): run with sudo"}},
		{"busypoll-suspend-timeout-0", exitFail, []string{"    ok 1 plain", "    #     \t            \tIRQ suspension made no measured difference: busy-polled with irq-suspend-timeout 0s*",
			"    #     \tTest:       \tTestBusyPoll/veth/suspend", "    not ok 2 suspend",
			"    not ok 4 link_flap", "  not ok 2 veth", "not ok 1 TestBusyPoll"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := os.Open(filepath.Join("testdata", tt.name+".json"))
			require.NoError(t, err)
			defer in.Close()
			var out bytes.Buffer
			status := runMain(nil, in, &out, os.Stderr)
			assert.Equal(t, tt.status, status)
			assert.NoError(t, checkKTAP(out.String()), out.String())
			assertInOrder(t, out.String(), tt.want)
			golden := filepath.Join("testdata", tt.name+".ktap")
			if *update {
				require.NoError(t, os.WriteFile(golden, out.Bytes(), 0o644))
			}
			want, err := os.ReadFile(golden)
			require.NoError(t, err)
			assert.Equal(t, string(want), out.String())
		})
	}
}

// assertInOrder checks that want are whole lines of got, in that order (a
// want ending in "*" is the start of a line).
func assertInOrder(t *testing.T, got string, want []string) {
	t.Helper()
	lines := strings.Split(got, "\n")
	i := 0
	for _, w := range want {
		match := func(l string) bool { return l == w }
		if p, ok := strings.CutSuffix(w, "*"); ok {
			match = func(l string) bool { return strings.HasPrefix(l, p) }
		}
		for i < len(lines) && !match(lines[i]) {
			i++
		}
		if !assert.Less(t, i, len(lines), "line %q missing or out of order in\n%s", w, got) {
			return
		}
		i++
	}
}

// The command mode: the test binary itself plays the command (TestMain
// below), writing a recording and exiting as told.
func TestConvertCommand(t *testing.T) {
	exe, err := os.Executable()
	require.NoError(t, err)
	tests := []struct {
		name       string
		recording  string // "" for none
		exit       int
		status     int
		wantResult string
	}{
		{"passing run", "pass", 0, exitPass, "ok 1 TestPass"},
		{"all skipped", "skip", 0, exitSkip, "ok 2 TestAllSkipped # SKIP every subtest skipped"},
		{"failing run, test2json's exit 1", "fail", 1, exitFail, "not ok 2 TestFail"},
		{"crash before any test", "", 2, exitFail, "not ok 1 go-test"},
		{"passing events but a bad exit", "pass", 3, exitFail, "not ok 2 go-test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("KTAP_TEST_HELPER", tt.recording+","+strconv.Itoa(tt.exit))
			var out, errOut bytes.Buffer
			status := runMain([]string{"--", exe}, nil, &out, &errOut)
			assert.Equal(t, tt.status, status, out.String())
			assert.NoError(t, checkKTAP(out.String()), out.String())
			assert.Contains(t, strings.Split(out.String(), "\n"), tt.wantResult, out.String())
		})
	}
	t.Run("missing command", func(t *testing.T) {
		var out bytes.Buffer
		status := runMain([]string{filepath.Join(t.TempDir(), "none")}, nil, &out, &out)
		assert.Equal(t, exitFail, status)
		assert.NoError(t, checkKTAP(out.String()), out.String())
	})
}

func TestMain(m *testing.M) {
	if h, ok := os.LookupEnv("KTAP_TEST_HELPER"); ok {
		rec, code, _ := strings.Cut(h, ",")
		if rec != "" {
			b, err := os.ReadFile(filepath.Join("testdata", rec+".json"))
			if err != nil {
				panic(err)
			}
			os.Stdout.Write(b)
		} else {
			fmt.Fprintln(os.Stderr, "fatal error: the helper crashed")
		}
		n, _ := strconv.Atoi(code)
		os.Exit(n)
	}
	os.Exit(m.Run())
}

// The checker itself must reject what is not KTAP.
func TestCheckKTAP(t *testing.T) {
	tests := []struct {
		name, in string
		ok       bool
	}{
		{"flat", "TAP version 13\n1..2\nok 1 a\n# diag\nnot ok 2 b\n", true},
		{"nested", "KTAP version 1\n1..1\n  KTAP version 1\n  1..2\n  ok 1 x\n  not ok 2 y\nnot ok 1 p\n", true},
		{"skip directive", "KTAP version 1\n1..1\nok 1 a # SKIP why\n", true},
		{"no version", "1..1\nok 1 a\n", false},
		{"no plan", "KTAP version 1\nok 1 a\n", false},
		{"plan too big", "KTAP version 1\n1..2\nok 1 a\n", false},
		{"plan too small", "KTAP version 1\n1..1\nok 1 a\nok 2 b\n", false},
		{"numbered from 0", "KTAP version 1\n1..1\nok 0 a\n", false},
		{"numbers skip", "KTAP version 1\n1..2\nok 1 a\nok 3 b\n", false},
		{"subtest not indented", "KTAP version 1\n1..1\nKTAP version 1\n1..1\nok 1 x\nok 1 p\n", false},
		{"subtest indented by one", "KTAP version 1\n1..1\n KTAP version 1\n 1..1\n ok 1 x\nok 1 p\n", false},
		{"child fails, parent ok", "KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  not ok 1 x\nok 1 p\n", false},
		{"subtests with no parent result", "KTAP version 1\n1..1\n  KTAP version 1\n  1..1\n  ok 1 x\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkKTAP(tt.in)
			if tt.ok {
				assert.NoError(t, err)
			} else {
				assert.Error(t, err)
			}
		})
	}
}

var (
	versionRE = regexp.MustCompile(`^(KTAP version 1|TAP version 1[34])$`)
	planRE    = regexp.MustCompile(`^1\.\.(\d+)$`)
	resultRE  = regexp.MustCompile(`^(ok|not ok) (\d+)( [^#]*)?( # .*)?$`)
)

// checkKTAP checks out against Documentation/dev-tools/ktap.rst: a version
// line, then a plan, at each level; results numbered from 1 that match the
// plan's count; a subtest's lines indented by two more spaces, followed by
// its parent's result, which is "not ok" when a child's is.
func checkKTAP(out string) error {
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	i, _, err := checkLevel(lines, 0, "")
	if err != nil {
		return err
	}
	for ; i < len(lines); i++ {
		if !strings.HasPrefix(lines[i], "#") {
			return fmt.Errorf("line %d: %q after the last result", i+1, lines[i])
		}
	}
	return nil
}

// checkLevel checks the level that starts at line i with that indentation
// and returns the line after its last result and whether a result was
// "not ok".
func checkLevel(lines []string, i int, indent string) (int, bool, error) {
	at := func(i int) (string, bool) {
		if i >= len(lines) || !strings.HasPrefix(lines[i], indent) {
			return "", false
		}
		return lines[i][len(indent):], true
	}
	if l, ok := at(i); !ok || !versionRE.MatchString(l) {
		return i, false, fmt.Errorf("line %d: want a version line indented by %d, got %q", i+1, len(indent), get(lines, i))
	}
	i++
	l, _ := at(i)
	m := planRE.FindStringSubmatch(l)
	if m == nil {
		return i, false, fmt.Errorf("line %d: want a plan indented by %d, got %q", i+1, len(indent), get(lines, i))
	}
	planned, _ := strconv.Atoi(m[1])
	i++
	num, anyNotOK, childNotOK, pending := 0, false, false, false
	for num < planned {
		l, ok := at(i)
		switch {
		case !ok:
			return i, false, fmt.Errorf("line %d: plan 1..%d at indentation %d, but %d results", i+1, planned, len(indent), num)
		case strings.HasPrefix(l, "  ") && versionRE.MatchString(strings.TrimPrefix(l, "  ")):
			if pending {
				return i, false, fmt.Errorf("line %d: a second subtest block without its parent's result", i+1)
			}
			var err error
			i, childNotOK, err = checkLevel(lines, i, indent+"  ")
			if err != nil {
				return i, false, err
			}
			pending = true
		case strings.TrimLeft(l, " ") != "" && strings.TrimLeft(l, " ")[0] == '#':
			i++
		case resultRE.MatchString(l):
			r := resultRE.FindStringSubmatch(l)
			n, _ := strconv.Atoi(r[2])
			if n != num+1 {
				return i, false, fmt.Errorf("line %d: result %d, want %d", i+1, n, num+1)
			}
			notOK := r[1] == "not ok"
			if pending && childNotOK && !notOK {
				return i, false, fmt.Errorf("line %d: %q has a failed subtest but says ok", i+1, l)
			}
			anyNotOK = anyNotOK || notOK
			pending, childNotOK = false, false
			num++
			i++
		default:
			return i, false, fmt.Errorf("line %d: unexpected %q at indentation %d", i+1, get(lines, i), len(indent))
		}
	}
	if pending {
		return i, false, fmt.Errorf("line %d: subtests without their parent's result", i+1)
	}
	return i, anyNotOK, nil
}

func get(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return "(end)"
}
