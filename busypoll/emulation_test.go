package busypoll

import "os"

// vmScale is the divisor for the sizes of the large transfers when the tests
// run in the project's QEMU VM (vm/vmrun sets BUSYPOLLTEST_VM=1): software
// emulation moves data about 100 times slower, and the full sizes run on the
// host anyway.
const vmScale = 16

// large returns n, or n/vmScale inside the VM.
func large(n int) int {
	if os.Getenv("BUSYPOLLTEST_VM") != "" {
		return n / vmScale
	}
	return n
}
