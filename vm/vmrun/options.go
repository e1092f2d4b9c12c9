package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Environment variables read by the runner. Flags override them.
const (
	envKernel      = "BUSYPOLLTEST_KERNEL"     // kernel to boot: bzImage or folder
	envCache       = "BUSYPOLLTEST_CACHE"      // cache folder of vm/debian-kernel and vm/build-kernel
	envTimeout     = "BUSYPOLLTEST_VM_TIMEOUT" // hard limit for the whole VM run
	envBootTimeout = "BUSYPOLLTEST_VM_BOOT_TIMEOUT"
	envMem         = "BUSYPOLLTEST_VM_MEM"     // e.g. 1G, 512M
	envSMP         = "BUSYPOLLTEST_VM_SMP"     // virtual CPUs
	envVerbose     = "BUSYPOLLTEST_VM_VERBOSE" // 1: kernel console and timings on stderr
	envConsole     = "BUSYPOLLTEST_VM_CONSOLE" // file that receives the kernel console
	envAppend      = "BUSYPOLLTEST_VM_APPEND"  // extra kernel command line
	envEnv         = "BUSYPOLLTEST_VM_ENV"     // comma-separated names passed to the guest
	envQEMU        = "BUSYPOLLTEST_QEMU"       // QEMU binary
	envNICs        = "BUSYPOLLTEST_VM_NICS"    // virtio-net NICs on one QEMU hub
	envBIOS        = "BUSYPOLLTEST_VM_BIOS"    // firmware: a file, or "default"
)

// qboot is a minimal firmware that starts a -kernel faster than SeaBIOS
// and, unlike SeaBIOS, lists every vCPU in its MP table (a kernel without
// ACPI finds the second vCPU there). Debian's qemu-system-data has it.
const qbootROM = "/usr/share/qemu/qboot.rom"

const (
	defaultCache       = "/var/cache/busypolltest"
	defaultTimeout     = 10 * time.Minute
	defaultBootTimeout = 2 * time.Minute
	// timeoutMargin is added to the test binary's own -test.timeout, so that
	// the binary's timeout panic (with its goroutine dump) wins over ours;
	// it covers boot and power off.
	timeoutMargin = 30 * time.Second
	maxTimeout    = 24 * time.Hour
	minMemMiB     = 256
	maxMemMiB     = 64 << 10
	maxSMP        = 64
	maxNICs       = 8
)

// options are the runner's settings.
type options struct {
	kernel       string // empty: the default cached kernel
	kernelSource string // where kernel came from, for messages
	cache        string
	qemu         string
	timeout      time.Duration // 0: derive from -test.timeout or default
	bootTimeout  time.Duration
	memMiB       int
	smp          int
	nics         int    // virtio-net NICs joined by a QEMU hub
	bios         string // QEMU -bios; "": QEMU's default firmware
	verbose      bool
	console      string
	append       string
	envNames     []string
	batch        string // file listing the jobs of a batch run; "": one test binary
}

