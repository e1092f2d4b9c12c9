// Package irqs counts the interrupts of one device interrupt line from
// /proc/interrupts: the evidence, on a real device, that IRQ deferral and
// suspension do what they are for.
//
// The line is found by number where the driver reports the NAPI's irq
// (napi-get), or by the name the driver gave its vector: virtio-net names
// them "virtioN-input.Q" (N from the device, Q the rx queue) and reports no
// irq for its NAPIs.
package irqs

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ErrNoIRQ is matched by Find's error where no interrupt line can be found
// for the NAPI (a device without interrupts, such as veth or netdevsim). It
// matches errors.ErrUnsupported.
var ErrNoIRQ = fmt.Errorf("no interrupt line for this NAPI: %w", errors.ErrUnsupported)

const procInterrupts = "/proc/interrupts"

// Line is an interrupt line of /proc/interrupts.
type Line struct {
	// IRQ is the line's number; 0 for a line named only by Name.
	IRQ int
	// Name is the action name (the last field), e.g. "virtio0-input.0".
	Name string
	// Source says how the line was found, for the log.
	Source string
}

// String names the line for the log.
func (l Line) String() string {
	if l.Name != "" {
		return fmt.Sprintf("IRQ %d %s (%s)", l.IRQ, l.Name, l.Source)
	}
	return fmt.Sprintf("IRQ %d (%s)", l.IRQ, l.Source)
}

// Find finds the interrupt line of a NAPI: irq is napi-get's irq attribute
// (hasIRQ tells whether the kernel reported it), busDevice is the name of
// the device behind the network interface (the last element of the
// /sys/class/net/IF/device link, e.g. "virtio0", read in the interface's
// namespace), rxQueue the rx queue the NAPI serves (queue-get), or -1.
func Find(irq uint32, hasIRQ bool, busDevice string, rxQueue int) (Line, error) {
	f, err := os.Open(procInterrupts)
	if err != nil {
		return Line{}, fmt.Errorf("irqs: %w", err)
	}
	defer f.Close()
	lines, err := Parse(f)
	if err != nil {
		return Line{}, fmt.Errorf("irqs: %s: %w", procInterrupts, err)
	}
	return find(lines, irq, hasIRQ, busDevice, rxQueue)
}

func find(lines []Counted, irq uint32, hasIRQ bool, busDevice string, rxQueue int) (Line, error) {
	if hasIRQ && irq != 0 {
		for _, l := range lines {
			if l.IRQ == int(irq) {
				return Line{IRQ: l.IRQ, Name: l.Name, Source: "napi-get irq"}, nil
			}
		}
		return Line{}, fmt.Errorf("irqs: napi-get reports irq %d, but %s has no such line", irq, procInterrupts)
	}
	if strings.HasPrefix(busDevice, "virtio") && rxQueue >= 0 {
		want := fmt.Sprintf("%s-input.%d", busDevice, rxQueue)
		for _, l := range lines {
			if l.Name == want {
				return Line{IRQ: l.IRQ, Name: l.Name, Source: "/proc/interrupts line named for rx queue " + strconv.Itoa(rxQueue)}, nil
			}
		}
		return Line{}, fmt.Errorf("irqs: %s has no line %q (virtio-net without MSI-X?): %w", procInterrupts, want, ErrNoIRQ)
	}
	what := "the interface has no bus device (a virtual device such as veth)"
	if busDevice != "" {
		what = fmt.Sprintf("its device %s is not one whose vectors are known by name (virtio)", busDevice)
	}
	return Line{}, fmt.Errorf("irqs: napi-get reports no irq for the NAPI and %s: %w", what, ErrNoIRQ)
}

// Count returns the interrupts line l has raised so far, over all CPUs.
func (l Line) Count() (uint64, error) {
	f, err := os.Open(procInterrupts)
	if err != nil {
		return 0, fmt.Errorf("irqs: %w", err)
	}
	defer f.Close()
	lines, err := Parse(f)
	if err != nil {
		return 0, fmt.Errorf("irqs: %s: %w", procInterrupts, err)
	}
	for _, c := range lines {
		if (l.IRQ != 0 && c.IRQ == l.IRQ) || (l.IRQ == 0 && c.Name == l.Name) {
			return c.Total, nil
		}
	}
	return 0, fmt.Errorf("irqs: %v is gone from %s", l, procInterrupts)
}

// Counted is one numbered line of /proc/interrupts.
type Counted struct {
	IRQ   int
	Name  string
	Total uint64
}

// Parse reads /proc/interrupts: a header of CPU names, then for each line
// "N: count per CPU... chip ... name". Lines with a non-numeric label (NMI,
// LOC, ...) are left out.
func Parse(r io.Reader) ([]Counted, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	if !sc.Scan() {
		return nil, errors.New("empty")
	}
	cpus := len(strings.Fields(sc.Text()))
	if cpus == 0 {
		return nil, errors.New("no CPU columns in the header")
	}
	var out []Counted
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		n, err := strconv.Atoi(strings.TrimSuffix(f[0], ":"))
		if err != nil {
			continue
		}
		c := Counted{IRQ: n}
		i := 1
		for ; i < len(f) && i <= cpus; i++ {
			v, err := strconv.ParseUint(f[i], 10, 64)
			if err != nil {
				break
			}
			c.Total += v
		}
		if i < len(f) {
			c.Name = f[len(f)-1]
		}
		out = append(out, c)
	}
	return out, sc.Err()
}
