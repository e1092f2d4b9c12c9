package emergency

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll/testenv"
)

// TestOnSignal: SIGQUIT prints the goroutine dump before the emergency
// cleanup runs, and a cleanup that hangs is given up after the limit.
func TestOnSignal(t *testing.T) {
	tests := []struct {
		name     string
		sig      os.Signal
		hang     bool
		wantDump bool
		wantDone bool
	}{
		{"SIGQUIT: dump, then cleanup", syscall.SIGQUIT, false, true, true},
		{"SIGQUIT, cleanup hangs: dump all the same", syscall.SIGQUIT, true, true, false},
		{"SIGTERM: cleanup, no dump", syscall.SIGTERM, false, false, true},
		{"SIGINT, cleanup hangs: given up", syscall.SIGINT, true, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out testenv.SyncBuffer
			release := make(chan struct{})
			defer close(release)
			cleanup := func(why string) {
				_, _ = out.Write([]byte("CLEANUP STARTS: " + why + "\n"))
				if tt.hang {
					<-release
				}
				_, _ = out.Write([]byte("CLEANUP DONE\n"))
			}
			begin := time.Now()
			done := onSignal(&out, tt.sig, 100*time.Millisecond, cleanup)
			assert.Equal(t, tt.wantDone, done)
			assert.Less(t, time.Since(begin), 5*time.Second, "the limit holds")
			got := out.String()
			start := strings.Index(got, "CLEANUP STARTS: got "+tt.sig.String())
			require.GreaterOrEqual(t, start, 0, "the cleanup ran with the reason: %s", got)
			dump := strings.Index(got, "goroutine dump follows\nSIGQUIT: quit\n\ngoroutine ")
			if tt.wantDump {
				require.GreaterOrEqual(t, dump, 0, "a goroutine dump: %s", got)
				assert.Less(t, dump, start, "the dump comes before the cleanup")
				assert.Contains(t, got, "TestOnSignal", "the dump has the test's own goroutine")
			} else {
				assert.Less(t, dump, 0, "no dump")
			}
			if tt.wantDone {
				assert.Contains(t, got, "CLEANUP DONE")
			} else {
				assert.Contains(t, got, "the emergency cleanup did not finish within 100ms")
			}
		})
	}
}

// TestInstallWatchdogRunsCleanupsInOrder: before -test.timeout expires,
// every cleanup runs once, in order, with the reason; stop disarms.
func TestInstallWatchdogRunsCleanupsInOrder(t *testing.T) {
	var out testenv.SyncBuffer
	step := func(name string) func(string) {
		return func(why string) { _, _ = out.Write([]byte(name + ": " + why + "\n")) }
	}
	stop := Install(200*time.Millisecond, step("ports"), step("devices")) // fires 20 ms early
	defer stop()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "devices") }, 5*time.Second, 5*time.Millisecond)
	assert.Equal(t, "ports: -test.timeout is about to expire\ndevices: -test.timeout is about to expire\n", out.String())

	var later testenv.SyncBuffer
	stop2 := Install(50*time.Millisecond, func(why string) { _, _ = later.Write([]byte(why)) })
	stop2()
	stop2()
	time.Sleep(100 * time.Millisecond)
	assert.Empty(t, later.String(), "stop disarms the watchdog")
}
