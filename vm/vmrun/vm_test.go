package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/netdev-go/busypolltest/vm/vminit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets this test binary be the VM's /init too, as vmrun is: TestVM
// boots a VM with this binary as both init and payload.
func TestMain(m *testing.M) {
	if os.Getpid() == 1 {
		vminit.Main()
	}
	os.Exit(m.Run())
}

// payloadEnv tells TestGuestPayload, inside the VM, what to do.
const payloadEnv = "BUSYPOLLTEST_VMRUN_PAYLOAD"

// TestGuestPayload is the payload of TestVM, run inside the VM. It checks
// what vminit promises: root, testdata, loopback, mounts.
func TestGuestPayload(t *testing.T) {
	mode := os.Getenv(payloadEnv)
	if mode == "" {
		t.Skip("runs only inside the VM, as the payload of TestVM")
	}
	require.Equal(t, 0, os.Geteuid(), "runs as root")
	assert.Equal(t, "1", os.Getenv("BUSYPOLLTEST_VM"))
	b, err := os.ReadFile("testdata/guest.txt")
	require.NoError(t, err)
	assert.Equal(t, "testdata reached the VM\n", string(b))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err, "loopback is up")
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	require.NoError(t, err)
	c.Close()
	mounts, err := os.ReadFile("/proc/mounts")
	require.NoError(t, err)
	for _, m := range []string{"proc /proc proc ", "sysfs /sys sysfs ", "devtmpfs /dev devtmpfs "} {
		assert.Contains(t, string(mounts), m)
	}
	fmt.Println("payload: checks done")
	if mode == "exit3" {
		os.Exit(3)
	}
}

// TestVM boots the kernel that vmrun would use (BUSYPOLLTEST_KERNEL or the
// cache) and checks that the test's output and exit status come back.
func TestVM(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM (a few seconds each): skipped with -short")
	}
	o, _, _, err := parseOptions([]string{"binary"}, os.Getenv, io.Discard)
	require.NoError(t, err)
	if _, err := exec.LookPath(o.qemu); err != nil {
		t.Skipf("needs QEMU: %s not found (install it with vm/install-deps)", o.qemu)
	}
	if _, _, err := findKernel(o); err != nil {
		t.Skipf("needs a VM kernel: %v", err)
	}
	self, err := os.Executable()
	require.NoError(t, err)
	if err := checkStatic("this test binary", self); err != nil {
		t.Skipf("needs a static test binary to serve as /init: %v", err)
	}
	tests := []struct {
		mode string
		code int
		out  string
	}{
		{"pass", 0, "--- PASS: TestGuestPayload"},
		{"exit3", 3, "payload: checks done"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Setenv(payloadEnv, tt.mode)
			var stdout, stderr bytes.Buffer
			code := run([]string{"-timeout", "3m", self, "-test.run=^TestGuestPayload$", "-test.v"}, &stdout, &stderr)
			assert.Equal(t, tt.code, code, "exit status; stderr:\n%s", stderr.String())
			assert.Contains(t, stdout.String(), tt.out)
			assert.Contains(t, stdout.String(), "payload: checks done\n", "raw output: no \\r\\n")
			assert.NotContains(t, stdout.String(), "\x00vmrun:", "status records are stripped")
			assert.False(t, strings.Contains(stdout.String(), "\r"), "no carriage returns")
		})
	}
}
