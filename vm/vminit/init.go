package vminit

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/netdev-go/busypolltest/vm/kmod"
	"golang.org/x/sys/unix"
)

// BaseEnv is the environment of the test binary before Config.Env is added.
var BaseEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"HOME=/root",
	"TMPDIR=/tmp",
	"USER=root",
	"LOGNAME=root",
	// Lets a test tell that it runs in the VM.
	"BUSYPOLLTEST_VM=1",
}

type mount struct {
	source, target, fstype string
	flags                  uintptr
	data                   string
	optional               bool // a kernel without it still runs tests
}

var mounts = []mount{
	{"proc", "/proc", "proc", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", false},
	{"sysfs", "/sys", "sysfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", false},
	{"devtmpfs", "/dev", "devtmpfs", unix.MS_NOSUID, "mode=0755", false},
	{"tmpfs", "/dev/shm", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", true},
	{"tmpfs", "/tmp", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=1777", true},
	{"tmpfs", "/run", "tmpfs", unix.MS_NOSUID | unix.MS_NODEV, "mode=0755", true},
	{"debugfs", "/sys/kernel/debug", "debugfs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", true},
	// Trace events such as napi:napi_poll (a kernel with CONFIG_TRACING).
	{"tracefs", "/sys/kernel/tracing", "tracefs", unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC, "", true},
}

// under reports whether path is dir or inside it.
func under(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// Main is the VM's init: it mounts the usual file systems, brings loopback
// up, runs the test binary (or the batch of them) described at ConfigPath
// with its output on the payload port, reports its exit status there and
// powers the VM off. It never returns. Messages of init itself go to the
// kernel console.
func Main() {
	status := run()
	powerOff(status)
}

// payload is the open payload port, once there is one.
var payload *os.File

// nonce of the run, once the config is read.
var nonce string

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "vminit: "+format+"\n", args...)
}

func report(s Status) {
	if payload == nil || nonce == "" {
		logf("cannot report %v: no payload port", s)
		return
	}
	if _, err := payload.Write(Format(nonce, s)); err != nil {
		logf("report %v: %v", s, err)
	}
}

func run() (st Status) {
	defer func() {
		if r := recover(); r != nil {
			st = Status{Kind: Error, Msg: fmt.Sprintf("vminit panic: %v", r)}
		}
	}()
	start := time.Now()
	cfg, err := readConfig()
	if err != nil {
		return Status{Kind: Error, Msg: err.Error()}
	}
	// /dev/console came from the initramfs; the rest is mounted here.
	work := cfg.workDirs()
	for _, m := range mounts {
		if i := slices.IndexFunc(work, func(d string) bool { return under(d, m.target) }); m.fstype == "tmpfs" && i >= 0 {
			// The package folder with its testdata is in the initramfs.
			logf("not mounting tmpfs on %s: it holds the working folder %s", m.target, work[i])
			continue
		}
		if err := os.MkdirAll(m.target, 0o755); err != nil {
			logf("mkdir %s: %v", m.target, err)
		}
		err := unix.Mount(m.source, m.target, m.fstype, m.flags, m.data)
		if err != nil && !errors.Is(err, unix.EBUSY) {
			if m.optional {
				logf("mount %s on %s: %v (continuing without it)", m.fstype, m.target, err)
				continue
			}
			return Status{Kind: Error, Msg: fmt.Sprintf("mount %s on %s: %v", m.fstype, m.target, err)}
		}
	}
	nonce = cfg.Nonce
	payload, err = openPayload(cfg.Port)
	if err != nil {
		return Status{Kind: Error, Msg: err.Error()}
	}
	report(Status{Kind: Ready})

	if err := loadModules(cfg.Modules); err != nil {
		return Status{Kind: Error, Msg: err.Error()}
	}
	if err := loopbackUp(); err != nil {
		return Status{Kind: Error, Msg: fmt.Sprintf("bring loopback up: %v", err)}
	}
	if err := unix.Sethostname([]byte("busypolltest-vm")); err != nil {
		logf("sethostname: %v", err)
	}
	for _, d := range append(work, cfg.Mkdir...) {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return Status{Kind: Error, Msg: err.Error()}
		}
	}
	env := append(append([]string{}, BaseEnv...), cfg.Env...)
	logf("init ready after %v", time.Since(start).Round(time.Millisecond))
	if len(cfg.Jobs) == 0 {
		return runBinary(cfg.Binary, cfg.Args, cfg.Dir, env)
	}
	// A batch: every job runs, whatever the ones before it did, in the
	// same kernel (what one leaves behind, the next one sees).
	failed := 0
	for i, j := range cfg.Jobs {
		report(Status{Kind: Begin, Job: i})
		st := runBinary(j.Binary, j.Args, j.Dir, env)
		end := Status{Kind: End, Job: i}
		switch st.Kind {
		case Exit:
			end.Code = st.Code
		case Signal:
			end.Code, end.Msg = 128+st.Code, st.String()
		default:
			end.Code, end.Msg = 125, st.Msg
		}
		if end.Code != 0 {
			failed++
		}
		report(end)
	}
	if failed > 0 {
		return Status{Kind: Exit, Code: 1}
	}
	return Status{Kind: Exit}
}

// loadModules loads the kernel modules, in order (dependencies first).
func loadModules(paths []string) error {
	if len(paths) == 0 {
		return nil
	}
	start := time.Now()
	var names []string
	for _, p := range paths {
		if err := kmod.Load(p, ""); err != nil {
			return err
		}
		names = append(names, kmod.Name(p))
	}
	logf("loaded %d modules in %v: %s", len(paths), time.Since(start).Round(time.Millisecond), strings.Join(names, " "))
	return nil
}

// runBinary runs a test binary in dir with its output on the payload port
// and returns how it ended.
func runBinary(binary string, args []string, dir string, env []string) Status {
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = env
	cmd.Stdout = payload
	cmd.Stderr = payload
	logf("running %s", binary)
	if err := cmd.Start(); err != nil {
		return Status{Kind: Error, Msg: fmt.Sprintf("start test binary: %v", err)}
	}
	// As PID 1, init inherits every orphan (a test's killed children's
	// children): reap them all, and report the test binary's own status.
	// cmd.Wait is not called: the output goes straight to a file, so no
	// copying goroutine needs it.
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Status{Kind: Error, Msg: fmt.Sprintf("wait for the test binary: %v", err)}
		}
		if pid != cmd.Process.Pid {
			continue // an orphan, reaped
		}
		if ws.Signaled() {
			return Status{Kind: Signal, Code: int(ws.Signal()), Msg: unix.SignalName(ws.Signal())}
		}
		return Status{Kind: Exit, Code: ws.ExitStatus()}
	}
}

