package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/netdev-go/busypolltest/vm/vminit"
)

// vmConfig is one VM run.
type vmConfig struct {
	qemu, kernel     string
	initrd           *os.File // the initramfs, passed as fd 5
	memMiB, smp      int
	nics             int    // virtio-net NICs on QEMU hub 0
	tscKHz           int64  // the host's TSC rate for tsc_early_khz=; 0: none
	hz               int    // the kernel's CONFIG_HZ, for lpj=; 0: unknown
	kernelArgs       string // command line words for this kernel (kernel.bootArgs)
	bios             string // firmware for -bios; "": QEMU's default
	append           string // extra kernel command line
	nonce            string
	limit, bootLimit time.Duration
	stdout           io.Writer           // the test's output
	onJob            func(vminit.Status) // a batch's Begin and End records, in order with the output
	console          io.Writer           // optional copy of the kernel console
	signals          <-chan os.Signal
}

// vmResult is how a VM run ended.
type vmResult struct {
	final       *vminit.Status // nil: the guest never reported
	protoErrs   []error        // malformed status records
	readyAfter  time.Duration  // when init came up; 0 if never
	elapsed     time.Duration
	qemuErr     error  // QEMU's own exit: nil for a clean power off
	qemuOutput  string // what QEMU printed itself
	timedOut    bool   // the hard limit was reached
	bootTimeout bool   // init did not come up in time
	signal      os.Signal
	console     *tailBuffer
	reports     []kernelReport // kernel trouble on the console
	moreReports int            // reports beyond those kept
}

// Kernel command line. console=ttyS0 is the kernel console (captured, shown
// on failure); ttyS1 carries the test's output. panic=-1 and -no-reboot turn
// a kernel panic into a QEMU exit.
//
// noapictimer: under TCG the local APIC timer fails the kernel's check
// against the PIT ("APIC timer disabled due to verification failure", seen
// in every boot measured), after 0.2 s of calibrating it; the kernel then
// runs its per-CPU timers through a broadcast device. noapictimer goes there
// directly (arch/x86/kernel/apic/apic.c: setup_boot_APIC_clock), so every
// boot has the same timers and none pays for the calibration. (TCG offers no
// TSC deadline timer, which would make the question moot.)
const baseCmdline = "console=ttyS0 panic=-1 oops=panic rdinit=/init tsc=reliable no_timer_check noapictimer i8042.noaux i8042.nomux i8042.nopnp i8042.dumbkbd"

// qemuArgs is the QEMU command line. Serial port 0 writes to fd 3 and port 1
// to fd 4 (pipes of the runner); the initramfs is fd 5. -M pc with
// single-threaded TCG: on the project's machines /dev/kvm is a PVM host on
// which normal guests fail or hang, -M microvm hung, and multi-threaded TCG
// with 2 vCPUs crashed the guest (Oops: int3) in 2 of 60 boots, against 0 of
// 120 single-threaded.
func qemuArgs(c *vmConfig) []string {
	cmdline := baseCmdline
	if c.tscKHz > 0 {
		cmdline += fmt.Sprintf(" tsc_early_khz=%d", c.tscKHz)
		if c.hz > 0 {
			// lpj=: loops per jiffy of the delay loop, which on x86
			// counts TSC cycles (udelay waits lpj*HZ per second): the
			// TSC rate in Hz over the kernel's HZ. Without it the second
			// vCPU times its own delay loop at boot
			// (calibrate_delay_direct, 0.1 s under TCG).
			cmdline += fmt.Sprintf(" lpj=%d", c.tscKHz*1000/int64(c.hz))
		}
	}
	if c.kernelArgs != "" {
		cmdline += " " + c.kernelArgs
	}
	if c.append != "" {
		cmdline += " " + c.append
	}
	args := []string{
		"-M", "pc", "-accel", "tcg,thread=single", "-cpu", "max",
		"-smp", fmt.Sprint(c.smp), "-m", fmt.Sprintf("%dM", c.memMiB),
		"-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
		"-kernel", c.kernel, "-initrd", "/dev/fd/5", "-append", cmdline,
		"-chardev", "file,id=console,path=/dev/fd/3",
		"-chardev", "file,id=payload,path=/dev/fd/4",
		"-serial", "chardev:console", "-serial", "chardev:payload",
	}
	if c.bios != "" {
		args = append(args, "-bios", c.bios)
	}
	return append(args, nicArgs(c.nics)...)
}

