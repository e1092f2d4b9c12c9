package link

import "golang.org/x/sys/unix"

// LinkUpTimeout is how long the tests wait for a carrier.
const LinkUpTimeout = linkUpTimeout

// OffloadOf reads offload o of device name in the calling thread's
// namespace, as the kernel reports it (1 on, 0 off).
func OffloadOf(name string, o Offload) (uint32, error) {
	fd, err := ethtoolSocket()
	if err != nil {
		return 0, err
	}
	defer unix.Close(fd)
	var got uint32
	err = ethtoolValueIoctl(fd, name, offloadCmds[o].get, &got)
	return got, err
}
