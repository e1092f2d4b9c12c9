package kernelfeature_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
)

func TestUnsupportedFeatureError(t *testing.T) {
	probe := errors.New("EINVAL")
	tests := []struct {
		name string
		err  kernelfeature.UnsupportedFeatureError
		want string
	}{
		{"version", kernelfeature.UnsupportedFeatureError{Name: "the EPIOCSPARAMS ioctl", MinimumVersion: "6.9", Err: probe},
			"kernel has no the EPIOCSPARAMS ioctl: needs Linux 6.9 (EINVAL)"},
		{"config", kernelfeature.UnsupportedFeatureError{Name: "epoll busy polling", ConfigOff: "CONFIG_NET_RX_BUSY_POLL", Err: probe},
			"kernel has no epoll busy polling: built without CONFIG_NET_RX_BUSY_POLL (EINVAL)"},
		{"no probe error", kernelfeature.UnsupportedFeatureError{Name: "napi-set threaded", MinimumVersion: "6.13"},
			"kernel has no napi-set threaded: needs Linux 6.13"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, tt.err.Error())
			assert.ErrorIs(t, &tt.err, errors.ErrUnsupported)
		})
	}
}

func TestAll(t *testing.T) {
	a := &kernelfeature.UnsupportedFeatureError{Name: "a", MinimumVersion: "6.9"}
	b := &kernelfeature.UnsupportedFeatureError{Name: "b", MinimumVersion: "6.13"}
	m := kernelfeature.Missing{a, b}
	assert.Equal(t, "kernel has no a: needs Linux 6.9; kernel has no b: needs Linux 6.13", m.Error())
	assert.Equal(t, []*kernelfeature.UnsupportedFeatureError{a, b}, kernelfeature.All(fmt.Errorf("probe: %w", m)))
	assert.Empty(t, kernelfeature.All(errors.New("other")))
	assert.ErrorIs(t, m, errors.ErrUnsupported)
}
