package testenv_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/netdev-go/busypolltest/busypoll/testenv"
)

func TestMountPoints(t *testing.T) {
	assert.Contains(t, testenv.MountPoints(t, "proc"), "/proc")
	assert.Contains(t, testenv.MountPoints(t, ""), "/proc")
	assert.NotContains(t, testenv.MountPoints(t, "no-such-fs"), "/proc")
}
