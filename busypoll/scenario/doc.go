// Package scenario runs one row of TestBusyPoll's table over an environment
// (busypoll/drvenv) and applies its checks to every transfer:
//
//  1. every byte arrived unchanged (SHA-256 and length);
//  2. the settings took effect: napi-get reads back every NAPI setting
//     after every change, EPIOCGPARAMS the epoll parameters, and the
//     accepted socket's SO_BUSY_POLL is 0;
//  3. the data came through the configured NAPI (SO_INCOMING_NAPI_ID);
//  4. busy polling happened, and where the device can show it, IRQ
//     suspension made the difference: a sequential comparison of
//     suspension against a control on veth and nic, the epoll busy loop
//     seen in the napi:napi_poll trace on netdevsim and under emulation,
//     the NAPI's kernel thread busy polling in napi_threaded, and on nic
//     the interrupts of the receiving NAPI;
//  5. nothing else busy-polls: a negative control with epoll busy polling
//     off.
//
// The decision rules, and why they hold, are busypoll/verdict's; one
// transfer and its measurements are busypoll/measure's. Config is the
// validated form of the -busypoll.* flags, which the root test defines.
package scenario
