package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/netdev-go/busypolltest/vm/vminit"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Console lines of a normal boot and run that must not count as trouble.
const benignConsole = `[    0.000000] Linux version 7.3.4 (root@host) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_LAZY
[    0.000000] Command line: console=ttyS0 panic=-1 oops=panic rdinit=/init
[    0.012000] RETBleed: WARNING: Spectre v2 mitigation leaves CPU vulnerable to RETBleed attacks, data leaks possible!
[    0.013000] Spectre V2 : WARNING: Unprivileged eBPF is enabled with eIBRS on, data leaks possible via Spectre v2 BHB attacks!
[    0.020000] rcu: Preemptible hierarchical RCU implementation.
[    0.020001] rcu: 	RCU restricting CPUs from NR_CPUS=64 to nr_cpu_ids=2.
[    0.021000] rcu: INFO: please report a stall, said nobody
[    0.300000] printk: legacy console [ttyS0] enabled
[    0.400000] Run /init as init process
vminit: WARNING: this is init talking, not the kernel
vminit: BUG: neither is this
vminit: init ready after 3ms; running /vmrun/bin/busypolltest.test
[    1.000000] netdevsim netdevsim1234 eth0: renamed from eth1
[    1.100000] random: crng init done
[    1.200000] tsc: Marking TSC unstable due to clocksource watchdog
[    2.000000] reboot: Restarting system
`

