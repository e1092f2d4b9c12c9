package netdevsim_test

import (
	"flag"
	"os"
	"testing"

	"github.com/netdev-go/busypolltest/busypoll/emergency"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
	"github.com/netdev-go/busypolltest/netdevsim"
)

// TestMain deletes the devices of the kernel tests on SIGINT and SIGTERM,
// and shortly before -test.timeout expires, since neither runs t.Cleanup.
func TestMain(m *testing.M) {
	flag.Parse()
	stop := emergency.Install(testenv.TestTimeout(), netdevsim.EmergencyCleanup)
	code := m.Run()
	stop()
	os.Exit(code)
}
