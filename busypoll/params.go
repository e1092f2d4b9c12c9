package busypoll

import (
	"errors"
	"fmt"
	"math"
	"os"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
)

// Limits the kernel applies to EPIOCSPARAMS (fs/eventpoll.c).
const (
	// MaxUsecs is the largest busy-poll time in microseconds (S32_MAX).
	MaxUsecs = math.MaxInt32
	// MaxBudget is the largest budget the 16-bit field can hold.
	MaxBudget = math.MaxUint16
	// UnprivilegedMaxBudget is NAPI_POLL_WEIGHT: a larger budget needs
	// CAP_NET_ADMIN.
	UnprivilegedMaxBudget = 64
)

// The epoll ioctls (include/uapi/linux/eventpoll.h), as x/sys/unix encodes
// them for the architecture (mips, ppc and sparc differ from the generic
// _IOW(0x8A, 1, 8) / _IOR(0x8A, 2, 8)).
const (
	ioctlEPIOCSPARAMS = unix.EPIOCSPARAMS
	ioctlEPIOCGPARAMS = unix.EPIOCGPARAMS
)

// epollParams is struct epoll_params, exactly as the kernel lays it out.
type epollParams struct {
	usecs  uint32
	budget uint16
	prefer uint8
	pad    uint8
}

// Catch a layout change at compile time: the ioctl number encodes 8 bytes.
var _ [8]struct{} = [unsafe.Sizeof(epollParams{})]struct{}{}

// Params are the busy-poll settings of one epoll instance.
//
// The zero value means no busy polling (what a fresh epoll instance has).
type Params struct {
	// Usecs is how long epoll_wait busy polls before it sleeps, in
	// microseconds, at most MaxUsecs. 0 with Prefer does one non-blocking
	// pass of the NAPI poll per epoll_wait.
	Usecs uint32
	// Budget is the number of packets one busy-poll pass may process. Above
	// UnprivilegedMaxBudget the kernel requires CAP_NET_ADMIN.
	Budget uint16
	// Prefer is prefer-busy-poll: the kernel defers device interrupts while
	// the application busy polls (and with irq-suspend-timeout, suspends
	// them).
	Prefer bool
}

// NewParams checks raw numbers (from flags, say) against the kernel's limits
// and returns them as Params. The error names the value and the limit.
func NewParams(usecs, budget, prefer uint64) (Params, error) {
	if usecs > MaxUsecs {
		return Params{}, fmt.Errorf("busypoll: busy-poll usecs %d out of range: the kernel allows at most %d", usecs, MaxUsecs)
	}
	if budget > MaxBudget {
		return Params{}, fmt.Errorf("busypoll: busy-poll budget %d out of range: at most %d", budget, MaxBudget)
	}
	if prefer > 1 {
		return Params{}, fmt.Errorf("busypoll: prefer-busy-poll %d out of range: must be 0 or 1", prefer)
	}
	return Params{Usecs: uint32(usecs), Budget: uint16(budget), Prefer: prefer == 1}, nil
}

// Validate reports whether the kernel would accept p, apart from the
// capability check of a budget above UnprivilegedMaxBudget.
func (p Params) Validate() error {
	if p.Usecs > MaxUsecs {
		return fmt.Errorf("busypoll: busy-poll usecs %d out of range: the kernel allows at most %d", p.Usecs, MaxUsecs)
	}
	return nil
}

// String formats p the way the selftest's options name them.
func (p Params) String() string {
	return "usecs=" + strconv.FormatUint(uint64(p.Usecs), 10) +
		" budget=" + strconv.FormatUint(uint64(p.Budget), 10) +
		" prefer=" + strconv.FormatBool(p.Prefer)
}

func (p Params) raw() epollParams {
	r := epollParams{usecs: p.Usecs, budget: p.Budget}
	if p.Prefer {
		r.prefer = 1
	}
	return r
}

