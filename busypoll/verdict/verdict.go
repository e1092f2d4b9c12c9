package verdict

import (
	"errors"
	"fmt"
	"time"
)

// Arm names the role of a transfer in a subtest.
type Arm string

// The arms of a subtest.
const (
	// ArmSuspend: the scenario's settings, irq-suspend-timeout on.
	ArmSuspend Arm = "suspend"
	// ArmControl: the same NAPI and epoll settings with irq-suspend-timeout 0.
	ArmControl Arm = "control"
	// ArmNegative: epoll busy polling off (prefer 0, usecs 0): nothing may
	// be busy-polled.
	ArmNegative Arm = "negative"
	// ArmScenario: a transfer of a scenario that compares nothing (plain,
	// napi_threaded, and every transfer on a backend without IRQs).
	ArmScenario Arm = "scenario"
)

// Transfer is what one transfer measured on the receiving side. Its JSON form
// is the format of the recordings in testdata/.
type Transfer struct {
	// Run tells the subtests of one recording apart: every transfer of a
	// subtest has the same Run.
	Run string `json:"run,omitempty"`
	// Backend, Scenario and Round say where it was measured.
	Backend  string `json:"backend,omitempty"`
	Scenario string `json:"scenario,omitempty"`
	Round    int    `json:"round,omitempty"`
	// Arm is the transfer's role.
	Arm Arm `json:"arm"`
	// IRQSuspendTimeout, DeferHardIRQs and GROFlushTimeout are the NAPI's
	// settings during the transfer.
	IRQSuspendTimeout time.Duration `json:"irq_suspend_timeout_ns"`
	DeferHardIRQs     uint32        `json:"defer_hard_irqs"`
	GROFlushTimeout   time.Duration `json:"gro_flush_timeout_ns"`
	// Bytes were received, RxPackets arrived at the server device (before
	// GRO), BusyPolled of them were delivered by busy polling (TcpExt
	// BusyPollRxPackets of the receiving namespace).
	Bytes      int64  `json:"bytes"`
	RxPackets  uint64 `json:"rx_packets"`
	BusyPolled uint64 `json:"busy_polled"`
	// EpollWaits counts the receiver's epoll_wait calls.
	EpollWaits int `json:"epoll_waits"`
	// IRQs is the number of interrupts the receiving NAPI's interrupt line
	// raised during the transfer (nic backend; 0 where unknown).
	IRQs uint64 `json:"irqs,omitempty"`
	// SocketBusyPoll is the accepted socket's SO_BUSY_POLL (µs), read back.
	SocketBusyPoll int `json:"socket_busy_poll,omitempty"`
	// Elapsed is the receiving time.
	Elapsed time.Duration `json:"elapsed_ns"`
}

// Share is BusyPolled over RxPackets, 0 without packets.
func (t Transfer) Share() float64 { return share(t.BusyPolled, t.RxPackets) }

func share(busy, rx uint64) float64 {
	if rx == 0 {
		return 0
	}
	return float64(busy) / float64(rx)
}

// Total adds up the transfers of one arm.
type Total struct {
	Transfers  int
	RxPackets  uint64
	BusyPolled uint64
}

// Sum adds up the transfers of arm a in ts.
func Sum(ts []Transfer, a Arm) Total {
	var s Total
	for _, t := range ofArm(ts, a) {
		s.Transfers++
		s.RxPackets += t.RxPackets
		s.BusyPolled += t.BusyPolled
	}
	return s
}

// ofArm returns the transfers of arm a in ts, in order.
func ofArm(ts []Transfer, a Arm) []Transfer {
	var of []Transfer
	for _, t := range ts {
		if t.Arm == a {
			of = append(of, t)
		}
	}
	return of
}

// Share is the busy-polled share of the arm's rx packets.
func (s Total) Share() float64 { return share(s.BusyPolled, s.RxPackets) }

// String reads "12.3% (716 of 5820 rx packets in 8 transfers)".
func (s Total) String() string {
	return fmt.Sprintf("%.1f%% (%d of %d rx packets in %d transfers)", 100*s.Share(), s.BusyPolled, s.RxPackets, s.Transfers)
}

// Stream is check 1: every byte arrived, unchanged.
func Stream(want, sent, received int64, sentSum, receivedSum string) error {
	var errs []error
	if sent != want {
		errs = append(errs, fmt.Errorf("sent %d bytes, want %d", sent, want))
	}
	if received != sent {
		errs = append(errs, fmt.Errorf("received %d of the %d bytes sent", received, sent))
	}
	if receivedSum != sentSum {
		errs = append(errs, fmt.Errorf("SHA-256 of the stream received %s differs from the one sent %s", short(receivedSum), short(sentSum)))
	}
	return errors.Join(errs...)
}

func short(sum string) string {
	if len(sum) > 16 {
		return sum[:16] + "…"
	}
	return sum
}

// NAPI is check 3: the accepted socket's SO_INCOMING_NAPI_ID is one of the
// NAPIs that were configured.
func NAPI(got uint32, configured ...uint32) error {
	for _, id := range configured {
		if got == id {
			return nil
		}
	}
	if got == 0 {
		return fmt.Errorf("SO_INCOMING_NAPI_ID of the accepted socket is 0: the data came through no NAPI; configured %v", configured)
	}
	return fmt.Errorf("SO_INCOMING_NAPI_ID of the accepted socket is %d, not a configured NAPI %v: the data came through another NAPI", got, configured)
}
