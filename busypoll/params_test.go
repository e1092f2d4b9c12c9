package busypoll

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
	"github.com/netdev-go/busypolltest/busypoll/testenv"
)

// requireSupported skips unless the kernel has the epoll busy-poll ioctls
// (and fails where a kernel of 6.9 or later lacks them).
func requireSupported(t *testing.T) {
	t.Helper()
	testenv.SkipIfNotSupported(t, Supported())
}

// newEpoll returns an epoll fd closed when the test ends.
func newEpoll(t *testing.T) int {
	t.Helper()
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, unix.Close(epfd)) })
	return epfd
}

// hasCapNetAdmin reports whether CAP_NET_ADMIN is in the effective set.
func hasCapNetAdmin(t *testing.T) bool {
	t.Helper()
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	require.NoError(t, unix.Capget(&hdr, &data[0]))
	return data[unix.CAP_NET_ADMIN/32].Effective&(1<<(unix.CAP_NET_ADMIN%32)) != 0
}

func TestSupported(t *testing.T) {
	err := Supported()
	if errors.Is(err, errors.ErrUnsupported) {
		// Only a kernel built without CONFIG_NET_RX_BUSY_POLL may lack the
		// ioctls from 6.9 on.
		if testenv.RunningKernelAtLeast(t, "6.9") {
			assert.ErrorContains(t, err, "CONFIG_NET_RX_BUSY_POLL", "a 6.9+ kernel has the ioctls unless built without busy polling")
		} else {
			assert.ErrorContains(t, err, "needs Linux 6.9")
		}
		t.Skipf("skipped: %v", err)
	}
	assert.NoError(t, err)
	assert.True(t, testenv.RunningKernelAtLeast(t, "6.9"), "EPIOCGPARAMS works on a kernel older than 6.9?")
}

func TestGetParamsFreshEpollIsZero(t *testing.T) {
	requireSupported(t)
	epfd := newEpoll(t)

	// The kernel must overwrite every byte, pad included.
	r := epollParams{usecs: 0xff, budget: 0xff, prefer: 1, pad: 0xf}
	require.NoError(t, epollIoctl(epfd, ioctlEPIOCGPARAMS, &r))
	assert.Equal(t, epollParams{}, r)

	p, err := GetParams(epfd)
	require.NoError(t, err)
	assert.Equal(t, Params{}, p)
}

func TestSetParamsRoundTrip(t *testing.T) {
	requireSupported(t)
	tests := []struct {
		name string
		p    Params
	}{
		{"selftest scenario", Params{Usecs: 0, Budget: 16, Prefer: true}},
		{"kernel selftest values", Params{Usecs: 25, Budget: 16, Prefer: true}},
		{"largest usecs, unprivileged budget", Params{Usecs: MaxUsecs, Budget: UnprivilegedMaxBudget}},
		{"zero", Params{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			epfd := newEpoll(t)
			require.NoError(t, SetParams(epfd, tt.p))
			got, err := GetParams(epfd)
			require.NoError(t, err)
			assert.Equal(t, tt.p, got)

			// The raw struct the kernel returns, pad included.
			var r epollParams
			require.NoError(t, epollIoctl(epfd, ioctlEPIOCGPARAMS, &r))
			assert.Equal(t, tt.p.raw(), r)
		})
	}
}

// TestKernelRejects replays every input that the kernel's own selftest
// (tools/testing/selftests/net/epoll_busy_poll.c) expects to fail, straight
// to the ioctl, and checks the errno and how SetParams/GetParams report it.
func TestKernelRejects(t *testing.T) {
	requireSupported(t)
	ioctl := func(fd int, req, arg uintptr) error {
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), req, arg)
		if errno != 0 {
			return errno
		}
		return nil
	}
	// An address no process maps: the kernel refuses to copy (mmap_min_addr).
	const badPointer = uintptr(8)

	tests := []struct {
		name      string
		call      func(epfd int) error
		wantErrno unix.Errno
	}{
		{"nonzero pad", func(epfd int) error {
			return setRaw(epfd, epollParams{pad: 1})
		}, unix.EINVAL},
		{"usecs above S32_MAX", func(epfd int) error {
			return setRaw(epfd, epollParams{usecs: math.MaxInt32 + 1})
		}, unix.EINVAL},
		{"prefer above 1", func(epfd int) error {
			return setRaw(epfd, epollParams{usecs: 32, prefer: 2})
		}, unix.EINVAL},
		{"set with a bad pointer", func(epfd int) error {
			return ioctl(epfd, ioctlEPIOCSPARAMS, badPointer)
		}, unix.EFAULT},
		{"get with a bad pointer", func(epfd int) error {
			return ioctl(epfd, ioctlEPIOCGPARAMS, badPointer)
		}, unix.EFAULT},
		{"unknown epoll ioctl", func(epfd int) error {
			var r epollParams
			return ioctl(epfd, ioctlEPIOCGPARAMS+10, uintptr(unsafe.Pointer(&r)))
		}, unix.EINVAL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			epfd := newEpoll(t)
			err := tt.call(epfd)
			assert.ErrorIs(t, err, tt.wantErrno)
			assert.NotErrorIs(t, err, errors.ErrUnsupported)
			// A rejected set changes nothing.
			p, err := GetParams(epfd)
			require.NoError(t, err)
			assert.Equal(t, Params{}, p)
		})
	}
}

