package busypoll

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// The host-wide busy-poll sysctls. Both live only in the initial network
// namespace's /proc/sys (net/core/sysctl_net_core.c registers them in
// net_core_table, not the per-namespace table).
const (
	busyPollSysctl = "/proc/sys/net/core/busy_poll"
	busyReadSysctl = "/proc/sys/net/core/busy_read"
)

// Sysctls are the host's busy-poll settings, which make the kernel busy-poll
// without any epoll parameters.
type Sysctls struct {
	// BusyPoll is net.core.busy_poll (µs): poll, select and epoll busy-poll
	// for that long on every socket of the host. No socket option turns it
	// off.
	BusyPoll uint64
	// BusyRead is net.core.busy_read (µs): copied into every new socket's
	// SO_BUSY_POLL, so that its reads busy-poll. Setting SO_BUSY_POLL to 0
	// on a socket (ReceiverConfig.NoSocketBusyPoll) turns it off there.
	BusyRead uint64
}

// String gives both settings, e.g. "net.core.busy_poll=0 net.core.busy_read=50".
func (s Sysctls) String() string {
	return fmt.Sprintf("net.core.busy_poll=%d net.core.busy_read=%d", s.BusyPoll, s.BusyRead)
}

// ErrSysctlsHidden is matched by ReadSysctls' error where /proc/sys has no
// net.core.busy_poll: outside the initial network namespace, or on a kernel
// built without busy polling.
var ErrSysctlsHidden = errors.New("net.core.busy_poll is not in /proc/sys (not the initial network namespace, or a kernel without CONFIG_NET_RX_BUSY_POLL)")

// ReadSysctls reads net.core.busy_poll and net.core.busy_read. It only reads:
// the host's settings are never changed.
func ReadSysctls() (Sysctls, error) {
	var s Sysctls
	for _, v := range []struct {
		path string
		dst  *uint64
	}{{busyPollSysctl, &s.BusyPoll}, {busyReadSysctl, &s.BusyRead}} {
		b, err := os.ReadFile(v.path)
		if errors.Is(err, os.ErrNotExist) {
			return Sysctls{}, fmt.Errorf("busypoll: %s: %w", v.path, ErrSysctlsHidden)
		}
		if err != nil {
			return Sysctls{}, fmt.Errorf("busypoll: %w", err)
		}
		n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil {
			return Sysctls{}, fmt.Errorf("busypoll: %s: %q is not a number of microseconds", v.path, strings.TrimSpace(string(b)))
		}
		*v.dst = n
	}
	return s, nil
}
