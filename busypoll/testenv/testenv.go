// Package testenv holds what the tests of this module share about where
// they run: whether they may (root, -short), which kernel runs them, and
// what to do when that kernel lacks a feature (skip on a kernel older than
// the feature, fail on one that should have it). It imports nothing of the
// module, so that the tests of every package, napi and netdevsim included,
// can use it. The fixtures that build namespaces and links are in
// busypoll/testnet.
package testenv

import (
	"flag"
	"os"
	"testing"
	"time"
)

// NeedRoot skips t with -short, and unless it runs as root. does says what
// the test does that needs both, e.g. "creates network namespaces"; it
// becomes the skip reason.
func NeedRoot(t testing.TB, does string) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped with -short: " + does)
	}
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s (running as uid %d)", does, os.Geteuid())
	}
}

// NeedRootNetNS skips a test that creates network namespaces unless it may:
// not with -short, and only as root.
func NeedRootNetNS(t testing.TB) {
	t.Helper()
	NeedRoot(t, "creates network namespaces (CAP_SYS_ADMIN)")
}

// NeedNonRoot skips t with -short, and when it runs as root: the test
// checks what an unprivileged user is refused. does says what it checks.
func NeedNonRoot(t testing.TB, does string) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped with -short: " + does)
	}
	if os.Geteuid() == 0 {
		t.Skip("needs a non-root user: " + does)
	}
}

// SkipShort skips t with -short; does says what the test does that -short
// leaves out.
func SkipShort(t testing.TB, does string) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped with -short: " + does)
	}
}

// Skipf is t.Skipf, and t.Fatalf where strict says the user asked for what
// is unavailable (then a skip would hide that it did not run).
func Skipf(t testing.TB, strict bool, format string, args ...any) {
	t.Helper()
	if strict {
		t.Fatalf(format+" (and the flags ask for it)", args...)
	}
	t.Skipf(format, args...)
}

// TestTimeout returns the test binary's -test.timeout, 0 if unset (call it
// after flag.Parse, from TestMain).
func TestTimeout() time.Duration {
	if f := flag.Lookup("test.timeout"); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			if d, ok := g.Get().(time.Duration); ok {
				return d
			}
		}
	}
	return 0
}
