// Command payload is what TestVM runs inside the VM (built with
// CGO_ENABLED=0). It checks what vminit promises (root, the package's
// testdata in the working folder, loopback up, mounts), prints
// "payload: checks done", then exits as -mode says: exit0, exit3, or sleep
// (for the time limit and signal tests), or nics: the VM was started with
// -nics 2, and eth0 and eth1 must pass a TCP connection between two network
// namespaces.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func main() {
	mode := flag.String("mode", "exit0", "exit0, exit3, sleep or nics")
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
	links, _ := filepath.Glob("/sys/class/net/*")
	var names []string
	for _, l := range links {
		names = append(names, filepath.Base(l))
	}
	sort.Strings(names)
	if *mode == "nics" {
		if _, err := os.Stat("/sys/bus/virtio/drivers/virtio_net"); err != nil {
			// A distribution kernel has virtio-net as a module.
			fmt.Println("payload: skip: kernel without virtio-net built in (CONFIG_VIRTIO_NET=y)")
			return
		}
		check(strings.Join(names, " ") == "eth0 eth1 lo", "network interfaces %q, want eth0 eth1 lo", names)
		for _, n := range []string{"eth0", "eth1"} {
			drv, err := os.Readlink("/sys/class/net/" + n + "/device/driver")
			check(err == nil && filepath.Base(drv) == "virtio_net", "%s: driver %q (%v), want virtio_net", n, drv, err)
		}
		if err := nics(); err != nil {
			check(false, "nics: %v", err)
		} else {
			fmt.Println("payload: eth0 and eth1 passed a TCP connection")
		}
	} else {
		check(strings.Join(names, " ") == "lo", "network interfaces %q, want only lo (no NIC unless -nics)", names)
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

// nics moves eth1 into a new network namespace, gives eth0 198.18.1.1/24 and
// eth1 198.18.1.2/24, and sends a message from eth0's side to an echo server
// on eth1's side: the packets can only have crossed the QEMU hub.
func nics() error {
	type nsReady struct {
		fd   int
		addr string
		err  error
	}
	ready := make(chan nsReady, 1)
	served := make(chan error, 1)
	moved := make(chan struct{})
	go func() {
		// This thread stays in the new namespace and ends with it.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- nsReady{err: fmt.Errorf("unshare: %w", err)}
			return
		}
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ready <- nsReady{err: err}
			return
		}
		ready <- nsReady{fd: fd}
		<-moved
		if _, err := setUp("eth1", "198.18.1.2/24"); err != nil {
			served <- err
			return
		}
		ln, err := net.Listen("tcp", "198.18.1.2:7777")
		served <- err
		if err != nil {
			return
		}
		defer ln.Close()
		if c, err := ln.Accept(); err == nil {
			_, _ = io.Copy(c, c)
			c.Close()
		}
	}()
	r := <-ready
	if r.err != nil {
		return r.err
	}
	eth1, err := netlink.LinkByName("eth1")
	if err != nil {
		return err
	}
	if err := netlink.LinkSetNsFd(eth1, r.fd); err != nil {
		return fmt.Errorf("move eth1: %w", err)
	}
	close(moved)
	eth0, err := setUp("eth0", "198.18.1.1/24")
	if err != nil {
		return err
	}
	if err := <-served; err != nil {
		return fmt.Errorf("eth1 side: %w", err)
	}
	before := eth0.Attrs().Statistics
	var c net.Conn
	deadline := time.Now().Add(10 * time.Second)
	for {
		// The link may come up a moment later.
		c, err = net.DialTimeout("tcp", "198.18.1.2:7777", time.Second)
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("connect from eth0 to eth1: %w", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	msg := []byte("across the QEMU hub\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read the echo: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return fmt.Errorf("echo %q, want %q", got, msg)
	}
	after, err := netlink.LinkByName("eth0")
	if err != nil {
		return err
	}
	if before != nil && after.Attrs().Statistics.TxPackets <= before.TxPackets {
		return fmt.Errorf("eth0 sent no packets (tx %d before, %d after)", before.TxPackets, after.Attrs().Statistics.TxPackets)
	}
	return nil
}

// setUp gives the link in the calling thread's namespace an address and
// brings it up.
func setUp(name, cidr string) (netlink.Link, error) {
	l, err := netlink.LinkByName(name)
	if err != nil {
		return nil, err
	}
	addr, err := netlink.ParseAddr(cidr)
	if err != nil {
		return nil, err
	}
	if err := netlink.AddrAdd(l, addr); err != nil {
		return nil, fmt.Errorf("%s: add %s: %w", name, cidr, err)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return nil, fmt.Errorf("%s: up: %w", name, err)
	}
	return netlink.LinkByName(name)
}