var troubleCases = []struct {
	name, kind string
	console    string
	first      string // the report's identifying line
	lines      int    // lines in the report
	ended      bool
}{
	{name: "WARN_ON", kind: "WARNING", ended: true, lines: 11,
		first: "[   12.345679] WARNING: CPU: 1 PID: 123 at net/core/dev.c:1234 netif_napi_add_weight_locked+0x1a/0x40",
		console: `[   12.345678] ------------[ cut here ]------------
[   12.345679] WARNING: CPU: 1 PID: 123 at net/core/dev.c:1234 netif_napi_add_weight_locked+0x1a/0x40
[   12.345680] Modules linked in:
[   12.345681] CPU: 1 UID: 0 PID: 123 Comm: busypolltest.te Not tainted 7.3.4 #1 PREEMPT(lazy)
[   12.345682] Hardware name: QEMU Standard PC (i440FX + PIIX, 1996), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[   12.345683] RIP: 0010:netif_napi_add_weight_locked+0x1a/0x40
[   12.345684] Call Trace:
[   12.345685]  <TASK>
[   12.345686]  nsim_init_napi+0x5c/0x90
[   12.345687]  </TASK>
[   12.345688] ---[ end trace 0000000000000000 ]---
`},
	{name: "WARNING without timestamps", kind: "WARNING", ended: true, lines: 4,
		first:   "WARNING: CPU: 0 PID: 1 at kernel/foo.c:1 foo+0x0/0x10",
		console: "------------[ cut here ]------------\r\nWARNING: CPU: 0 PID: 1 at kernel/foo.c:1 foo+0x0/0x10\r\nCall Trace:\r\n---[ end trace 0000000000000000 ]---\r\n"},
	{name: "circular locking", kind: "lockdep", lines: 6,
		first: "[    3.100000] WARNING: possible circular locking dependency detected",
		console: `[    3.099999] ======================================================
[    3.100000] WARNING: possible circular locking dependency detected
[    3.100001] 7.3.4 #1 Not tainted
[    3.100002] ------------------------------------------------------
[    3.100003] busypolltest.te/77 is trying to acquire lock:
[    3.100004] ffff888003a4b000 (rtnl_mutex){+.+.}-{4:4}, at: napi_set+0x10/0x20
`},
	{name: "recursive locking", kind: "lockdep", lines: 3,
		first:   "[    3.2] WARNING: possible recursive locking detected",
		console: "[    3.1] ============================================\n[    3.2] WARNING: possible recursive locking detected\n[    3.3] 7.3.4 #1 Not tainted\n"},
	{name: "inconsistent lock state", kind: "lockdep", lines: 3,
		first:   "[    3.2] WARNING: inconsistent lock state",
		console: "[    3.1] ================================\n[    3.2] WARNING: inconsistent lock state\n[    3.3] 7.3.4 #1 Not tainted\n"},
	{name: "KASAN", kind: "KASAN", lines: 4,
		first: "[    5.000001] BUG: KASAN: slab-use-after-free in nsim_poll+0x12/0x34",
		console: `[    5.000000] ==================================================================
[    5.000001] BUG: KASAN: slab-use-after-free in nsim_poll+0x12/0x34
[    5.000002] Read of size 8 at addr ffff888003a4b000 by task ksoftirqd/0/15
[    5.000003] ==================================================================
`},
	{name: "NULL pointer Oops", kind: "BUG", lines: 5,
		first: "[    7.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008",
		console: `[    7.000000] BUG: kernel NULL pointer dereference, address: 0000000000000008
[    7.000001] #PF: supervisor read access in kernel mode
[    7.000002] Oops: 0000 [#1] SMP PTI
[    7.000003] CPU: 0 UID: 0 PID: 1 Comm: init Not tainted 7.3.4 #1
[    7.000004] RIP: 0010:nsim_poll+0x12/0x34
`},
	{name: "Oops alone", kind: "Oops", lines: 1,
		first:   "[    7.1] Oops: general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP",
		console: "[    7.1] Oops: general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] SMP\n"},
	{name: "kernel BUG at", kind: "BUG", lines: 1,
		first:   "[    8.0] kernel BUG at mm/slub.c:123!",
		console: "[    8.0] kernel BUG at mm/slub.c:123!\n"},
	{name: "sleeping in atomic", kind: "BUG", lines: 2,
		first:   "[    9.0] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580",
		console: "[    9.0] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580\n[    9.1] in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 1, name: init\n"},
	{name: "RCU stall", kind: "RCU stall", lines: 4,
		first: "[   30.000000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:",
		console: `[   30.000000] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:
[   30.000001] rcu: 	1-...!: (1 GPs behind) idle=7f4c/1/0x4000000000000000 softirq=123/124 fqs=0
[   30.000002] rcu: 	(detected by 0, t=21002 jiffies, g=1234, q=5 ncpus=2)
[   30.000003] Sending NMI from CPU 0 to CPUs 1:
`},
	{name: "RCU self-detected stall", kind: "RCU stall", lines: 1,
		first:   "[   31.0] rcu: INFO: rcu_preempt self-detected stall on CPU",
		console: "[   31.0] rcu: INFO: rcu_preempt self-detected stall on CPU\n"},
	{name: "RCU sched stall, old format", kind: "RCU stall", lines: 1,
		first:   "INFO: rcu_sched detected stalls on CPUs/tasks:",
		console: "INFO: rcu_sched detected stalls on CPUs/tasks:\n"},
	{name: "hung task", kind: "hung task", lines: 1,
		first:   "[  130.0] INFO: task kworker/0:1:12 blocked for more than 122 seconds.",
		console: "[  130.0] INFO: task kworker/0:1:12 blocked for more than 122 seconds.\n"},
	{name: "UBSAN", kind: "UBSAN", lines: 1,
		first:   "[    4.0] UBSAN: array-index-out-of-bounds in drivers/net/netdevsim/netdev.c:100:5",
		console: "[    4.0] UBSAN: array-index-out-of-bounds in drivers/net/netdevsim/netdev.c:100:5\n"},
	{name: "bare stack dump keeps its context", kind: "call trace", lines: 4,
		first: "[    6.0] Call Trace:",
		console: `[    5.9] busypolltest.te: page allocation failure: order:5, mode:0xcc0(GFP_KERNEL)
[    5.9] CPU: 0 UID: 0 PID: 80 Comm: busypolltest.te Not tainted 7.3.4 #1
[    6.0] Call Trace:
[    6.1]  <TASK>
`},
	{name: "caller ids", kind: "WARNING", lines: 1,
		first:   "[    1.000000][    T1] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x1",
		console: "[    1.000000][    T1] WARNING: CPU: 0 PID: 1 at x.c:1 f+0x0/0x1\n"},
}

func scan(console string) ([]kernelReport, int) {
	s := newTroubleScanner()
	w := &lineWatcher{onLine: s.Line}
	_, _ = w.Write([]byte(console))
	w.Flush()
	return s.Reports()
}

func TestTroubleBenign(t *testing.T) {
	reports, more := scan(benignConsole)
	assert.Empty(t, reports)
	assert.Zero(t, more)
}

func TestTroubleReports(t *testing.T) {
	for _, tt := range troubleCases {
		t.Run(tt.name, func(t *testing.T) {
			// Between benign lines, with no newline at the very end.
			console := benignConsole + tt.console + "[   99.0] reboot: Restarting system"
			reports, more := scan(console)
			require.Len(t, reports, 1, "reports: %q", reports)
			assert.Zero(t, more)
			r := reports[0]
			assert.Equal(t, tt.kind, r.Kind)
			assert.Equal(t, tt.first, r.First())
			assert.Equal(t, tt.ended, r.Ended)
			want := strings.Split(strings.ReplaceAll(strings.TrimSuffix(tt.console, "\n"), "\r", ""), "\n")
			require.Len(t, want, tt.lines)
			if tt.ended {
				assert.Equal(t, want, r.Lines)
			} else {
				// Without an end marker it goes on to reportLines lines or
				// the end; a bare stack dump has the lines before it too.
				assert.Contains(t, strings.Join(r.Lines, "\n"), strings.Join(want, "\n"))
				assert.Contains(t, r.Lines, "[   99.0] reboot: Restarting system")
			}
			for _, l := range r.Lines {
				assert.NotContains(t, l, "\r")
			}
		})
	}
}