// workDirs returns the folders the test binaries run in: Dir, or the jobs'.
func (c *Config) workDirs() []string {
	if len(c.Jobs) == 0 {
		return []string{c.Dir}
	}
	dirs := make([]string, len(c.Jobs))
	for i, j := range c.Jobs {
		dirs[i] = j.Dir
	}
	return dirs
}

func readConfig() (*Config, error) {
	b, err := os.ReadFile(ConfigPath)
	if err != nil {
		return nil, fmt.Errorf("read run configuration: %w", err)
	}
	var cfg Config
	if err := json.Unmarshal(b, &cfg); err != nil {
		return nil, fmt.Errorf("decode %s: %w", ConfigPath, err)
	}
	if cfg.Nonce == "" || cfg.Port == "" {
		return nil, fmt.Errorf("%s: nonce and port are required", ConfigPath)
	}
	if len(cfg.Jobs) == 0 && (cfg.Binary == "" || !filepath.IsAbs(cfg.Dir)) {
		return nil, fmt.Errorf("%s: a binary and an absolute dir, or jobs, are required", ConfigPath)
	}
	for i, j := range cfg.Jobs {
		if j.Binary == "" || !filepath.IsAbs(j.Dir) {
			return nil, fmt.Errorf("%s: job %d (%s): a binary and an absolute dir are required", ConfigPath, i, j.Name)
		}
	}
	return &cfg, nil
}

// openPayload opens the payload serial port in raw mode, so that the
// bytes the test writes arrive unchanged (no \n to \r\n).
func openPayload(port string) (*os.File, error) {
	f, err := os.OpenFile(port, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open payload port: %w", err)
	}
	if err := makeRaw(int(f.Fd())); err != nil {
		f.Close()
		return nil, fmt.Errorf("payload port %s: %w", port, err)
	}
	return f, nil
}

func makeRaw(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return fmt.Errorf("get termios: %w", err)
	}
	t.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	t.Oflag &^= unix.OPOST
	t.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	t.Cflag &^= unix.CSIZE | unix.PARENB | unix.CBAUD
	t.Cflag |= unix.CS8 | unix.B115200
	t.Cc[unix.VMIN] = 1
	t.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return fmt.Errorf("set raw mode: %w", err)
	}
	return nil
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS: %w", err)
	}
	return nil
}

// powerOff reports the final status, waits until the serial ports have sent
// everything and ends the VM with a reset: QEMU runs with -no-reboot, so a
// reset makes it exit. A reset needs no ACPI (the kernel falls back to the
// keyboard controller and a triple fault), while a power off without ACPI
// only halts the CPUs. If the reset fails it tries a power off.
func powerOff(s Status) {
	if s.Kind == Error {
		logf("%s", s.Msg)
	}
	report(s)
	if payload != nil {
		// TCSBRK with a nonzero argument is tcdrain.
		if err := unix.IoctlSetInt(int(payload.Fd()), unix.TCSBRK, 1); err != nil {
			logf("drain payload port: %v", err)
		}
	}
	unix.Sync()
	err := unix.Reboot(unix.LINUX_REBOOT_CMD_RESTART)
	logf("reset: %v; powering off", err)
	err = unix.Reboot(unix.LINUX_REBOOT_CMD_POWER_OFF)
	logf("power off: %v", err)
	select {}
}
