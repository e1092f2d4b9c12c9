// Package busypoll is the Go port of the kernel selftest's busy_poller.c and
// of the plumbing of busy_poll_test.sh: epoll busy-poll parameters
// (EPIOCSPARAMS), an edge-triggered receiver that busy polls through epoll,
// a sender, the kernel's busy-poll counters of a network namespace, and
// anonymous network namespaces with a veth pair between them.
//
// Sockets belong to the network namespace of the thread that creates them.
// Create them (Listen, Send) inside NetNS.Do; once created they can be used
// from any goroutine.
package busypoll
