package netdevsim

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// twoLinkable returns two one-port devices in two fake namespaces.
func twoLinkable(t *testing.T) (*fakeKernel, *Device, *Device) {
	t.Helper()
	k := newFake(t)
	a, err := k.bus.NewDevice(context.Background(), k.newNS("a"), 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, a.Delete()) })
	b, err := k.bus.NewDevice(context.Background(), k.newNS("b"), 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, b.Delete()) })
	return k, a, b
}

func TestLinkAndUnlinkFormats(t *testing.T) {
	k, a, b := twoLinkable(t)
	ea, eb := a.Endpoint(0), b.Endpoint(0)
	fa, fb := ea.NS.FD(), eb.NS.FD()

	require.NoError(t, k.bus.Link(ea, eb))
	require.NoError(t, k.bus.Unlink(ea))

	w := k.log()[2:]
	assert.Equal(t, []fakeWrite{
		{file: fileLink, data: fmt.Sprintf("%d:%d %d:%d", fa, ea.IfIndex, fb, eb.IfIndex)},
		{file: fileUnlink, data: fmt.Sprintf("%d:%d", fa, ea.IfIndex)},
	}, w, "written from the calling thread; the kernel resolves the fds in this process")
}

func TestLinkKernelErrors(t *testing.T) {
	k, a, b := twoLinkable(t)
	ea, eb := a.Endpoint(0), b.Endpoint(0)
	require.NoError(t, k.bus.Link(ea, eb))

	err := k.bus.Link(eb, ea)
	assert.ErrorIs(t, err, unix.EBUSY)
	assert.ErrorContains(t, err, fmt.Sprintf(`netdevsim: write %s (writing "%d:%d %d:%d"): EBUSY (device or resource busy): one of the two ports is already linked`,
		filepath.Join(k.root, fileLink), eb.NS.FD(), eb.IfIndex, ea.NS.FD(), ea.IfIndex))

	require.NoError(t, k.bus.Unlink(eb))
	err = k.bus.Unlink(eb)
	assert.ErrorIs(t, err, unix.EINVAL)
	assert.ErrorContains(t, err, "or the port is not linked")

	err = k.bus.Link(ea, ea)
	assert.ErrorIs(t, err, unix.EINVAL)
	assert.ErrorContains(t, err, "a device is not a netdevsim, or both sides are the same device")

	unknown := Endpoint{NS: ea.NS, IfIndex: 999}
	err = k.bus.Link(ea, unknown)
	assert.ErrorIs(t, err, unix.EINVAL)
	assert.ErrorContains(t, err, "an ifindex does not exist in its namespace")
}

func TestLinkRejectsBadInput(t *testing.T) {
	k, a, _ := twoLinkable(t)
	good := a.Endpoint(0)
	closed := &fakeNS{k: k, fd: -1}
	tests := []struct {
		name string
		call func() error
		want string
	}{
		{"link ifindex 0", func() error { return k.bus.Link(good, Endpoint{NS: good.NS}) },
			"netdevsim: link: ifindex 0 out of range: must be 1..2147483647"},
		{"link negative ifindex", func() error { return k.bus.Link(Endpoint{NS: good.NS, IfIndex: -2}, good) },
			"netdevsim: link: ifindex -2 out of range: must be 1..2147483647"},
		{"unlink ifindex 0", func() error { return k.bus.Unlink(Endpoint{NS: good.NS}) },
			"netdevsim: unlink: ifindex 0 out of range: must be 1..2147483647"},
		{"closed namespace", func() error { return k.bus.Link(good, Endpoint{NS: closed, IfIndex: 1}) },
			"netdevsim: namespace fd -1 is invalid (closed namespace?)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := len(k.log())
			assert.EqualError(t, tt.call(), tt.want)
			assert.Len(t, k.log(), before, "nothing written")
		})
	}
}