// SetParams validates p and sets it on the epoll instance epfd with
// EPIOCSPARAMS.
//
// A kernel without the ioctl (before Linux 6.9, or built without
// CONFIG_NET_RX_BUSY_POLL) gives an error matching errors.ErrUnsupported.
// A budget above UnprivilegedMaxBudget without CAP_NET_ADMIN gives an error
// matching os.ErrPermission.
func SetParams(epfd int, p Params) error {
	if err := p.Validate(); err != nil {
		return err
	}
	if err := setRaw(epfd, p.raw()); err != nil {
		if errors.Is(err, unix.EPERM) && p.Budget > UnprivilegedMaxBudget {
			return fmt.Errorf("busypoll: set epoll params (%v) on fd %d: budget %d above %d needs CAP_NET_ADMIN: %w",
				p, epfd, p.Budget, UnprivilegedMaxBudget, err)
		}
		return fmt.Errorf("busypoll: set epoll params (%v) on fd %d: %w", p, epfd, err)
	}
	return nil
}

// GetParams reads the busy-poll settings of the epoll instance epfd with
// EPIOCGPARAMS. Errors are as for SetParams.
func GetParams(epfd int) (Params, error) {
	var r epollParams
	if err := epollIoctl(epfd, ioctlEPIOCGPARAMS, &r); err != nil {
		return Params{}, fmt.Errorf("busypoll: get epoll params of fd %d: %w", epfd, err)
	}
	if r.prefer > 1 || r.pad != 0 {
		return Params{}, fmt.Errorf("busypoll: get epoll params of fd %d: kernel returned prefer %d pad %d, want prefer 0 or 1 and pad 0", epfd, r.prefer, r.pad)
	}
	return Params{Usecs: r.usecs, Budget: r.budget, Prefer: r.prefer == 1}, nil
}

// setRaw passes r to EPIOCSPARAMS unchecked, so that tests can send what
// Params cannot express (a non-zero pad, prefer 2).
func setRaw(epfd int, r epollParams) error {
	return epollIoctl(epfd, ioctlEPIOCSPARAMS, &r)
}

// epollIoctl issues one of the two ioctls and explains the errors that mean
// "this kernel cannot do it".
func epollIoctl(epfd int, req uintptr, r *epollParams) error {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(epfd), req, uintptr(unsafe.Pointer(r)))
	if errno == 0 {
		return nil
	}
	return explainIoctlErrno(epfd, errno)
}

func explainIoctlErrno(epfd int, errno unix.Errno) error {
	switch errno {
	case unix.ENOTTY:
		// Both "not an epoll fd" and "epoll without the ioctl" end here.
		if isEpoll, err := isEpollFD(epfd); err == nil && !isEpoll {
			return fmt.Errorf("fd %d is not an epoll instance: %w", epfd, errno)
		} else if err != nil {
			return fmt.Errorf("fd %d is not an epoll instance, or the kernel lacks EPIOCSPARAMS (needs Linux 6.9): %w", epfd, errno)
		}
		return &kernelfeature.UnsupportedFeatureError{Name: "EPIOCSPARAMS", MinimumVersion: "6.9", Err: errno}
	case unix.EOPNOTSUPP:
		return &kernelfeature.UnsupportedFeatureError{Name: "epoll busy polling", ConfigOff: "CONFIG_NET_RX_BUSY_POLL", Err: errno}
	}
	return errno
}

// isEpollFD tells from /proc whether fd is an epoll instance.
func isEpollFD(fd int) (bool, error) {
	target, err := os.Readlink("/proc/thread-self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return false, err
	}
	return target == "anon_inode:[eventpoll]", nil
}

// Supported reports whether the running kernel has the epoll busy-poll
// ioctls: nil if it has, an error matching errors.ErrUnsupported that says
// what is missing (suitable for t.Skip) if it has not, or another error if
// the probe itself failed. The answer is computed once.
func Supported() error { return supported() }

var supported = sync.OnceValue(func() error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("busypoll: probe epoll busy poll: epoll_create1: %w", err)
	}
	defer unix.Close(epfd)
	var r epollParams
	if err := epollIoctl(epfd, ioctlEPIOCGPARAMS, &r); err != nil {
		return fmt.Errorf("busypoll: probe epoll busy poll: %w", err)
	}
	return nil
})
