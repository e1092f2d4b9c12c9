package testenv

import (
	"testing"

	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
)

// KernelRelease returns the running kernel's release (uname -r), failing t
// if uname does.
func KernelRelease(t testing.TB) string {
	t.Helper()
	r, err := kernelfeature.Release()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// RunningKernelAtLeast reports whether the running kernel is at least
// version since, such as "6.9" (kernelfeature.AtLeast).
func RunningKernelAtLeast(t testing.TB, since string) bool {
	t.Helper()
	return kernelfeature.AtLeast(KernelRelease(t), since)
}
