package kernelfeature_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/netdev-go/busypolltest/busypoll/kernelfeature"
)

func TestKernelAtLeast(t *testing.T) {
	tests := []struct {
		release, since string
		want           bool
	}{
		{"6.18.44-fc-v1045", "6.13", true},
		{"7.3.4", "6.19", true},
		{"6.1.0-28-amd64", "6.9", false},
		{"6.13", "6.13", true},
		{"6.12.9", "6.13", false},
		{"5.19.0", "6.9", false},
		{"garbage", "6.9", false},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, kernelfeature.AtLeast(tt.release, tt.since), "%s at least %s", tt.release, tt.since)
	}
}
