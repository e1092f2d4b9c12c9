// Command payload is what TestVM runs inside the VM (built with
// CGO_ENABLED=0). It checks what vminit promises (root, the package's
// testdata in the working folder, loopback up, mounts), prints
// "payload: checks done", then exits as -mode says: exit0, exit3, or sleep
// (for the time limit and signal tests).
package main

import (
	"flag"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

func main() {
	mode := flag.String("mode", "exit0", "exit0, exit3 or sleep")
	flag.Parse()
	failed := false
	check := func(ok bool, format string, args ...any) {
		if !ok {
			fmt.Printf("payload: FAIL: "+format+"\n", args...)
			failed = true
		}
	}
	check(os.Geteuid() == 0, "euid %d, want 0", os.Geteuid())
	check(os.Getenv("BUSYPOLLTEST_VM") == "1", "BUSYPOLLTEST_VM=%q, want 1", os.Getenv("BUSYPOLLTEST_VM"))
	b, err := os.ReadFile("testdata/guest.txt")
	check(err == nil && string(b) == "testdata reached the VM\n", "testdata/guest.txt: %q, %v", b, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err == nil, "listen on loopback: %v", err)
	if err == nil {
		c, err := net.Dial("tcp", l.Addr().String())
		check(err == nil, "connect on loopback: %v", err)
		if err == nil {
			c.Close()
		}
		l.Close()
	}
	mounts, err := os.ReadFile("/proc/mounts")
	check(err == nil, "read /proc/mounts: %v", err)
	for _, m := range []string{"sysfs /sys sysfs ", "devtmpfs /dev devtmpfs "} {
		check(strings.Contains(string(mounts), m), "%q not mounted", m)
	}
	if failed {
		os.Exit(1)
	}
	fmt.Println("payload: checks done")
	switch *mode {
	case "exit3":
		os.Exit(3)
	case "sleep":
		fmt.Println("payload: sleeping")
		time.Sleep(time.Hour)
	}
}
