package netdevsim_test

import (
	"flag"
	"os"
	"testing"
	"time"

	"github.com/netdev-go/busypolltest/netdevsim"
)

// TestMain deletes the devices of the kernel tests on SIGINT and SIGTERM,
// and shortly before -test.timeout expires, since neither runs t.Cleanup.
func TestMain(m *testing.M) {
	flag.Parse()
	stop := netdevsim.InstallEmergencyCleanup(testTimeout())
	code := m.Run()
	stop()
	os.Exit(code)
}

// testTimeout returns -test.timeout, 0 if unset.
func testTimeout() time.Duration {
	if f := flag.Lookup("test.timeout"); f != nil {
		if g, ok := f.Value.(flag.Getter); ok {
			if d, ok := g.Get().(time.Duration); ok {
				return d
			}
		}
	}
	return 0
}
