// Command vmrun runs a static Go test binary as root inside a QEMU virtual
// machine, for go test's -exec flag:
//
//	CGO_ENABLED=0 go test -exec vm/exec ./...
//
// (vm/exec builds vmrun once and runs it.) vmrun boots a kernel (the one
// vm/debian-kernel cached last, or the one named by BUSYPOLLTEST_KERNEL or
// -kernel: a bzImage, a build tree, or a folder with lib/modules) with an
// initramfs that it writes itself: vmrun's own binary as /init (it runs
// package vm/vminit when it finds itself as PID 1), the test binary, the
// current folder's testdata tree at the same absolute path, and the kernel
// modules the tests need, which /init loads first.
// The test's output streams to stdout as it runs; vmrun exits with the test
// binary's exit status.
//
// Exit statuses of its own: 124 when the time limit was reached, 125 when
// the VM could not run the test (bad setting, boot failure, kernel panic),
// 128+N when the test binary was killed by signal N or vmrun itself got
// signal N (QEMU is then killed). In all those cases it explains on stderr,
// with the last lines of the kernel console.
//
// Run vmrun -h for its flags and the environment variables they default to.
package main

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/netdev-go/busypolltest/vm/vminit"
	"golang.org/x/sys/unix"
)

// Exit statuses of vmrun's own.
const (
	// exitKernelTrouble: the test binary ended (passed or failed), but the
	// kernel console shows a WARNING, BUG, Oops, lockdep, KASAN, RCU stall,
	// hung task or UBSAN report.
	exitKernelTrouble = 123
	exitTimeLimit     = 124
	exitVM            = 125
)

// consoleTail is how many kernel console lines explain a failure.
const consoleTail = 40

