package testenv

import (
	"os"
	"strings"
	"testing"
)

// MountPoints returns the mount points of this process's mount namespace
// whose file system type is fstype ("" for any), from /proc/self/mountinfo.
// Tests use it to show that they mounted nothing.
func MountPoints(t testing.TB, fstype string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		// "36 25 0:12 / /sys/kernel/tracing rw,... - tracefs tracefs rw"
		f := strings.Fields(line)
		_, fs, ok := strings.Cut(line, " - ")
		if len(f) < 5 || !ok {
			continue
		}
		if fstype == "" || strings.HasPrefix(fs, fstype+" ") {
			out = append(out, f[4])
		}
	}
	return out
}