// nicArgs joins n virtio-net NICs with one QEMU hub: a frame sent by one
// reaches all the others, and nothing else (no host network, no user-mode
// network, no tap). Each has a fixed MAC address (52:54:00:00:00:01, ...)
// and no boot ROM (the firmware would run it at every boot).
func nicArgs(n int) []string {
	var args []string
	for i := range n {
		id := fmt.Sprintf("nic%d", i)
		args = append(args,
			"-netdev", fmt.Sprintf("hubport,id=%s,hubid=0", id),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=%s,mac=52:54:00:00:00:%02x,romfile=", id, i+1))
	}
	return args
}

// runVM boots QEMU and waits until the guest reports the test's exit status
// and powers off, the time limit passes, or a signal arrives. QEMU runs in
// its own process group, is killed with the group on every way out, and gets
// SIGKILL if the runner dies (Pdeathsig).
func runVM(c *vmConfig) *vmResult {
	res := &vmResult{console: newTailBuffer(64 << 10)}
	conR, conW, err := os.Pipe()
	if err != nil {
		res.qemuErr = err
		return res
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		res.qemuErr = err
		return res
	}
	var qemuOut bytes.Buffer
	cmd := exec.Command(c.qemu, qemuArgs(c)...)
	cmd.ExtraFiles = []*os.File{conW, outW, c.initrd}
	cmd.Stdout = &limitedBuffer{b: &qemuOut, max: 16 << 10}
	cmd.Stderr = cmd.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}

	start := time.Now()
	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the thread that started the child ends,
		// so keep this goroutine on its thread until QEMU is gone.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	err = <-started
	conW.Close()
	outW.Close()
	if err != nil {
		conR.Close()
		outR.Close()
		res.qemuErr = fmt.Errorf("start QEMU: %w", err)
		return res
	}
	kill := func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }

	var mu sync.Mutex // guards res fields set by the readers
	ready := make(chan struct{})
	final := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		w := io.Writer(res.console)
		if c.console != nil {
			w = io.MultiWriter(res.console, c.console)
		}
		trouble := newTroubleScanner()
		lw := &lineWatcher{onLine: trouble.Line}
		_, _ = io.Copy(io.MultiWriter(w, lw), conR)
		lw.Flush()
		conR.Close()
		mu.Lock()
		res.reports, res.moreReports = trouble.Reports()
		mu.Unlock()
	}()
	go func() {
		defer readers.Done()
		f := newStatusFilter(c.stdout, c.nonce, func(s vminit.Status) {
			mu.Lock()
			defer mu.Unlock()
			switch {
			case s.Kind == vminit.Ready && res.readyAfter == 0:
				res.readyAfter = time.Since(start)
				close(ready)
			case (s.Kind == vminit.Begin || s.Kind == vminit.End) && c.onJob != nil:
				c.onJob(s)
			case s.Final() && res.final == nil:
				res.final = &s
				close(final)
			}
		}, func(err error) {
			mu.Lock()
			res.protoErrs = append(res.protoErrs, err)
			mu.Unlock()
		})
		_, _ = io.Copy(f, outR)
		_ = f.Close()
		outR.Close()
	}()

	limit := time.NewTimer(c.limit)
	defer limit.Stop()
	boot := time.NewTimer(c.bootLimit)
	defer boot.Stop()
	var grace <-chan time.Time
	var exitErr error
wait:
	for {
		select {
		case exitErr = <-exited:
			break wait
		case <-ready:
			ready = nil
			boot.Stop()
		case <-boot.C:
			res.bootTimeout = true
			kill()
		case <-limit.C:
			res.timedOut = true
			kill()
		case <-final:
			// The guest powers off next; do not wait long for it.
			final = nil
			grace = time.After(10 * time.Second)
		case <-grace:
			kill()
		case sig := <-c.signals:
			res.signal = sig
			kill()
		}
	}
	readers.Wait()
	res.elapsed = time.Since(start)
	res.qemuOutput = strings.TrimSpace(qemuOut.String())
	if exitErr != nil && !res.timedOut && !res.bootTimeout && res.signal == nil {
		var ee *exec.ExitError
		if errors.As(exitErr, &ee) && ee.ExitCode() == -1 && res.final != nil {
			exitErr = nil // killed after the guest reported: the grace kill
		}
		res.qemuErr = exitErr
	}
	return res
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
	max int
}

func newTailBuffer(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// Lines returns the last n lines, without carriage returns.
func (t *tailBuffer) Lines(n int) []string {
	t.mu.Lock()
	s := strings.ReplaceAll(string(t.buf), "\r", "")
	t.mu.Unlock()
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return nil
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

// lineWatcher calls onLine for each complete line written to it.
type lineWatcher struct {
	part   []byte
	onLine func(string)
}

func (l *lineWatcher) Write(p []byte) (int, error) {
	l.part = append(l.part, p...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		l.onLine(strings.TrimRight(string(l.part[:i]), "\r"))
		l.part = l.part[i+1:]
	}
	if len(l.part) > 4096 { // a very long line: look at it in pieces
		l.onLine(string(l.part))
		l.part = nil
	}
	return len(p), nil
}

// Flush hands on an unfinished last line.
func (l *lineWatcher) Flush() {
	if len(l.part) > 0 {
		l.onLine(strings.TrimRight(string(l.part), "\r"))
		l.part = nil
	}
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	b   *bytes.Buffer
	max int
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if room := l.max - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}
