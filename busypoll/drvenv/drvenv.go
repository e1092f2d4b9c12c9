package drvenv

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/netdev-go/busypolltest/busypoll/link"
	"github.com/netdev-go/busypolltest/busypoll/namespace"
	"github.com/netdev-go/busypolltest/busypoll/niclend"
	"github.com/netdev-go/busypolltest/busypoll/testnet"
	"github.com/netdev-go/busypolltest/napi"
	"github.com/netdev-go/busypolltest/napi/irqs"
	"github.com/netdev-go/busypolltest/netdevsim"
)

// The backends: the kinds of link an Env can be made of.
const (
	Veth      = "veth"
	Netdevsim = "netdevsim"
	NIC       = "nic"
)

const (
	serverPrefix   = "198.18.0.1/24" // RFC 2544 benchmarking range, only inside the test's namespaces
	clientPrefix   = "198.18.0.2/24"
	deviceDeadline = 10 * time.Second
)

// Options say how to make an Env.
type Options struct {
	// Strict: the user named the backend, so that its being unavailable
	// is a failure, not a skip.
	Strict bool
	// ServerPort and ClientPort are the nic backend's two ports.
	ServerPort, ClientPort string
}

// New makes an Env of backend in two fresh namespaces. It skips (or, with
// o.Strict, fails) where the backend is unavailable.
func New(t *testing.T, backend string, o Options) *Env {
	t.Helper()
	server := testnet.NetNS(t, "bpt-server")
	client := testnet.NetNS(t, "bpt-client")
	var p *Env
	switch backend {
	case Veth:
		p = setupVeth(t, o, server, client)
	case Netdevsim:
		p = setupNetdevsim(t, o, server, client)
	case NIC:
		p = setupNIC(t, o, server, client)
	default:
		t.Fatalf("drvenv: unknown backend %q", backend)
	}
	p.Backend = backend
	return p
}

// Env is what a scenario runs over: two fresh network namespaces and the
// link between them, the server end (which receives through the NAPI under
// test) and the client end, for every backend alike. Everything it made is
// released at the test's cleanup.
type Env struct {
	// Backend is the kind of link: Veth, Netdevsim or NIC.
	Backend string
	// Server and Client are the two ends; each knows its namespace (NS)
	// and ifindex.
	Server, Client link.Link
	// ManyNAPIs: the server may have several rx queues and NAPIs (nic);
	// every one is configured and the data may come through any.
	ManyNAPIs bool
	// Loan is the nic backend's server port, which records the NAPI
	// settings to restore, also in an emergency.
	Loan *niclend.Loan
	// BusDevice names the device behind the server interface (nic), for
	// finding its interrupt lines.
	BusDevice string
	// IRQ holds the interrupt line of each NAPI of the server (nic), or
	// the reason there is none in NoIRQ.
	IRQ   map[uint32]irqs.Line
	NoIRQ error
}

// Flap takes both links down, then up, and waits for the carrier.
func (p *Env) Flap(t *testing.T) {
	t.Helper()
	for _, up := range []bool{false, true} {
		require.NoError(t, p.Server.SetUp(up))
		require.NoError(t, p.Client.SetUp(up))
	}
	require.NoError(t, p.Server.WaitCarrier(deviceDeadline))
	require.NoError(t, p.Client.WaitCarrier(deviceDeadline))
}

// setupVeth makes a veth pair.
func setupVeth(t *testing.T, o Options, server, client *namespace.NetNS) *Env {
	t.Helper()
	p, err := link.NewVethPair(server, client,
		netip.MustParsePrefix(serverPrefix), netip.MustParsePrefix(clientPrefix))
	if errors.Is(err, link.ErrNoVeth) {
		unavailable(t, o, "%v", err)
	}
	require.NoError(t, err, "veth pair")
	return &Env{Server: p.Server, Client: p.Client}
}

