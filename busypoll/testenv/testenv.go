// Package testenv holds the preconditions that the tests of busypoll's
// packages share.
package testenv

import (
	"os"
	"testing"
)

// NeedRootNetNS skips a test that creates network namespaces unless it may:
// not with -short, and only as root.
func NeedRootNetNS(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped with -short: creates network namespaces")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root (CAP_SYS_ADMIN) to create network namespaces")
	}
}
