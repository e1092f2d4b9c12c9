package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// qemuWithMarker returns the pids of processes whose command line holds
// marker.
func qemuWithMarker(t *testing.T, marker string) []string {
	t.Helper()
	cmdlines, err := filepath.Glob("/proc/[0-9]*/cmdline")
	require.NoError(t, err)
	var pids []string
	for _, c := range cmdlines {
		b, err := os.ReadFile(c)
		if err == nil && bytes.Contains(b, []byte(marker)) {
			pids = append(pids, filepath.Base(filepath.Dir(c)))
		}
	}
	return pids
}

// TestVM builds vmrun and a small static payload (testdata/payload), boots
// the kernel vmrun would use (BUSYPOLLTEST_KERNEL or the newest cached one)
// and checks, end to end: the payload's output and exit status come back,
// the time limit and SIGINT kill QEMU, no QEMU is left behind, the guest has
// no NIC by default, with -nics 2 it has two virtio-net NICs that reach
// each other, and -batch runs several binaries in one VM, each with its
// ok or FAIL line.
func TestVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots VMs (a few seconds each): skipped with -short")
	}
	o, _, _, err := parseOptions([]string{"binary"}, os.Getenv, io.Discard)
	require.NoError(t, err)
	if _, err := exec.LookPath(o.qemu); err != nil {
		t.Skipf("needs QEMU: %s not found (install it with vm/install-deps)", o.qemu)
	}
	if _, err := findKernel(o); err != nil {
		t.Skipf("needs a VM kernel: %v", err)
	}
	// vm/as-nobody builds vmrun and the payload as root and names the
	// folder (a normal user's Go build cache would start empty).
	bin := os.Getenv("BUSYPOLLTEST_TESTVM_BIN")
	if bin == "" {
		goTool, err := exec.LookPath("go")
		if err != nil {
			t.Skipf("needs the go command to build vmrun and the payload: %v", err)
		}
		bin = t.TempDir()
		for _, b := range [][2]string{{"vmrun", "."}, {"payload", "./testdata/payload"}} {
			cmd := exec.Command(goTool, "build", "-o", filepath.Join(bin, b[0]), b[1])
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "go build %s:\n%s", b[1], out)
		}
	}
	vmrun, payload := filepath.Join(bin, "vmrun"), filepath.Join(bin, "payload")

	tests := []struct {
		name    string
		flags   []string
		mode    string
		code    int
		stdout  string
		stderr  string
		sigint  bool     // send SIGINT once the payload sleeps
		noReady bool     // the VM is stopped before init runs
		batch   []string // -batch: one job per mode, instead of one payload
	}{
		{name: "exit 0", mode: "exit0", code: 0, stdout: "payload: checks done\n"},
		{name: "exit 3", mode: "exit3", code: 3, stdout: "payload: checks done\n"},
		{name: "two NICs on a hub", flags: []string{"-nics", "2"}, mode: "nics", code: 0, stdout: "payload: eth0 and eth1 passed a TCP connection\npayload: checks done\n"},
		{name: "SIGINT", mode: "sleep", code: 128 + int(syscall.SIGINT), stdout: "payload: sleeping\n", stderr: "vmrun: got interrupt: killed QEMU", sigint: true},
		{name: "batch", batch: []string{"exit0", "exit3", "exit0"}, code: 1,
			stdout: "payload: checks done\nok  \tjob-0\t"},
		{name: "time limit", flags: []string{"-timeout", "1s"}, mode: "sleep", code: exitTimeLimit, stderr: "vmrun: time limit of 1s reached (-timeout or BUSYPOLLTEST_VM_TIMEOUT): killed QEMU", noReady: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Two VMs at once on two CPUs: each is one host thread.
			t.Parallel()
			marker := fmt.Sprintf("vmrun_test=%d_%d", os.Getpid(), time.Now().UnixNano())
			args := append([]string{"-append", marker}, tt.flags...)
			if tt.batch != nil {
				dir, err := os.Getwd()
				require.NoError(t, err)
				var jobs strings.Builder
				for i, mode := range tt.batch {
					fmt.Fprintf(&jobs, "job-%d %s %s -mode=%s\n", i, dir, payload, mode)
				}
				file := filepath.Join(t.TempDir(), "jobs")
				require.NoError(t, os.WriteFile(file, []byte(jobs.String()), 0o644))
				args = append(args, "-batch", file)
			} else {
				args = append(args, payload, "-mode="+tt.mode)
			}
			cmd := exec.Command(vmrun, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stderr = &stderr
			pipe, err := cmd.StdoutPipe()
			require.NoError(t, err)
			require.NoError(t, cmd.Start())
			t.Cleanup(func() { _ = cmd.Process.Kill() })
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				stdout.WriteString(sc.Text() + "\n")
				if tt.sigint && sc.Text() == "payload: sleeping" {
					assert.NotEmpty(t, qemuWithMarker(t, marker), "QEMU runs")
					require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
				}
			}
			err = cmd.Wait()
			if skip, ok := strings.CutPrefix(stdout.String(), "payload: skip: "); ok {
				t.Skip(strings.TrimSpace(skip))
			}
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else {
				require.NoError(t, err)
			}
			assert.Equal(t, tt.code, code, "exit status; stderr:\n%s", stderr.String())
			assert.Contains(t, stdout.String(), tt.stdout)
			assert.Contains(t, stderr.String(), tt.stderr)
			assert.NotContains(t, stdout.String(), "payload: FAIL")
			assert.NotContains(t, stdout.String(), "\x00vmrun:", "status records are stripped")
			assert.NotContains(t, stdout.String(), "\r", "raw output: no carriage returns")
			if tt.batch != nil {
				// Each job's output, then its line; all in one VM.
				assert.Regexp(t, `(?s)^payload: checks done\nok  \tjob-0\t[0-9.]+s\n`+
					`payload: checks done\nFAIL\tjob-1\t[0-9.]+s \(exit 3\)\n`+
					`payload: checks done\nok  \tjob-2\t[0-9.]+s\n$`, stdout.String())
			}
			if tt.noReady {
				assert.Contains(t, stderr.String(), "kernel console", "the console tail explains")
			}
			assert.Empty(t, qemuWithMarker(t, marker), "no QEMU is left")
		})
	}
}
