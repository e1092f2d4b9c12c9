package napi

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll/testenv"
)

// TestDialRefusesNoNamespace: a closed namespace's fd (-1) or 0 must never
// silently dial the caller's namespace.
func TestDialRefusesNoNamespace(t *testing.T) {
	for _, fd := range []int{-1, 0, -42} {
		c, err := Dial(fd)
		require.Error(t, err, "fd %d", fd)
		assert.Nil(t, c)
		assert.ErrorContains(t, err, "is not an open descriptor (a closed namespace?); DialCurrent dials the calling thread's namespace")
	}
}

func TestDialCurrent(t *testing.T) {
	testenv.SkipShort(t, "talks to the running kernel")
	c := dialCurrent(t)
	assert.NoError(t, c.Close())
}
