package main

import (
	"bytes"
	"os"
	"time"
)

// hostTSCkHz measures the rate of this machine's time stamp counter, in kHz,
// or returns 0 when it cannot be trusted (no constant, non-stop TSC, or an
// implausible result).
//
// Under TCG the guest's TSC is the host's (QEMU reads it with rdtsc), but
// the guest cannot calibrate it: the PIT is useless under emulation, and a
// kernel without ACPI has neither HPET nor PM timer to compare with. It then
// marks the TSC unstable and falls back to a jiffies clock, without
// high-resolution timers. vmrun passes the rate as tsc_early_khz= instead.
func hostTSCkHz() int64 {
	if !haveTSC {
		return 0
	}
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	for _, flag := range []string{" constant_tsc", " nonstop_tsc"} {
		if !bytes.Contains(cpuinfo, []byte(flag)) {
			return 0
		}
	}
	return measureTSC(time.Now(), 20*time.Millisecond)
}

// measureTSC compares the TSC with the monotonic clock over window. Each end
// is the narrowest of a few clock-TSC-clock readings, so that being
// preempted while reading costs nothing.
func measureTSC(base time.Time, window time.Duration) int64 {
	sample := func() (ns int64, tsc uint64) {
		best := int64(-1)
		for range 8 {
			t0 := time.Since(base)
			c := rdtsc()
			t1 := time.Since(base)
			if w := int64(t1 - t0); best < 0 || w < best {
				best, ns, tsc = w, int64(t0+t1)/2, c
			}
		}
		return ns, tsc
	}
	ns0, c0 := sample()
	time.Sleep(window)
	ns1, c1 := sample()
	if ns1 <= ns0 || c1 <= c0 {
		return 0
	}
	khz := int64(float64(c1-c0) / float64(ns1-ns0) * 1e6)
	if khz < 100_000 || khz > 10_000_000 { // 100 MHz to 10 GHz
		return 0
	}
	return khz
}
