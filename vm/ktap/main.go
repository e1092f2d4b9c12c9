// Command ktap prints the results of a Go test binary as KTAP
// (Documentation/dev-tools/ktap.rst in the kernel's tree) and exits with
// kselftest's exit status, so that kernel CI systems that run kselftests
// (the kselftest runner, NIPA, KernelCI, LKFT) can read which test and
// subtest passed, failed or skipped, and why.
//
//	go test -json -run '^TestBusyPoll$' . | go run ./vm/ktap
//	ktap ./test2json -p busypolltest ./busypolltest.test -test.v=test2json
//
// It reads test2json events (go doc cmd/test2json): from its standard input,
// or from the standard output of the command its arguments name. It is a
// converter, not a flag of the test binary, because the events already say
// everything the KTAP needs, for any test binary and without changing one:
// go test -json writes them on a developer's machine, and cmd/test2json (a
// static program built from the Go distribution, which vm/selftest puts
// beside the test binary) writes them where there is no Go toolchain. A
// flag would have to replace the testing package's own reporting from
// inside TestMain, which sees no subtest results. Running the command
// itself (instead of only a pipe) lets a machine without a shell (the
// project's VM) run it, and makes a command that died before its first test
// a failure.
//
// Every test and subtest becomes a KTAP test, numbered from 1 at each
// level, a subtest indented by two spaces under its own version line and
// plan. A skip's reason (the last line it logged) follows "# SKIP"; a failed
// test's output comes as diagnostic lines ("# ...") before its "not ok". A
// test that never ended (a panic, the binary's -test.timeout, a kill) is
// "not ok" with what it printed (the panic) before it. The output is written
// when the events end, because a plan must precede its results and the
// number of subtests is known only then.
//
// Exit status: 0 when something passed and nothing failed, 1 on any
// failure, 4 when everything skipped (KSFT_PASS, KSFT_FAIL, KSFT_SKIP in
// tools/testing/selftests/kselftest.h).
package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
)

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func runMain(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "--" {
		args = args[1:]
	}
	if len(args) > 0 && (args[0] == "-h" || args[0] == "-help" || args[0] == "--help") {
		fmt.Fprintln(stderr, "usage: go test -json ... | ktap\n       ktap COMMAND [ARGS...]   (COMMAND writes test2json events on its stdout)")
		return 2
	}
	if len(args) == 0 {
		ru, err := read(stdin)
		cmdErr := ""
		if err != nil {
			cmdErr = "reading the events: " + err.Error()
		}
		return write(stdout, ru, cmdErr)
	}
	return runCommand(args, stdout, stderr)
}

// runCommand runs args in a process group of its own, reads its events and
// writes KTAP. SIGTERM, SIGINT and SIGHUP (the kselftest runner's timeout
// sends SIGTERM) go on to the whole group; the results so far are written
// once its output ends.
func runCommand(args []string, stdout, stderr io.Writer) int {
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := cmd.StdoutPipe()
	if err == nil {
		err = cmd.Start()
	}
	if err != nil {
		fmt.Fprintf(stdout, "TAP version 13\n1..1\n# %v\nnot ok 1 go-test # ERROR cannot run %s\n", err, args[0])
		return exitFail
	}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	go func() {
		for s := range sigs {
			_ = syscall.Kill(-cmd.Process.Pid, s.(syscall.Signal))
		}
	}()
	ru, rerr := read(out)
	_, _ = io.Copy(io.Discard, out)
	werr := cmd.Wait()
	signal.Stop(sigs)
	cmdErr := ""
	var ee *exec.ExitError
	switch {
	case rerr != nil:
		cmdErr = "reading the events: " + rerr.Error()
	case errors.As(werr, &ee) && ee.ExitCode() == 1 && ru.pkgEnd == "fail":
		// test2json's exit status when the tests failed: the results say why.
	case werr != nil:
		cmdErr = fmt.Sprintf("%s: %v", args[0], werr)
	}
	return write(stdout, ru, cmdErr)
}
