package netdevsim

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrUnavailable is wrapped by every error of Available that means
// netdevsim cannot be used on this machine. Callers skip on it:
//
//	if err := netdevsim.Available(); errors.Is(err, netdevsim.ErrUnavailable) {
//		t.Skip(err)
//	}
var ErrUnavailable = errors.New("netdevsim unavailable")

// Error is a write to a netdevsim bus file that failed. It names the file,
// what was written and what the kernel's errno means for that file. It
// unwraps to the errno, so errors.Is(err, unix.ENOSPC) and
// errors.Is(err, os.ErrPermission) work.
type Error struct {
	// Op is "open" or "write".
	Op string
	// File is the full path of the bus file.
	File string
	// Data is exactly what was (or would have been) written.
	Data string
	// Err is the underlying error, usually a unix.Errno.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	what := e.Err.Error()
	var errno unix.Errno
	if errors.As(e.Err, &errno) {
		if name := unix.ErrnoName(errno); name != "" {
			what = name + " (" + errno.Error() + ")"
		}
	}
	msg := fmt.Sprintf("netdevsim: %s %s (writing %q): %s", e.Op, e.File, e.Data, what)
	if m := meaning(filepath.Base(e.File), e.Op, e.Err); m != "" {
		msg += ": " + m
	}
	return msg
}

// Unwrap returns the underlying errno.
func (e *Error) Unwrap() error { return e.Err }

// meaning explains an errno the way the kernel's drivers/net/netdevsim/bus.c
// uses it for the given bus file.
func meaning(file, op string, err error) string {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return ""
	}
	switch errno {
	case unix.EACCES, unix.EPERM:
		return "permission denied: the netdevsim bus files are writable by root only"
	case unix.EROFS:
		return "sysfs is mounted read-only here (a container?)"
	}
	if op == "open" {
		if errno == unix.ENOENT {
			switch file {
			case fileLink, fileUnlink:
				return "no such bus file: netdevsim is not loaded, or this kernel's netdevsim cannot link devices (link_device arrived in Linux 6.9)"
			}
			return "no such bus file: netdevsim is not loaded (see Available)"
		}
		return ""
	}
	switch file {
	case fileNew:
		switch errno {
		case unix.ENOSPC:
			return "the device id is already taken"
		case unix.EINVAL:
			return fmt.Sprintf("the kernel rejected the format %q or the id (at most %d)", "ID PORTS QUEUES", MaxID)
		case unix.EBUSY:
			return "the netdevsim bus is not ready (module being loaded or unloaded)"
		case unix.ENOMEM:
			return "the kernel is out of memory for the device, its ports or queues"
		}
	case fileDel:
		switch errno {
		case unix.ENOENT:
			return "no netdevsim device has this id"
		case unix.EINVAL:
			return fmt.Sprintf("the kernel rejected the id (format %q, at most %d)", "ID", MaxID)
		case unix.EBUSY:
			return "the netdevsim bus is not ready (module being loaded or unloaded)"
		}
	case fileLink:
		switch errno {
		case unix.EINVAL:
			return "a namespace fd is not open in this process, an ifindex does not exist in its namespace, a device is not a netdevsim, or both sides are the same device"
		case unix.EBUSY:
			return "one of the two ports is already linked"
		}
	case fileUnlink:
		switch errno {
		case unix.EINVAL:
			return "the namespace fd is not open in this process, the ifindex does not exist in its namespace, the device is not a netdevsim, or the port is not linked"
		}
	}
	return ""
}
