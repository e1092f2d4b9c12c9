// Package busypoll is the Go port of the kernel selftest's busy_poller.c:
// epoll busy-poll parameters (EPIOCSPARAMS), an edge-triggered receiver that
// busy polls through epoll, a sender, the kernel's busy-poll counters of a
// network namespace, and the host's busy-poll sysctls.
//
// Sockets belong to the network namespace of the thread that creates them.
// Create them (Listen, Send) inside the Do of a busypoll/namespace namespace;
// once created they can be used from any goroutine. The namespaces and the
// devices between them are packages of their own: busypoll/namespace and
// busypoll/link.
package busypoll
