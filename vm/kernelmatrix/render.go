package main

import (
	"fmt"
	"io"
	"strings"
)

// Header is what the table's heading says about the run.
type Header struct {
	Date, Took, Load, Command string
}

// WriteMarkdown writes the matrix as Markdown: the heading, what a cell
// means, the table (a row per kernel and backend), the kernels' details and
// the surprises against the version gates.
func WriteMarkdown(w io.Writer, h Header, ks []*Kernel) error {
	var b strings.Builder
	b.WriteString("# Kernel matrix\n\n")
	b.WriteString("`TestBusyPoll` (backends veth and netdevsim) and the kernel tests of the `napi` and `netdevsim`\n")
	b.WriteString("packages, run in the project's QEMU VM on the newest point release of every Debian kernel\n")
	b.WriteString("series that `vm/debian-kernel --list` names (Debian's prebuilt x86-64 kernels, netdevsim built\n")
	b.WriteString("out of tree where a matching `linux-source` package exists).\n\n")
	if h.Date != "" {
		fmt.Fprintf(&b, "- Measured: %s\n", h.Date)
	}
	if h.Command != "" {
		fmt.Fprintf(&b, "- Command: `%s`\n", h.Command)
	}
	if h.Took != "" {
		fmt.Fprintf(&b, "- Took: %s s\n", h.Took)
	}
	if h.Load != "" {
		fmt.Fprintf(&b, "- Load: %s\n", h.Load)
	}
	b.WriteString(`
Each cell is one of:
- **PASS**: the test passed (for a package: every kernel test that ran passed; the subtests that
  skipped are named).
- **SKIP: reason**: the test skipped, and why, in the test's own words: the kernel lacks a
  feature that came in a later Linux version, or has no netdevsim module.
- **FAIL: reason**: the test failed, reported no result, or skipped for a feature that the kernel
  should have by its version ("needs Linux 6.13" on a 6.13 or later kernel is a FAIL, not a skip).
- **—**: nothing ran: the kernel cannot be fetched (Debian's archive lists it, but its packages
  are gone).

The columns plain, suspend, napi_threaded and link_flap are ` + "`TestBusyPoll/BACKEND/SCENARIO`" + `. The
last column summarises a package's tests: the ` + "`napi`" + ` package's (` + "`TestKernel*`" + `, on a veth pair) in
the veth row, the ` + "`netdevsim`" + ` package's (` + "`TestNetdevsimKernel*`" + `) in the netdevsim row.

`)
	b.WriteString("| kernel | backend |")
	for _, sc := range Scenarios {
		fmt.Fprintf(&b, " %s |", sc)
	}
	b.WriteString(" package tests |\n|---|---|")
	for range Scenarios {
		b.WriteString("---|")
	}
	b.WriteString("---|\n")
	for _, k := range ks {
		switch {
		case k.Unfetchable != "":
			fmt.Fprintf(&b, "| %s | — | cannot be fetched: %s |", k.Release, cell(k.Unfetchable))
			b.WriteString(strings.Repeat(" — |", len(Scenarios)) + "\n")
			continue
		case k.Harness != "":
			fmt.Fprintf(&b, "| %s | — | FAIL: %s |", k.Release, cell(k.Harness))
			b.WriteString(strings.Repeat(" — |", len(Scenarios)) + "\n")
			continue
		}
		for _, be := range Backends {
			fmt.Fprintf(&b, "| %s | %s |", k.Release, be)
			for _, c := range k.Rows[be] {
				fmt.Fprintf(&b, " %s |", cell(c.String()))
			}
			b.WriteString("\n")
		}
	}

	b.WriteString("\n## Kernels\n\n")
	b.WriteString("| series | release | Debian version | netdevsim module | napi-set (as the kernel reports it) | fetch s | VM s |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	for _, k := range ks {
		nsim, napiSet := k.Netdevsim, k.NAPISet
		if k.Unfetchable != "" {
			nsim = "—"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s |\n", k.Series, k.Release, k.Version,
			cell(dash(nsim)), cell(dash(napiSet)), dash(k.FetchSecs), dash(k.VMSecs))
	}

	b.WriteString("\n## Against the version gates\n\n")
	b.WriteString("The suite's gates (`napi.Feature.Since`): napi-set with defer-hard-irqs, gro-flush-timeout\n")
	b.WriteString("and irq-suspend-timeout 6.13, threaded 6.17, threaded busy-poll 6.19; EPIOCSPARAMS 6.9.\n")
	any := false
	for _, k := range ks {
		for _, s := range k.Surprises {
			fmt.Fprintf(&b, "- %s: %s\n", k.Release, s)
			any = true
		}
	}
	if !any {
		b.WriteString("Every kernel that ran reported exactly the napi-set features its version gives.\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell escapes what would break a Markdown table cell.
func cell(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	return strings.ReplaceAll(s, "|", `\|`)
}

func dash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}