// setupNetdevsim makes two linked netdevsim devices of one port each, after
// reaping what killed runs left, with names unique to the run.
func setupNetdevsim(t *testing.T, o Options, server, client *namespace.NetNS) *Env {
	t.Helper()
	if err := netdevsim.Available(); err != nil {
		unavailable(t, o, "%v", err)
	}
	bus := netdevsim.Default()
	if os.Getenv(NoRecordEnv) != "" {
		// Only to show what the record is for (TestBusyPollKilledRunIsReaped).
		t.Logf("%s is set: no ownership record, a SIGKILL leaves these devices behind", NoRecordEnv)
		bus.SetRecordDir("")
	}
	// What killed runs left behind. From here on, every device is in the
	// ownership record before it is created, and in the emergency cleanup
	// of TestMain until it is deleted.
	orphans, err := bus.ReapOrphans()
	for _, orphan := range orphans {
		t.Log(orphan)
	}
	require.NoError(t, err, "reap the netdevsim devices of killed runs")
	ctx, cancel := context.WithTimeout(context.Background(), deviceDeadline)
	defer cancel()
	var devs [2]*netdevsim.Device
	for i, ns := range []*namespace.NetNS{server, client} {
		dev, err := bus.NewDevice(ctx, ns, 1, 1)
		require.NoError(t, err, "create netdevsim device in %s", ns)
		t.Cleanup(func() { assert.NoError(t, dev.Delete(), "delete netdevsim%d", dev.ID) })
		require.Len(t, dev.Ports, 1)
		devs[i] = dev
	}
	require.NoError(t, bus.Link(devs[0].Endpoint(0), devs[1].Endpoint(0)), "link netdevsim%d and netdevsim%d", devs[0].ID, devs[1].ID)
	t.Cleanup(func() { assert.NoError(t, bus.Unlink(devs[0].Endpoint(0))) })
	holdIfAsked(devs[0].ID, devs[1].ID)
	// netdevsim names its ports eth0 in every namespace, and the
	// napi:napi_poll trace knows a device by its name only: names unique to
	// the run keep another run's (or anyone's) eth0 out of this run's trace.
	if os.Getenv(KeepNamesEnv) == "" {
		names := [2]string{}
		names[0], names[1] = link.UniqueNames(link.NetdevsimServerPrefix, link.NetdevsimClientPrefix)
		for i, ns := range []*namespace.NetNS{server, client} {
			require.NoError(t, link.Rename(ns, devs[i].Ports[0].IfIndex, names[i]), "netdevsim%d", devs[i].ID)
		}
	} else {
		t.Logf("%s is set: the netdevsim ports keep the driver's names, which other runs' devices share", KeepNamesEnv)
	}
	p := &Env{}
	p.Server, err = link.New(server, devs[0].Ports[0].IfIndex, netip.MustParsePrefix(serverPrefix))
	require.NoError(t, err)
	p.Client, err = link.New(client, devs[1].Ports[0].IfIndex, netip.MustParsePrefix(clientPrefix))
	require.NoError(t, err)
	// As on veth: with TSO, netdevsim carries 64 KiB segments, ~40 packets
	// per MiB, and busy polling has next to nothing to find.
	require.NoError(t, client.Do(func() error { return link.SetOffload(p.Client.Name, link.TSO, false) }))
	require.NoError(t, p.Server.WaitCarrier(deviceDeadline))
	require.NoError(t, p.Client.WaitCarrier(deviceDeadline))
	return p
}

