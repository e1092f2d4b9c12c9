package scenario

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/netdev-go/busypolltest/busypoll"
	"github.com/netdev-go/busypolltest/busypoll/drvenv"
	"github.com/netdev-go/busypolltest/busypoll/niclend"
)

// Limits of the flags.
const (
	maxSize      = 64 << 30
	maxUsecs     = 1<<31 - 1
	maxBudget    = 1<<16 - 1
	maxDefer     = 1<<31 - 1
	maxMaxEvents = busypoll.MaxMaxEvents
	// With fewer than 5 transfers per arm the rank-sum test cannot reach
	// p ≤ 0.005 (its smallest p is 1 of 70 splits, 0.014, for 4 and 4; 1 of
	// 252, 0.004, for 5 and 5); more than 20 only costs time.
	maxComparePairs = 20
	backendAuto     = "auto"
)

// Config is the validated form of the flags.
type Config struct {
	Size          int64  // bytes per transfer
	Usecs         uint32 // epoll busy_poll_usecs
	Budget        uint16 // epoll busy_poll_budget
	Prefer        bool   // epoll prefer_busy_poll
	MaxEvents     int    // epoll_wait max events
	DeferHardIRQs uint32 // NAPI defer-hard-irqs
	GROFlush      time.Duration
	Suspend       time.Duration // irq-suspend-timeout of the suspending scenarios
	Timeout       time.Duration // of one transfer
	ComparePairs  int           // most pairs of the suspension comparison; 0: the backend's default
	Backends      []string
	ServerPort    string // the nic backend's ports
	ClientPort    string
	Strict        bool // a backend was named: unavailable is a failure
	// KeepBusyRead leaves SO_BUSY_POLL as net.core.busy_read sets it.
	KeepBusyRead bool
	// Record is the file that every transfer is appended to; "": none.
	Record string
}

// Flags are the -busypoll.* flags as given, before validation.
type Flags struct {
	Size                          string
	Usecs, Budget, Prefer, Defers uint64
	MaxEvents                     int
	GRO, Suspend, Timeout         time.Duration
	Backend                       string
	ComparePairs                  int
	NIC                           string
	KeepBusyRead                  bool
	Record                        string
}

// Transfer sizes: the selftest's 1 MiB, and a quarter of it in the
// project's QEMU VM (vm/vmrun sets BUSYPOLLTEST_VM=1), where software
// emulation moves data about 100 times slower and the full size runs on the
// host anyway. The smaller size is not what keeps the suspension comparison
// from being a verdict there: TCG's timing is (busypoll/verdict).
const (
	defaultSize   = "1MiB"
	defaultVMSize = "256KiB"
)

// emulated reports whether the test runs under emulation: in the project's
// QEMU VM (vm/vmrun sets BUSYPOLLTEST_VM=1), whose TCG distorts timing.
func Emulated() bool { return os.Getenv("BUSYPOLLTEST_VM") != "" }

// SizeOrDefault returns the -busypoll.size given, or the default for where
// the test runs.
func SizeOrDefault(s string) string {
	if s != "" {
		return s
	}
	if Emulated() {
		return defaultVMSize
	}
	return defaultSize
}

// parseSize reads "1048576", "1MiB", "512KiB", "2GiB" or "100B".
func parseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if strings.HasSuffix(s, u.suffix) {
			num, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("-busypoll.size=%q: not a byte count (examples: 1048576, 1MiB, 512KiB)", s)
	}
	if n < 1 || n > maxSize/mult {
		return 0, fmt.Errorf("-busypoll.size=%q out of range: must be 1 B to %d GiB", s, maxSize>>30)
	}
	return n * mult, nil
}

// Validate checks every flag against its range and returns them as a
// Config, or an error naming each flag that is out of range.
func (r Flags) Validate() (Config, error) {
	var errs []error
	size, err := parseSize(SizeOrDefault(r.Size))
	errs = append(errs, err)
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(r.Usecs <= maxUsecs, "-busypoll.usecs=%d out of range: must be 0 to %d", r.Usecs, maxUsecs)
	check(r.Budget <= maxBudget, "-busypoll.budget=%d out of range: must be 0 to %d", r.Budget, maxBudget)
	check(r.Prefer <= 1, "-busypoll.prefer=%d out of range: must be 0 or 1", r.Prefer)
	check(r.Defers <= maxDefer, "-busypoll.defer-hard-irqs=%d out of range: must be 0 to %d", r.Defers, maxDefer)
	check(r.MaxEvents >= 1 && r.MaxEvents <= maxMaxEvents, "-busypoll.max-events=%d out of range: must be 1 to %d", r.MaxEvents, maxMaxEvents)
	check(r.GRO >= 0, "-busypoll.gro-flush-timeout=%v out of range: must not be negative", r.GRO)
	check(r.Suspend >= 0, "-busypoll.suspend-timeout=%v out of range: must not be negative", r.Suspend)
	check(r.Timeout > 0, "-busypoll.timeout=%v out of range: must be positive", r.Timeout)
	check(r.ComparePairs >= 0 && r.ComparePairs <= maxComparePairs, "-busypoll.compare-pairs=%d out of range: must be 1 to %d (0 for the backend's default)", r.ComparePairs, maxComparePairs)
	c := Config{
		Size: size, Usecs: uint32(r.Usecs), Budget: uint16(r.Budget), Prefer: r.Prefer == 1,
		MaxEvents: r.MaxEvents, DeferHardIRQs: uint32(r.Defers), GROFlush: r.GRO,
		Suspend: r.Suspend, Timeout: r.Timeout, ComparePairs: r.ComparePairs,
		KeepBusyRead: r.KeepBusyRead, Record: r.Record,
	}
	switch r.Backend {
	case backendAuto:
		c.Backends = []string{drvenv.Netdevsim, drvenv.Veth}
		if r.NIC != "" {
			c.Backends = append(c.Backends, drvenv.NIC)
		}
	case drvenv.Netdevsim, drvenv.Veth, drvenv.NIC:
		c.Backends, c.Strict = []string{r.Backend}, true
	default:
		errs = append(errs, fmt.Errorf("-busypoll.backend=%q: must be auto, netdevsim, veth or nic", r.Backend))
	}
	if r.NIC != "" {
		var err error
		if c.ServerPort, c.ClientPort, err = niclend.Names(r.NIC); err != nil {
			errs = append(errs, fmt.Errorf("-busypoll.nic=%v", err))
		}
	} else if r.Backend == drvenv.NIC {
		errs = append(errs, errors.New("-busypoll.backend=nic needs -busypoll.nic=SERVER,CLIENT naming two ports"))
	}
	return c, errors.Join(errs...)
}