func main() {
	if os.Getpid() == 1 && os.Args[0] == "/init" {
		vminit.Main() // in the VM, started by the kernel
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	// Catch signals first, so that the temporary folder and QEMU go away.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT)
	defer signal.Stop(sigs)

	fail := func(err error) int {
		fmt.Fprintf(stderr, "vmrun: %v\n", err)
		return exitVM
	}
	o, binary, testArgs, err := parseOptions(args, os.Getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return fail(err)
	}
	var jobs []batchJob
	if o.batch != "" {
		f, err := os.Open(o.batch)
		if err != nil {
			return fail(fmt.Errorf("-batch: %w", err))
		}
		jobs, err = parseBatch(f, o.batch)
		f.Close()
		if err != nil {
			return fail(err)
		}
	} else {
		if binary, err = filepath.Abs(binary); err != nil {
			return fail(err)
		}
		dir, err := os.Getwd()
		if err != nil {
			return fail(err)
		}
		jobs = []batchJob{{name: filepath.Base(binary), dir: dir, binary: binary, args: testArgs}}
	}
	for _, j := range jobs {
		if err := checkStatic("test binary", j.binary); err != nil {
			return fail(err)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return fail(err)
	}
	if err := checkStatic("vmrun (it is also the VM's /init)", self); err != nil {
		return fail(err)
	}
	k, err := findKernel(o)
	if err != nil {
		return fail(err)
	}
	if err := checkKernel(k.image, k.source); err != nil {
		return fail(err)
	}
	modules, warnings, err := k.modulesFor(o.nics)
	if err != nil {
		return fail(err)
	}
	for _, w := range warnings {
		fmt.Fprintf(stderr, "vmrun: warning: %s\n", w)
	}
	kernel := k.image
	qemu, err := exec.LookPath(o.qemu)
	if err != nil {
		return fail(fmt.Errorf("QEMU (%s) not found: install it with vm/install-deps (as root), or name it with -qemu or %s", o.qemu, envQEMU))
	}
	var limit time.Duration
	var limitSource string
	if o.batch != "" {
		limit, limitSource, err = batchLimit(o.timeout, jobs)
	} else {
		limit, limitSource, err = timeLimit(o.timeout, testArgs)
	}
	if err != nil {
		return fail(err)
	}
	var mkdirs []string
	for _, j := range jobs {
		dirs, warnings := outputDirs(j.args, j.dir)
		for _, d := range dirs {
			if !slices.Contains(mkdirs, d) {
				mkdirs = append(mkdirs, d)
			}
		}
		for _, w := range warnings {
			fmt.Fprintf(stderr, "vmrun: warning: %s\n", w)
		}
	}

	cfg := &vminit.Config{
		Nonce: newNonce(),
		Port:  "/dev/ttyS1",
		Args:  testArgs,
		Env:   guestEnv(os.Environ(), o.envNames),
		Mkdir: mkdirs,
	}
	var reporter *batchReporter
	if o.batch != "" {
		cfg.Args = nil
		cfg.Jobs = make([]vminit.Job, len(jobs))
		for i, j := range jobs {
			cfg.Jobs[i] = vminit.Job{Name: j.name, Args: j.args}
		}
		reporter = &batchReporter{out: stdout, jobs: jobs, now: time.Now}
	}
	// The initramfs lives in memory (memfd) and reaches QEMU as an
	// inherited descriptor: nothing is left on disk, even after SIGKILL.
	initrd, size, warnings, err := buildInitramfs(self, jobs, cfg, modules)
	if err != nil {
		return fail(fmt.Errorf("write initramfs: %w", err))
	}
	defer initrd.Close()
	for _, w := range warnings {
		fmt.Fprintf(stderr, "vmrun: warning: %s\n", w)
	}
	if max := int64(o.memMiB) << 20 / 2; size > max {
		return fail(fmt.Errorf("the initramfs (test binary and testdata) is %d MiB; it must stay under half the VM's memory (%d MiB): raise -mem or %s", size>>20, max>>20, envMem))
	}

	vc := &vmConfig{
		qemu: qemu, kernel: kernel, initrd: initrd,
		memMiB: o.memMiB, smp: o.smp, nics: o.nics, append: o.append, nonce: cfg.Nonce,
		tscKHz: hostTSCkHz(), hz: k.hz(), kernelArgs: k.bootArgs(), bios: o.bios,
		limit: limit, bootLimit: min(o.bootTimeout, limit),
		stdout: stdout, signals: sigs,
	}
	if reporter != nil {
		vc.onJob = reporter.onJob
	}
	var consoles []io.Writer
	if o.console != "" {
		f, err := os.Create(o.console)
		if err != nil {
			return fail(fmt.Errorf("console file: %w", err))
		}
		defer f.Close()
		consoles = append(consoles, f)
	}
	if o.verbose {
		fmt.Fprintf(stderr, "vmrun: kernel %s (%s); %d modules; initramfs %d KiB; time limit %v (%s); firmware %s; host TSC %d kHz\n",
			k.describe(), k.source, len(modules), size>>10, limit, limitSource, cmp.Or(vc.bios, "QEMU's default"), vc.tscKHz)
		start := time.Now()
		consoles = append(consoles, &prefixWriter{w: stderr, prefix: func() string {
			return fmt.Sprintf("console %5.2fs| ", time.Since(start).Seconds())
		}})
	}
	if len(consoles) > 0 {
		vc.console = io.MultiWriter(consoles...)
	}
	res := runVM(vc)
	status := explain(res, vc, limitSource, o.verbose, stderr)
	if reporter != nil && reporter.ended < len(jobs) {
		for _, j := range jobs[reporter.ended:] {
			fmt.Fprintf(stdout, "FAIL\t%s\t(not run to its end: the VM stopped, exit %d)\n", j.name, status)
		}
	}
	return status
}

func buildInitramfs(initPath string, jobs []batchJob, cfg *vminit.Config, modules []moduleFile) (*os.File, int64, []string, error) {
	fd, err := unix.MemfdCreate("vmrun-initramfs", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), "vmrun-initramfs")
	warnings, err := writeInitramfs(f, initPath, jobs, cfg, modules)
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, nil, err
	}
	return f, st.Size(), warnings, nil
}

func newNonce() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails on Linux
	return hex.EncodeToString(b)
}