// setupNIC lends the two named ports to the namespaces (refusing ports in
// use, changing nothing then) and gives them back as they were at cleanup,
// and also on SIGINT, SIGTERM and before -test.timeout expires.
func setupNIC(t *testing.T, o Options, server, client *namespace.NetNS) *Env {
	t.Helper()
	p := &Env{}
	p.ManyNAPIs = true
	for _, end := range []struct {
		name   string
		ns     *namespace.NetNS
		prefix string
		link   *link.Link
	}{{o.ServerPort, server, serverPrefix, &p.Server}, {o.ClientPort, client, clientPrefix, &p.Client}} {
		loan, err := niclend.Prepare(end.name, end.ns)
		require.NoError(t, err, "lend port %s to %s", end.name, end.ns)
		// Registered before the move, so that no moment of the loan is
		// unprotected; after an emergency, no new loan moves.
		forget, ok := niclend.OnEmergency(func() error { return loan.Return() })
		require.True(t, ok, "the emergency cleanup already ran (signal or -test.timeout): no port is lent any more")
		t.Cleanup(func() {
			assert.NoError(t, loan.Return(), "give port %s back", end.name)
			forget()
		})
		require.NoError(t, loan.Move(), "lend port %s to %s", end.name, end.ns)
		t.Logf("nic: lent %v to %s", loan.Orig(), end.ns)
		idx, err := link.IndexOf(end.ns, end.name)
		require.NoError(t, err, "find %s in %s after the move (its ifindex may have changed)", end.name, end.ns)
		*end.link, err = link.New(end.ns, idx, netip.MustParsePrefix(end.prefix))
		require.NoError(t, err)
		if end.ns == server {
			p.Loan, p.BusDevice = loan, loan.Orig().Device
		}
	}
	// As on veth: GRO on at the server (veth stand-ins have a NAPI only
	// then), TSO off at the client, so that packets reach the server's NAPI
	// one by one.
	require.NoError(t, server.Do(func() error { return link.SetOffload(p.Server.Name, link.GRO, true) }))
	require.NoError(t, client.Do(func() error { return link.SetOffload(p.Client.Name, link.TSO, false) }))
	require.NoError(t, p.Server.WaitCarrier(deviceDeadline))
	require.NoError(t, p.Client.WaitCarrier(deviceDeadline))
	return p
}

// unavailable skips, or fails where the user named the backend.
func unavailable(t *testing.T, o Options, format string, args ...any) {
	t.Helper()
	if o.Strict {
		t.Fatalf(format+" (and -busypoll.backend asks for it)", args...)
	}
	t.Skipf(format, args...)
}

// FindIRQs finds the interrupt line of each of the server's NAPIs ids (nic),
// or records in NoIRQ why there is none.
func (p *Env) FindIRQs(t *testing.T, nc *napi.Client, ids []uint32) {
	t.Helper()
	queues, err := nc.Queues(uint32(p.Server.Index))
	require.NoError(t, err, "queue-get %s", p.Server.Name)
	p.IRQ, p.NoIRQ = map[uint32]irqs.Line{}, nil
	for _, id := range ids {
		n, err := nc.NAPI(id)
		require.NoError(t, err)
		rxQueue := -1
		for _, q := range queues {
			if q.Type == napi.QueueRX && q.NAPIID == id {
				rxQueue = int(q.ID)
			}
		}
		line, err := irqs.Find(n.IRQ, n.Has(napi.AttrIRQ), p.BusDevice, rxQueue)
		if errors.Is(err, irqs.ErrNoIRQ) {
			p.IRQ, p.NoIRQ = nil, fmt.Errorf("%s NAPI %d: %w", p.Server.Name, id, err)
			t.Logf("nic: %v", p.NoIRQ)
			return
		}
		require.NoError(t, err, "find the interrupt line of NAPI %d", id)
		t.Logf("nic: %s NAPI %d (rx queue %d): %v", p.Server.Name, id, rxQueue, line)
		p.IRQ[id] = line
	}
}

// HoldEnv makes a child run of this binary (TestBusyPollLeavesNothing) print
// its netdevsim ids and stop, devices created, until it is killed.
const HoldEnv = "BUSYPOLLTEST_HOLD_AFTER_SETUP"

// holdIfAsked prints the ids and stops, when HoldEnv asks for it.
func holdIfAsked(ids ...int) {
	if os.Getenv(HoldEnv) == "" {
		return
	}
	fmt.Printf("HOLDING %v\n", ids)
	select {}
}

// KeepNamesEnv leaves netdevsim's ports with the driver's names (eth0), to
// show that TestBusyPollConcurrentTraceIsolated needs the unique names.
const KeepNamesEnv = "BUSYPOLLTEST_NETDEVSIM_KEEP_NAMES"

// NoRecordEnv turns netdevsim's ownership record off in setupNetdevsim, to
// show that TestBusyPollKilledRunIsReaped fails without it.
const NoRecordEnv = "BUSYPOLLTEST_NETDEVSIM_NO_RECORD"