func TestLinkNilNamespaceUsesCurrentNamespaceFD(t *testing.T) {
	k := newFake(t)
	a, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, a.Delete()) })
	b, err := k.bus.NewDevice(context.Background(), nil, 1, 1)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, b.Delete()) })

	here, err := os.Readlink("/proc/thread-self/ns/net")
	require.NoError(t, err)

	// Look at the fds while the kernel would: during the write.
	var targets []string
	var fds []int
	inner := k.bus.sysWrite
	k.bus.sysWrite = func(ns Namespace, path, data string) (string, error) {
		if filepath.Base(path) != fileLink {
			return inner(ns, path, data)
		}
		var fa, ia, fb, ib int
		_, err := fmt.Sscanf(data, "%d:%d %d:%d", &fa, &ia, &fb, &ib)
		require.NoError(t, err)
		for _, fd := range []int{fa, fb} {
			l, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
			require.NoError(t, err)
			targets = append(targets, l)
			fds = append(fds, fd)
		}
		return inner(ns, path, data)
	}
	require.NoError(t, k.bus.Link(a.Endpoint(0), b.Endpoint(0)))
	assert.Equal(t, []string{here, here}, targets, "fds of the caller's network namespace")
	assert.True(t, strings.HasPrefix(here, "net:["), here)
	for _, fd := range fds {
		_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
		assert.ErrorIs(t, err, unix.EBADF, "fd %d closed after the write", fd)
	}
}

func TestErrorMessages(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{Op: "write", File: "/sys/bus/netdevsim/new_device", Data: "5 1 1", Err: unix.ENOSPC},
			`netdevsim: write /sys/bus/netdevsim/new_device (writing "5 1 1"): ENOSPC (no space left on device): the device id is already taken`},
		{Error{Op: "write", File: "/sys/bus/netdevsim/del_device", Data: "5", Err: unix.ENOENT},
			`netdevsim: write /sys/bus/netdevsim/del_device (writing "5"): ENOENT (no such file or directory): no netdevsim device has this id`},
		{Error{Op: "write", File: "/sys/bus/netdevsim/del_device", Data: "x", Err: unix.EINVAL},
			`netdevsim: write /sys/bus/netdevsim/del_device (writing "x"): EINVAL (invalid argument): the kernel rejected the id (format "ID", at most 2147483647)`},
		{Error{Op: "write", File: "/sys/bus/netdevsim/link_device", Data: "3:2 4:2", Err: unix.EBUSY},
			`netdevsim: write /sys/bus/netdevsim/link_device (writing "3:2 4:2"): EBUSY (device or resource busy): one of the two ports is already linked`},
		{Error{Op: "open", File: "/sys/bus/netdevsim/link_device", Data: "3:2 4:2", Err: unix.ENOENT},
			`netdevsim: open /sys/bus/netdevsim/link_device (writing "3:2 4:2"): ENOENT (no such file or directory): no such bus file: netdevsim is not loaded, or this kernel's netdevsim cannot link devices (link_device arrived in Linux 6.9)`},
		{Error{Op: "open", File: "/sys/bus/netdevsim/new_device", Data: "1", Err: unix.EROFS},
			`netdevsim: open /sys/bus/netdevsim/new_device (writing "1"): EROFS (read-only file system): sysfs is mounted read-only here (a container?)`},
		{Error{Op: "write", File: "/sys/bus/netdevsim/new_device", Data: "1", Err: unix.EIO},
			`netdevsim: write /sys/bus/netdevsim/new_device (writing "1"): EIO (input/output error)`},
		{Error{Op: "write", File: "/x/new_device", Data: "1", Err: fmt.Errorf("short write: 0 of 1 bytes")},
			`netdevsim: write /x/new_device (writing "1"): short write: 0 of 1 bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			assert.EqualError(t, &tt.e, tt.want)
			assert.ErrorIs(t, &tt.e, tt.e.Err)
		})
	}
}
