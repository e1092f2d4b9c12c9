package scenario_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll/drvenv"
	"github.com/netdev-go/busypolltest/busypoll/scenario"
)

func TestBusyPollFlags(t *testing.T) {
	good := scenario.Flags{Size: "1MiB", Budget: 16, Prefer: 1, Defers: 100, MaxEvents: 8,
		GRO: 50 * time.Microsecond, Suspend: 20 * time.Millisecond, Timeout: 30 * time.Second, Backend: "auto",
		ComparePairs: 8}
	cfg, err := good.Validate()
	require.NoError(t, err)
	assert.Equal(t, int64(1<<20), cfg.Size)
	assert.Equal(t, []string{drvenv.Netdevsim, drvenv.Veth}, cfg.Backends)
	assert.False(t, cfg.Strict)

	tests := []struct {
		name    string
		change  func(*scenario.Flags)
		wantErr string
	}{
		{"size zero", func(r *scenario.Flags) { r.Size = "0" }, `-busypoll.size="0" out of range: must be 1 B to 64 GiB`},
		{"size too big", func(r *scenario.Flags) { r.Size = "65GiB" }, "must be 1 B to 64 GiB"},
		{"size garbage", func(r *scenario.Flags) { r.Size = "lots" }, `-busypoll.size="lots": not a byte count`},
		{"usecs", func(r *scenario.Flags) { r.Usecs = 1 << 31 }, "-busypoll.usecs=2147483648 out of range: must be 0 to 2147483647"},
		{"budget", func(r *scenario.Flags) { r.Budget = 65536 }, "-busypoll.budget=65536 out of range: must be 0 to 65535"},
		{"prefer", func(r *scenario.Flags) { r.Prefer = 2 }, "-busypoll.prefer=2 out of range: must be 0 or 1"},
		{"defer", func(r *scenario.Flags) { r.Defers = 1 << 31 }, "-busypoll.defer-hard-irqs=2147483648 out of range"},
		{"max events", func(r *scenario.Flags) { r.MaxEvents = 0 }, "-busypoll.max-events=0 out of range: must be 1 to"},
		{"gro", func(r *scenario.Flags) { r.GRO = -1 }, "-busypoll.gro-flush-timeout=-1ns out of range"},
		{"suspend", func(r *scenario.Flags) { r.Suspend = -time.Second }, "-busypoll.suspend-timeout=-1s out of range"},
		{"timeout", func(r *scenario.Flags) { r.Timeout = 0 }, "-busypoll.timeout=0s out of range: must be positive"},
		{"compare pairs", func(r *scenario.Flags) { r.ComparePairs = 21 }, "-busypoll.compare-pairs=21 out of range: must be 1 to 20 (0 for the backend's default)"},
		{"nic one port", func(r *scenario.Flags) { r.NIC = "eth2" }, `-busypoll.nic="eth2": want two port names, SERVER,CLIENT`},
		{"nic same port", func(r *scenario.Flags) { r.NIC = "eth2,eth2" }, "the server and client ports must differ"},
		{"nic long name", func(r *scenario.Flags) { r.NIC = "eth2,averyveryverylongname" }, `"averyveryverylongname" is not a valid interface name (at most 15 characters`},
		{"nic backend without ports", func(r *scenario.Flags) { r.Backend = "nic" }, "-busypoll.backend=nic needs -busypoll.nic=SERVER,CLIENT"},
		{"backend", func(r *scenario.Flags) { r.Backend = "loopback" }, `-busypoll.backend="loopback": must be auto, netdevsim, veth or nic`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := good
			tt.change(&r)
			_, err := r.Validate()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.wantErr)
		})
	}

	sizes := map[string]int64{"1": 1, "100B": 100, "512KiB": 512 << 10, "64MiB": 64 << 20, "2GiB": 2 << 30}
	for in, want := range sizes {
		got, err := scenario.ParseSize(in)
		if assert.NoError(t, err, in) {
			assert.Equal(t, want, got, in)
		}
	}
	r := good
	r.Backend = "veth"
	cfg, err = r.Validate()
	require.NoError(t, err)
	assert.True(t, cfg.Strict)

	r = good
	r.NIC = "eth2,eth3"
	cfg, err = r.Validate()
	require.NoError(t, err)
	assert.Equal(t, []string{drvenv.Netdevsim, drvenv.Veth, drvenv.NIC}, cfg.Backends, "naming ports adds the nic backend")
	assert.Equal(t, "eth2", cfg.ServerPort)
	assert.Equal(t, "eth3", cfg.ClientPort)
}