// parseOptions reads the runner's flags (before the test binary) with
// defaults from the environment, and returns the test binary's path and
// arguments.
func parseOptions(args []string, getenv func(string) string, stderr io.Writer) (*options, string, []string, error) {
	o := &options{
		kernel:      getenv(envKernel),
		cache:       getenv(envCache),
		qemu:        getenv(envQEMU),
		console:     getenv(envConsole),
		append:      getenv(envAppend),
		bootTimeout: defaultBootTimeout,
		memMiB:      1024,
		smp:         2,
	}
	if o.kernel != "" {
		o.kernelSource = envKernel
	}
	if o.cache == "" {
		o.cache = defaultCache
	}
	if o.qemu == "" {
		o.qemu = "qemu-system-x86_64"
	}
	var err error
	if v := getenv(envTimeout); v != "" {
		if o.timeout, err = parseLimit(envTimeout, v); err != nil {
			return nil, "", nil, err
		}
	}
	if v := getenv(envBootTimeout); v != "" {
		if o.bootTimeout, err = parseLimit(envBootTimeout, v); err != nil {
			return nil, "", nil, err
		}
	}
	if v := getenv(envMem); v != "" {
		if o.memMiB, err = parseMem(envMem, v); err != nil {
			return nil, "", nil, err
		}
	}
	if v := getenv(envSMP); v != "" {
		if o.smp, err = parseSMP(envSMP, v); err != nil {
			return nil, "", nil, err
		}
	}
	o.bios = getenv(envBIOS)
	if o.bios == "" {
		if _, err := os.Stat(qbootROM); err == nil {
			o.bios = qbootROM
		}
	}
	if v := getenv(envNICs); v != "" {
		if o.nics, err = parseNICs(envNICs, v); err != nil {
			return nil, "", nil, err
		}
	}
	if v := getenv(envVerbose); v != "" {
		if o.verbose, err = strconv.ParseBool(v); err != nil {
			return nil, "", nil, fmt.Errorf("%s=%q: want 1, 0, true or false", envVerbose, v)
		}
	}
	if v := getenv(envEnv); v != "" {
		o.envNames = strings.Split(v, ",")
	}

	fs := flag.NewFlagSet("vmrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: vmrun [flags] TEST-BINARY [test flags]\n       vmrun [flags] -batch FILE\n\n"+
			"Boots a kernel in QEMU and runs the static TEST-BINARY in it as root,\n"+
			"in the current folder's place (with its testdata), and exits with its status.\n"+
			"Made for: CGO_ENABLED=0 go test -exec vm/exec ./...\n\nflags:\n")
		fs.PrintDefaults()
	}
	fs.Func("kernel", "kernel to boot: a bzImage, a kernel build tree, or a folder with a bzImage and lib/modules/RELEASE (env "+envKernel+"; default: "+defaultCache+"/debian/default from vm/debian-kernel, else the newest "+defaultCache+"/kernels/*/bzImage)", func(v string) error {
		o.kernel, o.kernelSource = v, "-kernel"
		return nil
	})
	fs.Func("timeout", "hard limit for the VM run (env "+envTimeout+"; default: -test.timeout + 30s, else 10m)", func(v string) (err error) {
		o.timeout, err = parseLimit("-timeout", v)
		return err
	})
	fs.Func("boot-timeout", "limit from QEMU start until init runs (env "+envBootTimeout+"; default 2m)", func(v string) (err error) {
		o.bootTimeout, err = parseLimit("-boot-timeout", v)
		return err
	})
	fs.Func("mem", "VM memory, e.g. 1G or 768M (env "+envMem+"; default 1G)", func(v string) (err error) {
		o.memMiB, err = parseMem("-mem", v)
		return err
	})
	fs.Func("smp", "virtual CPUs (env "+envSMP+"; default 2)", func(v string) (err error) {
		o.smp, err = parseSMP("-smp", v)
		return err
	})
	fs.Func("nics", "virtio-net NICs joined by one QEMU hub, eth0, eth1, ... in the VM; no host network (env "+envNICs+"; default 0)", func(v string) (err error) {
		o.nics, err = parseNICs("-nics", v)
		return err
	})
	fs.StringVar(&o.bios, "bios", o.bios, "firmware, or \"default\" for QEMU's own (SeaBIOS) (env "+envBIOS+"; default "+qbootROM+" where it exists)")
	fs.BoolVar(&o.verbose, "v", o.verbose, "copy the kernel console to stderr and print timings (env "+envVerbose+"=1)")
	fs.StringVar(&o.console, "console", o.console, "write the whole kernel console to this file (env "+envConsole+")")
	fs.StringVar(&o.append, "append", o.append, "extra kernel command line words (env "+envAppend+")")
	fs.StringVar(&o.qemu, "qemu", o.qemu, "QEMU binary (env "+envQEMU+")")
	fs.StringVar(&o.batch, "batch", "", "run the test binaries this file lists, one per line as NAME DIR BINARY [test flags], one after the other in one VM, instead of TEST-BINARY; prints ok or FAIL per line")
	fs.Func("env", "comma-separated names of host variables to pass to the test (env "+envEnv+"); BUSYPOLLTEST_*, GOTRACEBACK, GODEBUG, GOMAXPROCS always pass", func(v string) error {
		o.envNames = append(o.envNames, strings.Split(v, ",")...)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return nil, "", nil, err
	}
	if o.batch != "" && fs.NArg() > 0 {
		return nil, "", nil, fmt.Errorf("-batch %s runs the binaries it lists: no TEST-BINARY (%q) after it", o.batch, fs.Arg(0))
	}
	if o.batch != "" {
		return o, "", nil, nil
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return nil, "", nil, errors.New("missing the test binary")
	}
	if o.bios == "default" {
		o.bios = ""
	}
	for _, n := range o.envNames {
		if !validEnvName(n) {
			return nil, "", nil, fmt.Errorf("environment variable name %q (in -env or %s) is not a valid name", n, envEnv)
		}
	}
	return o, fs.Arg(0), fs.Args()[1:], nil
}

func parseLimit(name, v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: not a duration such as 90s or 10m", name, v)
	}
	if d <= 0 || d > maxTimeout {
		return 0, fmt.Errorf("%s=%v: must be more than 0 and at most %v", name, d, maxTimeout)
	}
	return d, nil
}

func parseMem(name, v string) (int, error) {
	num, mul := v, 1
	switch {
	case strings.HasSuffix(v, "G"):
		num, mul = strings.TrimSuffix(v, "G"), 1024
	case strings.HasSuffix(v, "M"):
		num = strings.TrimSuffix(v, "M")
	}
	n, err := strconv.Atoi(num)
	if err != nil {
		return 0, fmt.Errorf("%s=%q: want a size in MiB such as 768M or in GiB such as 1G", name, v)
	}
	if n <= 0 || n > maxMemMiB || n*mul < minMemMiB || n*mul > maxMemMiB {
		return 0, fmt.Errorf("%s=%q: must be from %dM to %dG", name, v, minMemMiB, maxMemMiB>>10)
	}
	return n * mul, nil
}

