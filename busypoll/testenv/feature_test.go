package testenv_test

import (
	"errors"
	"fmt"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
)

// outcome records what SkipIfNotSupported did to a test.
type outcome struct {
	testing.TB
	skipped, failed string
}

func (o *outcome) Helper() {}
func (o *outcome) Skipf(format string, args ...any) {
	o.skipped = fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (o *outcome) Fatalf(format string, args ...any) {
	o.failed = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func TestSkipIfNotSupported(t *testing.T) {
	probe := errors.New("EINVAL")
	tests := []struct {
		name                string
		err                 error
		wantSkip, wantFatal string
	}{
		{"nothing missing", nil, "", ""},
		{"older than the feature", &kernelfeature.UnsupportedFeatureError{Name: "x", MinimumVersion: "99.0", Err: probe}, "lacks x: needs Linux 99.0 (EINVAL)", ""},
		{"should have it", fmt.Errorf("probe: %w", &kernelfeature.UnsupportedFeatureError{Name: "x", MinimumVersion: "2.6", Err: probe}), "", "which came in Linux 2.6: a regression or a broken build"},
		{"compiled out", &kernelfeature.UnsupportedFeatureError{Name: "x", MinimumVersion: "2.6", ConfigOff: "CONFIG_X", Err: probe}, "lacks x: built without CONFIG_X", ""},
		{"one of two due", kernelfeature.Missing{{Name: "a", MinimumVersion: "99.0"}, {Name: "b", MinimumVersion: "2.6"}}, "", "lacks b, which came in Linux 2.6"},
		{"both old", kernelfeature.Missing{{Name: "a", MinimumVersion: "99.0"}, {Name: "b", MinimumVersion: "99.1"}}, "lacks a: needs Linux 99.0; lacks b: needs Linux 99.1", ""},
		{"the probe failed", errors.New("EPERM"), "", "feature probe failed: EPERM"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := &outcome{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				testenv.SkipIfNotSupported(o, tt.err)
			}()
			<-done
			if tt.wantSkip == "" {
				assert.Empty(t, o.skipped)
			} else {
				assert.Contains(t, o.skipped, tt.wantSkip)
				assert.Contains(t, o.skipped, "kernel "+testenv.KernelRelease(t)+" ")
			}
			if tt.wantFatal == "" {
				assert.Empty(t, o.failed)
			} else {
				assert.Contains(t, o.failed, tt.wantFatal)
			}
		})
	}
}
