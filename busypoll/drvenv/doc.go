// Package drvenv gives a scenario its environment, in the spirit of the
// kernel selftests' NetDrvEnv: two fresh network namespaces, a link between
// them, the server end's ifindex and, where it has any, its interrupt
// lines, for every backend alike and with its own cleanup. The addresses
// (198.18.0.1/24 and .2, the RFC 2544 benchmarking range) exist only inside
// the test's namespaces.
//
// # Backends
//
// Veth: a pair with one rx queue, GRO on at the receiver (veth has a NAPI
// only then) and TSO off at the sender (otherwise TCP hands veth 64 KiB
// segments that bypass the NAPI's GRO). It shows the effect of IRQ
// suspension (busypoll/verdict). Whatever ends the process, the pair dies
// with its namespaces, which only the process's descriptors hold.
//
// Netdevsim: a server device of one port and one queue and a client
// device, linked across the namespaces with link_device, TSO off at the
// client. Device ids are random and retried, so concurrent runs do not
// collide; the ports, which the driver names eth0 in every namespace, are
// renamed with the link package's unique prefixes, because the
// napi:napi_poll trace knows a device by its name only. Devices outlive the
// process: the netdevsim package records each in an ownership record before
// creating it, deletes them on the test's cleanup and in the emergency
// cleanup of a signal or an expiring -test.timeout, and the next run reaps
// what a SIGKILL left (its log says what).
//
// NIC: two ports of the machine, joined by a cable, a switch or (in the
// project's VM) a QEMU hub, named by -busypoll.nic. busypoll/niclend
// refuses a port in use (an address, a route, a master), records its
// state, lends it to a test namespace and gives it back as it was, at
// cleanup and in the emergency cleanup. Every NAPI of the server is
// configured, and the data may come through any; FindIRQs finds the
// interrupt line of each (the NAPI's irq from napi-get, or the
// /proc/interrupts line the driver named for the rx queue), for the
// interrupt rules of check 4.
//
// # What netdevsim cannot show
//
// In drivers/net/netdevsim/netdev.c, nsim_start_xmit() queues the packet on
// the peer's rx queue and arms a 5 µs hrtimer whose callback schedules the
// peer's NAPI, and nsim_poll() ignores napi_complete_done()'s result. So
// nothing ever masks netdevsim's "interrupt": after a deferred completion or
// a busy poll the next transmit's timer schedules the softirq poll anyway,
// and defer-hard-irqs, gro-flush-timeout and irq-suspend-timeout cannot
// change what busy polling finds. A busy poll wins packets there only when
// it happens to own the NAPI while packets wait, so check 4 on netdevsim is
// functional: the epoll busy loop must be seen polling the server's NAPI
// (napi:napi_poll), and every subtest logs that the effect of suspension is
// not tested, and why.
package drvenv
