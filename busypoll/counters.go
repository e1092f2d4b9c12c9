package busypoll

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// The calling thread's view of /proc/net. /proc/self/net (and /proc/net)
// show the namespace of the process's main thread instead, which is not the
// one a goroutine locked inside a netns.NetNS runs in.
const (
	netstatPath = "/proc/thread-self/net/netstat"
	snmpPath    = "/proc/thread-self/net/snmp"
)

// Counters are the kernel's TCP counters of one network namespace that show
// whether busy polling happened.
type Counters struct {
	// BusyPollRxPackets (TcpExt) counts packets that busy polling, rather
	// than the device's interrupt path, delivered to sockets.
	BusyPollRxPackets uint64
	// InSegs (Tcp) counts the TCP segments received.
	InSegs uint64
}

// ReadCounters reads the counters of the calling thread's network namespace
// from /proc/thread-self/net. Run it inside the Do of a busypoll/namespace
// namespace to read that namespace's counters; on an unlocked goroutine it
// reads those of whichever thread it runs on, which is the process's
// namespace.
func ReadCounters() (Counters, error) {
	var c Counters
	if err := readCounter(netstatPath, "TcpExt", "BusyPollRxPackets", &c.BusyPollRxPackets); err != nil {
		return Counters{}, err
	}
	if err := readCounter(snmpPath, "Tcp", "InSegs", &c.InSegs); err != nil {
		return Counters{}, err
	}
	return c, nil
}

// Sub returns the growth from prev to c, counter by counter. A counter that
// went down (it does not, unless the two come from different namespaces)
// gives 0.
func (c Counters) Sub(prev Counters) Counters {
	sub := func(a, b uint64) uint64 {
		if a < b {
			return 0
		}
		return a - b
	}
	return Counters{
		BusyPollRxPackets: sub(c.BusyPollRxPackets, prev.BusyPollRxPackets),
		InSegs:            sub(c.InSegs, prev.InSegs),
	}
}

// BusyPolledShare is BusyPollRxPackets over InSegs, 0 when InSegs is 0. On
// a delta it is the share of received segments that busy polling delivered
// (GRO merges segments, so it is a lower bound).
func (c Counters) BusyPolledShare() float64 {
	if c.InSegs == 0 {
		return 0
	}
	return float64(c.BusyPollRxPackets) / float64(c.InSegs)
}

func readCounter(path, group, name string, dst *uint64) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("busypoll: read counters: %w", err)
	}
	v, err := parseCounter(bytes.NewReader(b), group, name)
	if err != nil {
		return fmt.Errorf("busypoll: %s: %w", path, err)
	}
	*dst = v
	return nil
}

// parseCounter finds one counter in the /proc/net/{snmp,netstat} format:
// for every group a line "Group: Name1 Name2 ..." followed by a line
// "Group: value1 value2 ...".
func parseCounter(r io.Reader, group, name string) (uint64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	prefix := group + ":"
	line := 0
	for sc.Scan() {
		line++
		names := strings.Fields(sc.Text())
		if len(names) == 0 || names[0] != prefix {
			continue
		}
		if !sc.Scan() {
			return 0, fmt.Errorf("line %d: %s header without a value line", line, group)
		}
		line++
		values := strings.Fields(sc.Text())
		if len(values) == 0 || values[0] != prefix {
			return 0, fmt.Errorf("line %d: %s header followed by %q, want a %s value line", line, group, firstField(values), prefix)
		}
		if len(values) != len(names) {
			return 0, fmt.Errorf("line %d: %s has %d names but %d values", line, group, len(names)-1, len(values)-1)
		}
		for i := 1; i < len(names); i++ {
			if names[i] != name {
				continue
			}
			v, err := strconv.ParseUint(values[i], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("line %d: %s %s: %w", line, group, name, err)
			}
			return v, nil
		}
		return 0, fmt.Errorf("no counter %s %s (kernel without it?)", group, name)
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no %s counters, so no %s %s", group, group, name)
}

func firstField(f []string) string {
	if len(f) == 0 {
		return ""
	}
	return f[0]
}