func parseSMP(name, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxSMP {
		return 0, fmt.Errorf("%s=%q: must be a number of CPUs from 1 to %d", name, v, maxSMP)
	}
	return n, nil
}

func parseNICs(name, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > maxNICs {
		return 0, fmt.Errorf("%s=%q: must be a number of NICs from 0 to %d", name, v, maxNICs)
	}
	return n, nil
}

func validEnvName(n string) bool {
	if n == "" {
		return false
	}
	for i, r := range n {
		if !(r == '_' || 'A' <= r && r <= 'Z' || 'a' <= r && r <= 'z' || i > 0 && '0' <= r && r <= '9') {
			return false
		}
	}
	return true
}

// runnerVars are the runner's own settings: they are not passed to the test.
var runnerVars = map[string]bool{
	envKernel: true, envCache: true, envTimeout: true, envBootTimeout: true, envMem: true,
	envSMP: true, envVerbose: true, envConsole: true, envAppend: true, envEnv: true, envQEMU: true,
	envNICs: true, envBIOS: true,
}

// guestEnv picks the host variables that the test binary gets in the VM:
// BUSYPOLLTEST_* (but the runner's own settings), the Go runtime's
// GOTRACEBACK, GODEBUG and GOMAXPROCS, and the names listed in extra. The
// rest of the host environment (PATH, HOME, ...) makes no sense in the VM.
func guestEnv(host []string, extra []string) []string {
	want := map[string]bool{"GOTRACEBACK": true, "GODEBUG": true, "GOMAXPROCS": true}
	for _, n := range extra {
		want[n] = true
	}
	var env []string
	for _, kv := range host {
		name, _, ok := strings.Cut(kv, "=")
		if !ok || runnerVars[name] {
			continue
		}
		if want[name] || strings.HasPrefix(name, "BUSYPOLLTEST_") {
			env = append(env, kv)
		}
	}
	sort.Strings(env)
	return env
}

// testFlag finds the value of a test flag ("test.timeout") in the test
// binary's arguments, in any of the forms the flag package accepts:
// -name=v, --name=v, -name v. The last one wins, as in package flag.
func testFlag(args []string, name string) (string, bool) {
	var val string
	found := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		if !strings.HasPrefix(a, "-") {
			continue
		}
		a = strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		if a == name && i+1 < len(args) {
			val, found = args[i+1], true
			i++
		} else if v, ok := strings.CutPrefix(a, name+"="); ok {
			val, found = v, true
		}
	}
	return val, found
}

// timeLimit is the hard limit for the VM: the explicit one if given, else
// the test binary's -test.timeout plus a margin for boot and power off, else
// the default. A -test.timeout of 0 (no timeout) gets the default.
func timeLimit(explicit time.Duration, testArgs []string) (time.Duration, string, error) {
	if explicit > 0 {
		return explicit, "-timeout or " + envTimeout, nil
	}
	if v, ok := testFlag(testArgs, "test.timeout"); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			return 0, "", fmt.Errorf("test flag -test.timeout=%q: not a duration", v)
		}
		if d > 0 {
			if d > maxTimeout {
				d = maxTimeout
			}
			return d + timeoutMargin, fmt.Sprintf("-test.timeout=%v plus %v", d, timeoutMargin), nil
		}
	}
	return defaultTimeout, "default; set -timeout or " + envTimeout, nil
}

// outputFlags are test flags that make the test binary write files. Inside
// the VM these land in the VM's memory and are not copied back.
var outputFlags = []struct {
	name string
	dir  bool // the value is a folder, not a file
}{
	{"test.coverprofile", false}, {"test.cpuprofile", false}, {"test.memprofile", false},
	{"test.blockprofile", false}, {"test.mutexprofile", false}, {"test.trace", false},
	{"test.testlogfile", false}, {"test.outputdir", true}, {"test.gocoverdir", true},
	{"test.fuzzcachedir", true},
}

// outputDirs returns the folders the output flags need (so that the test
// does not fail on a missing folder) and a warning per flag.
func outputDirs(args []string, dir string) (dirs, warnings []string) {
	outdir := dir
	if v, ok := testFlag(args, "test.outputdir"); ok && v != "" {
		outdir = v
		if !filepath.IsAbs(outdir) {
			outdir = filepath.Join(dir, outdir)
		}
	}
	for _, f := range outputFlags {
		v, ok := testFlag(args, f.name)
		if !ok || v == "" {
			continue
		}
		d := v
		if !f.dir {
			if !filepath.IsAbs(v) {
				v = filepath.Join(outdir, v)
			}
			d = filepath.Dir(v)
		} else if !filepath.IsAbs(d) {
			d = filepath.Join(dir, d)
		}
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
		warnings = append(warnings, fmt.Sprintf("-%s=%s: written inside the VM and not copied back", f.name, v))
	}
	return dirs, warnings
}
