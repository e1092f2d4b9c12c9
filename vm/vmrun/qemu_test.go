package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestQEMUArgsNICs(t *testing.T) {
	base := &vmConfig{kernel: "/k/bzImage", memMiB: 1024, smp: 2}
	args := strings.Join(qemuArgs(base), " ")
	assert.NotContains(t, args, "-netdev", "no NICs unless asked for")
	assert.Contains(t, args, "-nodefaults", "-nodefaults: no default NIC either")

	two := *base
	two.nics = 2
	args = strings.Join(qemuArgs(&two), " ")
	assert.Contains(t, args, "-netdev hubport,id=nic0,hubid=0 -device virtio-net-pci,netdev=nic0,mac=52:54:00:00:00:01,romfile=")
	assert.Contains(t, args, "-netdev hubport,id=nic1,hubid=0 -device virtio-net-pci,netdev=nic1,mac=52:54:00:00:00:02,romfile=")
	assert.NotContains(t, args, "-bios", "no firmware named: QEMU's own")

	tuned := *base
	tuned.bios, tuned.tscKHz, tuned.hz, tuned.append = "/q/qboot.rom", 2445412, 250, "loglevel=8"
	args = strings.Join(qemuArgs(&tuned), " ")
	assert.Contains(t, args, "-bios /q/qboot.rom")
	assert.Contains(t, args, " tsc_early_khz=2445412 lpj=9781648 loglevel=8", "the host's TSC rate (and loops per jiffy at HZ 250), before the caller's words")
	noHZ := tuned
	noHZ.hz = 0
	assert.NotContains(t, strings.Join(qemuArgs(&noHZ), " "), "lpj=", "no lpj= for a kernel of unknown HZ")
	assert.Contains(t, args, " noapictimer ")
	tuned.kernelArgs = "cryptomgr.notests"
	assert.Contains(t, strings.Join(qemuArgs(&tuned), " "), " lpj=9781648 cryptomgr.notests loglevel=8", "the kernel's words before the caller's, who can undo them")

	for _, host := range []string{"user", "tap", "bridge", "socket", "stream", "dgram", "vhost"} {
		assert.NotContains(t, args, "-netdev "+host, "no host network")
	}
}