func TestNotAnEpollFD(t *testing.T) {
	requireSupported(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	require.NoError(t, err)
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })

	err = SetParams(fds[0], Params{Budget: 8})
	assert.ErrorIs(t, err, unix.ENOTTY)
	assert.ErrorContains(t, err, fmt.Sprintf("fd %d is not an epoll instance", fds[0]))
	assert.NotErrorIs(t, err, errors.ErrUnsupported, "a wrong fd is not a missing kernel feature")

	_, err = GetParams(fds[0])
	assert.ErrorIs(t, err, unix.ENOTTY)
	assert.ErrorContains(t, err, "not an epoll instance")
	assert.NotErrorIs(t, err, errors.ErrUnsupported)

	_, err = GetParams(-1)
	assert.ErrorIs(t, err, unix.EBADF)
}

// TestBudgetAboveNAPIWeight is the kernel selftest's capability case: a
// budget above 64 needs CAP_NET_ADMIN.
func TestBudgetAboveNAPIWeight(t *testing.T) {
	requireSupported(t)
	epfd := newEpoll(t)
	p := Params{Usecs: 32, Budget: math.MaxUint16, Prefer: true}
	err := SetParams(epfd, p)
	if hasCapNetAdmin(t) {
		t.Log("with CAP_NET_ADMIN: the kernel must accept the budget")
		require.NoError(t, err, "with CAP_NET_ADMIN")
		got, err := GetParams(epfd)
		require.NoError(t, err)
		assert.Equal(t, p, got)
		return
	}
	t.Log("without CAP_NET_ADMIN: the kernel must refuse the budget with EPERM")
	assert.ErrorIs(t, err, unix.EPERM)
	assert.ErrorIs(t, err, os.ErrPermission)
	assert.ErrorContains(t, err, "budget 65535 above 64 needs CAP_NET_ADMIN")
	got, err := GetParams(epfd)
	require.NoError(t, err)
	assert.Equal(t, Params{}, got, "a refused set changes nothing")
}

// TestUnsupportedKernelErrors checks how the errnos of kernels without the
// ioctls are reported. It feeds them to the error mapping directly, since
// this kernel has the ioctls.
func TestUnsupportedKernelErrors(t *testing.T) {
	epfd := newEpoll(t)
	tests := []struct {
		name  string
		errno unix.Errno
		want  string
	}{
		{"before Linux 6.9", unix.ENOTTY, "kernel has no EPIOCSPARAMS: needs Linux 6.9"},
		{"without CONFIG_NET_RX_BUSY_POLL", unix.EOPNOTSUPP, "CONFIG_NET_RX_BUSY_POLL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := explainIoctlErrno(epfd, tt.errno)
			assert.ErrorIs(t, err, errors.ErrUnsupported)
			assert.ErrorIs(t, err, tt.errno)
			assert.ErrorContains(t, err, tt.want)
			var ufe *kernelfeature.UnsupportedFeatureError
			assert.ErrorAs(t, err, &ufe, "a typed feature error, for testenv.SkipIfNotSupported")
		})
	}
}

func TestNewParams(t *testing.T) {
	tests := []struct {
		name                  string
		usecs, budget, prefer uint64
		want                  Params
		wantErr               []string // substrings: the value and the limit
	}{
		{name: "selftest", usecs: 0, budget: 16, prefer: 1, want: Params{Budget: 16, Prefer: true}},
		{name: "largest", usecs: MaxUsecs, budget: MaxBudget, prefer: 0, want: Params{Usecs: MaxUsecs, Budget: MaxBudget}},
		{name: "usecs above S32_MAX", usecs: MaxUsecs + 1, wantErr: []string{"usecs 2147483648", "at most 2147483647"}},
		{name: "usecs huge", usecs: math.MaxUint64, wantErr: []string{"usecs 18446744073709551615", "2147483647"}},
		{name: "budget above u16", budget: MaxBudget + 1, wantErr: []string{"budget 65536", "at most 65535"}},
		{name: "prefer 2", prefer: 2, wantErr: []string{"prefer-busy-poll 2", "must be 0 or 1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewParams(tt.usecs, tt.budget, tt.prefer)
			if tt.wantErr == nil {
				require.NoError(t, err)
				assert.Equal(t, tt.want, p)
				assert.NoError(t, p.Validate())
				return
			}
			require.Error(t, err)
			for _, s := range tt.wantErr {
				assert.ErrorContains(t, err, s)
			}
		})
	}
}

func TestSetParamsValidatesFirst(t *testing.T) {
	// fd -1 would give EBADF: the error must come from validation.
	err := SetParams(-1, Params{Usecs: MaxUsecs + 1})
	require.Error(t, err)
	assert.NotErrorIs(t, err, unix.EBADF)
	assert.ErrorContains(t, err, "usecs 2147483648")
	assert.ErrorContains(t, err, "2147483647")
}

func TestParamsString(t *testing.T) {
	s := Params{Usecs: 5, Budget: 16, Prefer: true}.String()
	assert.Equal(t, "usecs=5 budget=16 prefer=true", s)
	assert.False(t, strings.Contains(Params{}.String(), "true"))
}
