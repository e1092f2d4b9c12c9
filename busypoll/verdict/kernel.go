package verdict

import "github.com/netdev-go/busypolltest/busypoll/kernelfeature"

// KernelAtLeast is kernelfeature.AtLeast, kept for vm/kernelmatrix, which
// reads its recordings with it.
func KernelAtLeast(release, since string) bool { return kernelfeature.AtLeast(release, since) }
