package link

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Offload is a device offload that the legacy ethtool ioctl can switch.
type Offload uint32

// Offloads the suite switches: veth has a NAPI only with GRO on, and TCP
// segments bypass the receiver's NAPI when the sender uses TSO.
const (
	GRO Offload = iota + 1
	TSO
)

// ethtool ioctl commands (include/uapi/linux/ethtool.h), get and set.
var offloadCmds = map[Offload]struct {
	name     string
	get, set uint32
}{
	GRO: {"generic-receive-offload", unix.ETHTOOL_GGRO, unix.ETHTOOL_SGRO},
	TSO: {"tcp-segmentation-offload", unix.ETHTOOL_GTSO, unix.ETHTOOL_STSO},
}

// String returns ethtool's name of the offload.
func (o Offload) String() string {
	if c, ok := offloadCmds[o]; ok {
		return c.name
	}
	return fmt.Sprintf("Offload(%d)", uint32(o))
}

// ethtoolValue is struct ethtool_value.
type ethtoolValue struct {
	cmd  uint32
	data uint32
}

// ifreqData is struct ifreq with ifr_data, padded to the union's size.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// SetOffload switches an offload of the interface ifname in the calling
// thread's network namespace (call it inside netns.NetNS.Do), then reads it back and
// fails if the device did not take the new value. An offload that already
// has the value is left alone.
func SetOffload(ifname string, o Offload, on bool) error {
	c, ok := offloadCmds[o]
	if !ok {
		return fmt.Errorf("link: unknown offload %d", uint32(o))
	}
	fd, err := ethtoolSocket()
	if err != nil {
		return fmt.Errorf("link: set %s of %s: %w", c.name, ifname, err)
	}
	defer unix.Close(fd)
	var want uint32
	if on {
		want = 1
	}
	// A device whose offload is fixed (virtio-net on a QEMU hub has no TSO)
	// refuses any set, also one that changes nothing.
	var cur uint32
	if err := ethtoolValueIoctl(fd, ifname, c.get, &cur); err == nil && (cur != 0) == on {
		return nil
	}
	if err := ethtoolValueIoctl(fd, ifname, c.set, &want); err != nil {
		return fmt.Errorf("link: set %s of %s to %v: %w", c.name, ifname, on, err)
	}
	var got uint32
	if err := ethtoolValueIoctl(fd, ifname, c.get, &got); err != nil {
		return fmt.Errorf("link: read back %s of %s: %w", c.name, ifname, err)
	}
	if (got != 0) != on {
		return fmt.Errorf("link: %s of %s is still %v after setting it to %v (fixed by the driver?)", c.name, ifname, got != 0, on)
	}
	return nil
}

// GetOffload reads an offload of the interface ifname in the calling
// thread's network namespace (call it inside netns.NetNS.Do).
func GetOffload(ifname string, o Offload) (bool, error) {
	c, ok := offloadCmds[o]
	if !ok {
		return false, fmt.Errorf("link: unknown offload %d", uint32(o))
	}
	fd, err := ethtoolSocket()
	if err != nil {
		return false, fmt.Errorf("link: read %s of %s: %w", c.name, ifname, err)
	}
	defer unix.Close(fd)
	var got uint32
	if err := ethtoolValueIoctl(fd, ifname, c.get, &got); err != nil {
		return false, fmt.Errorf("link: read %s of %s: %w", c.name, ifname, err)
	}
	return got != 0, nil
}

// ethtoolSocket opens a socket for ethtool ioctls in the calling thread's
// namespace.
func ethtoolSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	return fd, nil
}

// ethtoolValueIoctl runs one ethtool_value command on ifname through fd.
func ethtoolValueIoctl(fd int, ifname string, cmd uint32, data *uint32) error {
	if len(ifname) >= unix.IFNAMSIZ {
		return fmt.Errorf("interface name %q longer than %d bytes", ifname, unix.IFNAMSIZ-1)
	}
	v := ethtoolValue{cmd: cmd, data: *data}
	var ifr ifreqData
	copy(ifr.name[:], ifname)
	ifr.data = unsafe.Pointer(&v)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	if errno != 0 {
		return fmt.Errorf("ioctl SIOCETHTOOL: %w", errno)
	}
	*data = v.data
	return nil
}
