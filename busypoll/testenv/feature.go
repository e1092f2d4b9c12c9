package testenv

import (
	"strings"
	"testing"

	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
)

// SkipIfNotSupported does nothing for a nil err. Where err holds
// kernelfeature.UnsupportedFeatureErrors it skips t if the kernel is older
// than each feature or was built without it, and fails t if the kernel is
// new enough to have one (a regression or a broken build, not an old
// kernel). Any other error fails t: the probe itself went wrong.
func SkipIfNotSupported(t testing.TB, err error) {
	t.Helper()
	if err == nil {
		return
	}
	missing := kernelfeature.All(err)
	if len(missing) == 0 {
		t.Fatalf("feature probe failed: %v", err)
	}
	release := KernelRelease(t)
	for _, f := range missing {
		if f.ConfigOff == "" && f.MinimumVersion != "" && kernelfeature.AtLeast(release, f.MinimumVersion) {
			t.Fatalf("kernel %s lacks %s, which came in Linux %s: a regression or a broken build, not an old kernel (%v)",
				release, f.Name, f.MinimumVersion, f.Err)
		}
	}
	parts := make([]string, len(missing))
	for i, f := range missing {
		parts[i] = "lacks " + f.Missing()
	}
	// "kernel R lacks X: needs Linux V": the phrasing vm/test-all and
	// vm/kernelmatrix read.
	t.Skipf("kernel %s %s", release, strings.Join(parts, "; "))
}
