package main

import (
	"testing"
	"time"
)

func TestMeasureTSC(t *testing.T) {
	if !haveTSC {
		t.Skip("no TSC on this architecture")
	}
	a := measureTSC(time.Now(), 20*time.Millisecond)
	b := measureTSC(time.Now(), 50*time.Millisecond)
	if a == 0 || b == 0 {
		t.Fatalf("measured %d and %d kHz", a, b)
	}
	// Two measurements agree within 0.5 %, even on a busy machine.
	if d := a - b; d*200 > b || -d*200 > b {
		t.Errorf("measurements disagree: %d and %d kHz", a, b)
	}
	t.Logf("TSC: %d and %d kHz; host: %d kHz", a, b, hostTSCkHz())
}
