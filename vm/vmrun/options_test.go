package main

import (
	"io"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseOptions(t *testing.T) {
	env := map[string]string{
		envKernel:  "/k/bzImage",
		envTimeout: "90s",
		envMem:     "2G",
		envSMP:     "4",
		envVerbose: "1",
		envEnv:     "FOO,BAR",
		envNICs:    "3",
	}
	o, bin, args, err := parseOptions([]string{"-nics", "2", "-mem", "768M", "-env", "BAZ", "./x.test", "-test.v", "-mem", "1"}, envFunc(env), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "./x.test", bin)
	assert.Equal(t, []string{"-test.v", "-mem", "1"}, args, "flags after the binary belong to it")
	assert.Equal(t, "/k/bzImage", o.kernel)
	assert.Equal(t, envKernel, o.kernelSource)
	assert.Equal(t, 90*time.Second, o.timeout)
	assert.Equal(t, 768, o.memMiB, "the flag overrides the environment")
	assert.Equal(t, 4, o.smp)
	assert.Equal(t, 2, o.nics, "the flag overrides the environment")
	assert.True(t, o.verbose)
	assert.Equal(t, []string{"FOO", "BAR", "BAZ"}, o.envNames)
	assert.Equal(t, defaultCache, o.cache)

	o, _, _, err = parseOptions([]string{"-kernel", "k2", "b"}, envFunc(env), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "k2", o.kernel)
	assert.Equal(t, "-kernel", o.kernelSource)

	o, _, _, err = parseOptions([]string{"b"}, envFunc(nil), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 1024, o.memMiB)
	assert.Equal(t, 2, o.smp)
	assert.Zero(t, o.nics)
	if _, err := os.Stat(qbootROM); err == nil {
		assert.Equal(t, qbootROM, o.bios, "qboot where it is installed")
	} else {
		assert.Empty(t, o.bios, "QEMU's own firmware without qboot")
	}
	o, _, _, err = parseOptions([]string{"-bios", "default", "b"}, envFunc(nil), io.Discard)
	require.NoError(t, err)
	assert.Empty(t, o.bios, "-bios default: QEMU's own firmware")
	o, _, _, err = parseOptions([]string{"b"}, envFunc(map[string]string{envBIOS: "/x/bios.bin"}), io.Discard)
	require.NoError(t, err)
	assert.Equal(t, "/x/bios.bin", o.bios)
	o, _, _, err = parseOptions([]string{"b"}, envFunc(nil), io.Discard)
	require.NoError(t, err)
	assert.Zero(t, o.timeout, "derived later from -test.timeout")
	assert.Equal(t, defaultBootTimeout, o.bootTimeout)
	assert.Equal(t, "qemu-system-x86_64", o.qemu)
}

func TestParseOptionsErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"no binary", nil, nil, "missing the test binary"},
		{"bad mem", []string{"-mem", "lots", "b"}, nil, `-mem="lots": want a size in MiB such as 768M or in GiB such as 1G`},
		{"small mem", []string{"-mem", "64M", "b"}, nil, `-mem="64M": must be from 256M to 64G`},
		{"huge mem", []string{"-mem", "65G", "b"}, nil, `-mem="65G": must be from 256M to 64G`},
		{"env mem", []string{"b"}, map[string]string{envMem: "0"}, `BUSYPOLLTEST_VM_MEM="0": must be from 256M to 64G`},
		{"smp", []string{"-smp", "0", "b"}, nil, `-smp="0": must be a number of CPUs from 1 to 64`},
		{"nics", []string{"-nics", "9", "b"}, nil, `-nics="9": must be a number of NICs from 0 to 8`},
		{"env nics", []string{"b"}, map[string]string{envNICs: "two"}, `BUSYPOLLTEST_VM_NICS="two": must be a number of NICs from 0 to 8`},
		{"timeout", []string{"-timeout", "soon", "b"}, nil, `-timeout="soon": not a duration such as 90s or 10m`},
		{"negative timeout", []string{"b"}, map[string]string{envTimeout: "-1s"}, "BUSYPOLLTEST_VM_TIMEOUT=-1s: must be more than 0 and at most 24h0m0s"},
		{"huge timeout", []string{"-timeout", "25h", "b"}, nil, "-timeout=25h0m0s: must be more than 0 and at most 24h0m0s"},
		{"boot timeout", []string{"-boot-timeout", "0s", "b"}, nil, "-boot-timeout=0s: must be more than 0"},
		{"verbose", []string{"b"}, map[string]string{envVerbose: "yes"}, `BUSYPOLLTEST_VM_VERBOSE="yes": want 1, 0, true or false`},
		{"env name", []string{"-env", "A-B", "b"}, nil, `environment variable name "A-B"`},
		{"unknown flag", []string{"-bogus", "b"}, nil, "flag provided but not defined: -bogus"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, _, err := parseOptions(tt.args, envFunc(tt.env), io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestTestFlag(t *testing.T) {
	tests := []struct {
		args []string
		val  string
		ok   bool
	}{
		{nil, "", false},
		{[]string{"-test.timeout=10m0s"}, "10m0s", true},
		{[]string{"--test.timeout=5s"}, "5s", true},
		{[]string{"-test.timeout", "7s", "-test.v"}, "7s", true},
		{[]string{"-test.timeout=1s", "-test.timeout=2s"}, "2s", true},
		{[]string{"-test.timeoutx=1s"}, "", false},
		{[]string{"-test.timeout"}, "", false},
		{[]string{"--", "-test.timeout=1s"}, "", false},
	}
	for _, tt := range tests {
		val, ok := testFlag(tt.args, "test.timeout")
		assert.Equal(t, tt.ok, ok, "%q", tt.args)
		assert.Equal(t, tt.val, val, "%q", tt.args)
	}
}

func TestTimeLimit(t *testing.T) {
	tests := []struct {
		name     string
		explicit time.Duration
		args     []string
		want     time.Duration
		err      string
	}{
		{"default", 0, nil, defaultTimeout, ""},
		{"explicit wins", time.Minute, []string{"-test.timeout=1h"}, time.Minute, ""},
		{"from the test", 0, []string{"-test.paniconexit0", "-test.timeout=2m0s"}, 2*time.Minute + timeoutMargin, ""},
		{"no test timeout", 0, []string{"-test.timeout=0s"}, defaultTimeout, ""},
		{"capped", 0, []string{"-test.timeout=100h"}, maxTimeout + timeoutMargin, ""},
		{"bad", 0, []string{"-test.timeout=forever"}, 0, `test flag -test.timeout="forever": not a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, source, err := timeLimit(tt.explicit, tt.args)
			if tt.err != "" {
				assert.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
			assert.NotEmpty(t, source)
		})
	}
}

func TestGuestEnv(t *testing.T) {
	host := []string{
		"PATH=/usr/bin", "HOME=/home/me", "GOTRACEBACK=all", "GODEBUG=x=1",
		"BUSYPOLLTEST_SIZE=2M", "BUSYPOLLTEST_KERNEL=/k", "BUSYPOLLTEST_VM_MEM=2G",
		"EXTRA=yes", "OTHER=no", "broken",
	}
	assert.Equal(t, []string{
		"BUSYPOLLTEST_SIZE=2M", "EXTRA=yes", "GODEBUG=x=1", "GOTRACEBACK=all",
	}, guestEnv(host, []string{"EXTRA"}))
}

func TestOutputDirs(t *testing.T) {
	dirs, warnings := outputDirs([]string{
		"-test.v", "-test.cpuprofile=cpu.out", "-test.coverprofile=/tmp/go-build1/b001/_cover_.out",
		"-test.gocoverdir=/tmp/go-build1/b001/gocoverdir", "-test.outputdir", "out",
	}, "/work/pkg")
	assert.Equal(t, []string{"/tmp/go-build1/b001", "/work/pkg/out", "/tmp/go-build1/b001/gocoverdir"}, dirs)
	assert.Len(t, warnings, 4)
	assert.Contains(t, warnings[1], "-test.cpuprofile=/work/pkg/out/cpu.out: written inside the VM")
	assert.Contains(t, warnings[0], "-test.coverprofile=/tmp/go-build1/b001/_cover_.out: written inside the VM and not copied back")

	dirs, warnings = outputDirs([]string{"-test.v", "-test.run=X"}, "/work/pkg")
	assert.Empty(t, dirs)
	assert.Empty(t, warnings)
}
