// Package napi is a small client for the NAPI and queue objects of the Linux
// "netdev" generic netlink family: list, read and configure NAPI instances
// (defer-hard-irqs, gro-flush-timeout, irq-suspend-timeout, threaded), list
// queues with the NAPI that serves them, and tell which of these settings the
// running kernel supports.
//
// The wire format is documented in the kernel's
// Documentation/netlink/specs/netdev.yaml. The package speaks it directly with
// github.com/mdlayher/genetlink; it needs no YNL, ip or ethtool binaries.
//
// # Presence of values
//
// Replies from the kernel carry plain values plus a Present mask of Attr bits
// saying which optional attributes the kernel reported (a NAPI without an IRQ
// has no irq attribute, pid is only reported while the NAPI is threaded, and
// older kernels report fewer settings). Requests use pointers: a nil field of
// Settings is not sent, so the kernel leaves that setting unchanged.
//
// # Errors
//
// Errors from the kernel are of type *Error. They name the operation and the
// object (NAPI id or ifindex), keep the kernel's extended acknowledgement
// message, and match os.ErrPermission (EPERM: napi-set needs CAP_NET_ADMIN)
// and os.ErrNotExist (ENOENT: no such NAPI; ENODEV: no such interface) with
// errors.Is.
//
// # Namespaces
//
// NAPI ids are scoped to a network namespace (Linux 6.13 and later): a Client
// sees only the NAPIs of the namespace it was dialed in. Dial takes the
// namespace as a file descriptor, so the caller never has to switch the
// namespace of its own thread.
package napi