func TestTroubleLimits(t *testing.T) {
	t.Run("a report without end marker is cut", func(t *testing.T) {
		console := "[ 1.0] BUG: soft lockup - CPU#0 stuck for 22s! [init:1]\n" + strings.Repeat("[ 1.1]  some_function+0x1/0x2\n", 100)
		reports, _ := scan(console)
		require.Len(t, reports, 1)
		assert.Len(t, reports[0].Lines, reportLines)
		assert.False(t, reports[0].Ended)
	})
	t.Run("stack dumps in the rest of a long report are not new reports", func(t *testing.T) {
		console := "[ 1.0] rcu: INFO: rcu_preempt detected stalls on CPUs/tasks:\n" + strings.Repeat("[ 1.1]  x+0x1/0x2\n", 50) + "[ 1.2] Call Trace:\n[ 1.3]  <TASK>\n"
		reports, _ := scan(console)
		assert.Len(t, reports, 1)
	})
	t.Run("many reports", func(t *testing.T) {
		one := "------------[ cut here ]------------\nWARNING: CPU: 0 PID: 1 at a.c:1 f+0x0/0x1\n---[ end trace 0000000000000000 ]---\n"
		reports, more := scan(strings.Repeat(one, maxReports+3))
		assert.Len(t, reports, maxReports)
		assert.Equal(t, 3, more)
	})
	t.Run("a panic after an Oops is a report of its own", func(t *testing.T) {
		reports, _ := scan("[ 1.0] Oops: 0000 [#1] SMP\n[ 1.1] RIP: 0010:f+0x0/0x1\n[ 1.2] Kernel panic - not syncing: Fatal exception\n[ 1.3] ---[ end Kernel panic - not syncing: Fatal exception ]---\n")
		require.Len(t, reports, 2)
		assert.Equal(t, "Oops", reports[0].Kind)
		assert.Equal(t, "panic", reports[1].Kind)
		assert.True(t, reports[1].Ended)
	})
}

// TestExplainKernelTrouble: a test binary that passed (or failed) in a VM
// whose kernel reported trouble makes vmrun exit with exitKernelTrouble and
// show the report; benign consoles keep the test's status.
func TestExplainKernelTrouble(t *testing.T) {
	for _, tt := range []struct {
		name    string
		console string
		code    int // the test binary's
		want    int
	}{
		{"benign, pass", benignConsole, 0, 0},
		{"benign, fail", benignConsole, 1, 1},
		{"WARNING, pass", benignConsole + troubleCases[0].console, 0, exitKernelTrouble},
		{"WARNING, fail", benignConsole + troubleCases[0].console, 1, exitKernelTrouble},
		{"RCU stall, pass", benignConsole + troubleCases[10].console, 0, exitKernelTrouble},
	} {
		t.Run(tt.name, func(t *testing.T) {
			res := &vmResult{console: newTailBuffer(64 << 10), final: &vminit.Status{Kind: vminit.Exit, Code: tt.code}}
			_, _ = res.console.Write([]byte(tt.console))
			res.reports, res.moreReports = scan(tt.console)
			var stderr bytes.Buffer
			got := explain(res, &vmConfig{kernel: "/k/bzImage"}, "", false, &stderr)
			assert.Equal(t, tt.want, got, "stderr:\n%s", stderr.String())
			if tt.want == exitKernelTrouble {
				assert.Contains(t, stderr.String(), "kernel report 1 of 1")
				assert.Contains(t, stderr.String(), "  | "+res.reports[0].First())
				assert.Contains(t, stderr.String(), fmt.Sprintf("exited with status %d, but the kernel reported trouble", tt.code))
			} else {
				assert.Empty(t, stderr.String())
			}
		})
	}
	t.Run("no status, earlier WARNING and a panic", func(t *testing.T) {
		console := benignConsole + troubleCases[0].console + "[ 20.0] Kernel panic - not syncing: Fatal exception\n"
		res := &vmResult{console: newTailBuffer(64 << 10), readyAfter: 1}
		_, _ = res.console.Write([]byte(console))
		res.reports, res.moreReports = scan(console)
		var stderr bytes.Buffer
		assert.Equal(t, exitVM, explain(res, &vmConfig{kernel: "/k/bzImage"}, "", false, &stderr))
		assert.Contains(t, stderr.String(), "the kernel reported: Kernel panic - not syncing: Fatal exception")
		assert.Contains(t, stderr.String(), "kernel report 1 of 1 (WARNING)")
	})
}