// explain turns a VM run into vmrun's exit status, and says on stderr what
// went wrong when it was not the test itself.
func explain(res *vmResult, vc *vmConfig, limitSource string, verbose bool, stderr io.Writer) int {
	tail := func() {
		lines := res.console.Lines(consoleTail)
		if len(lines) == 0 {
			fmt.Fprintf(stderr, "vmrun: the kernel console is empty (the kernel never started, or prints elsewhere)\n")
		} else {
			fmt.Fprintf(stderr, "vmrun: last %d lines of the kernel console (%s):\n", len(lines), vc.kernel)
			for _, l := range lines {
				fmt.Fprintf(stderr, "  | %s\n", l)
			}
		}
		if res.qemuOutput != "" {
			fmt.Fprintf(stderr, "vmrun: QEMU said:\n  %s\n", strings.ReplaceAll(res.qemuOutput, "\n", "\n  "))
		}
	}
	for _, err := range res.protoErrs {
		fmt.Fprintf(stderr, "vmrun: warning: %v\n", err)
	}
	if verbose {
		ready := "never"
		if res.readyAfter > 0 {
			ready = res.readyAfter.Round(time.Millisecond).String()
		}
		status := "none"
		if res.final != nil {
			status = res.final.String()
		}
		fmt.Fprintf(stderr, "vmrun: init up after %s; VM ran %v; status: %s\n", ready, res.elapsed.Round(time.Millisecond), status)
	}
	switch {
	case res.signal != nil:
		fmt.Fprintf(stderr, "vmrun: got %v: killed QEMU\n", res.signal)
		if s, ok := res.signal.(syscall.Signal); ok {
			return 128 + int(s)
		}
		return exitVM
	case res.timedOut:
		fmt.Fprintf(stderr, "vmrun: time limit of %v reached (%s): killed QEMU\n", vc.limit, limitSource)
		tail()
		return exitTimeLimit
	case res.bootTimeout:
		fmt.Fprintf(stderr, "vmrun: init did not start within %v of QEMU's start (-boot-timeout or %s): killed QEMU\n", vc.bootLimit, envBootTimeout)
		tail()
		return exitVM
	case res.final == nil:
		why := "the test binary started, but the VM stopped before reporting its exit status"
		if res.readyAfter == 0 {
			why = "the VM stopped before init reported in: the kernel did not boot, could not run /init from the initramfs, or init failed early (see its vminit: lines below)"
		}
		fmt.Fprintf(stderr, "vmrun: %s", why)
		if len(res.reports) > 0 {
			fmt.Fprintf(stderr, "; the kernel reported: %s", strings.TrimSpace(stripTimestamp(res.reports[len(res.reports)-1].First())))
		}
		if res.qemuErr != nil {
			fmt.Fprintf(stderr, " (QEMU: %v)", res.qemuErr)
		}
		fmt.Fprintln(stderr)
		// A panic is in the console's tail; earlier reports may not be.
		var earlier []kernelReport
		for _, r := range res.reports {
			if r.Kind != "panic" {
				earlier = append(earlier, r)
			}
		}
		if len(earlier) > 0 {
			printReports(stderr, earlier, res.moreReports, vc.kernel)
		}
		tail()
		return exitVM
	}
	if len(res.reports) > 0 {
		printReports(stderr, res.reports, res.moreReports, vc.kernel)
	}
	switch res.final.Kind {
	case vminit.Exit:
		if len(res.reports) > 0 {
			fmt.Fprintf(stderr, "vmrun: the test binary exited with status %d, but the kernel reported trouble (above): exit status %d\n", res.final.Code, exitKernelTrouble)
			return exitKernelTrouble
		}
		return res.final.Code
	case vminit.Signal:
		fmt.Fprintf(stderr, "vmrun: test binary %s\n", res.final)
		return 128 + res.final.Code
	default:
		fmt.Fprintf(stderr, "vmrun: in the VM: %s\n", res.final.Msg)
		tail()
		return exitVM
	}
}

// printReports writes the kernel's reports of trouble to stderr.
func printReports(stderr io.Writer, reports []kernelReport, more int, kernel string) {
	n := len(reports) + more
	fmt.Fprintf(stderr, "vmrun: the kernel console (%s) shows %d report(s) of kernel trouble:\n", kernel, n)
	for i, r := range reports {
		cut := ""
		if !r.Ended && len(r.Lines) >= reportLines {
			cut = fmt.Sprintf(", its first %d lines", len(r.Lines))
		}
		fmt.Fprintf(stderr, "vmrun: kernel report %d of %d (%s%s):\n", i+1, n, r.Kind, cut)
		for _, l := range r.Lines {
			fmt.Fprintf(stderr, "  | %s\n", l)
		}
	}
	if more > 0 {
		fmt.Fprintf(stderr, "vmrun: %d more report(s) not shown (see -console FILE for the whole console)\n", more)
	}
}

// prefixWriter writes each line with a prefix, without carriage returns.
type prefixWriter struct {
	w      io.Writer
	prefix func() string
	mid    bool // in the middle of a line
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	var out []byte
	for _, c := range b {
		if c == '\r' {
			continue
		}
		if !p.mid {
			out = append(out, p.prefix()...)
			p.mid = true
		}
		out = append(out, c)
		if c == '\n' {
			p.mid = false
		}
	}
	_, err := p.w.Write(out)
	return len(b), err
}
