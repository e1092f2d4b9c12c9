// Package vminit is the guest side of the busypolltest VM runner: the program
// that runs as /init inside the VM, and the small protocol that it shares with
// the runner on the host (package vm/vmrun).
//
// The runner puts a [Config] into the initramfs at [ConfigPath]. Init runs the
// test binary it names and writes the binary's output, unchanged, to the
// payload serial port. Status records are written in band on that port: each
// starts with [MarkerPrefix] (a NUL byte and a per-run nonce, so that test
// output cannot be mistaken for one) and ends with a newline. The runner strips
// them from the output it forwards.
package vminit

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// ConfigPath is where the runner stores the JSON-encoded [Config] in the
// initramfs.
const ConfigPath = "/vmrun/config.json"

// Config tells init what to run.
type Config struct {
	// Nonce identifies this run's status records; see MarkerPrefix.
	Nonce string `json:"nonce"`
	// Port is the device of the payload serial port, e.g. /dev/ttyS1.
	Port string `json:"port"`
	// Binary is the path of the test binary inside the VM.
	Binary string `json:"binary"`
	// Args are the arguments after the binary path.
	Args []string `json:"args"`
	// Env holds NAME=value pairs added to init's base environment.
	Env []string `json:"env"`
	// Dir is the working directory of the test binary.
	Dir string `json:"dir"`
	// Mkdir lists folders to create after the file systems are mounted,
	// such as the folders of output files named in the test flags.
	Mkdir []string `json:"mkdir,omitempty"`
	// Modules are kernel module files (paths in the VM), in load order:
	// init loads them before it runs anything, and fails the run with the
	// kernel's error if one does not load.
	Modules []string `json:"modules,omitempty"`
	// Jobs, when there are any, make the run a batch: init runs each job's
	// binary in turn, in one boot, instead of Binary. Each job is framed by
	// a Begin and an End record, and the final Exit record says 0 when
	// every job exited 0, else 1.
	Jobs []Job `json:"jobs,omitempty"`
}

// Job is one test binary of a batch run.
type Job struct {
	// Name labels the job in the runner's summary (a package path).
	Name string `json:"name"`
	// Binary is the path of the test binary inside the VM.
	Binary string `json:"binary"`
	// Args are the arguments after the binary path.
	Args []string `json:"args"`
	// Dir is the working directory of the test binary.
	Dir string `json:"dir"`
}

// Kind is the kind of a status record.
type Kind string

// The kinds of status records, in the order init writes them.
const (
	// Ready: init is up and is about to start the test binary.
	Ready Kind = "ready"
	// Exit: the test binary exited; Code is its exit status.
	Exit Kind = "exit"
	// Signal: the test binary was killed; Code is the signal number.
	Signal Kind = "signal"
	// Error: init could not run the test binary; Msg says why.
	Error Kind = "error"
	// Begin: job Job of a batch starts.
	Begin Kind = "begin"
	// End: job Job of a batch ended with exit status Code (128+N when
	// killed by signal N, 125 when it could not start); Msg says how when
	// it did not simply exit.
	End Kind = "end"
)

// Status is one status record.
type Status struct {
	Kind Kind
	Code int    // exit status (Exit, End) or signal number (Signal)
	Msg  string // signal name (Signal), error text (Error), what happened (End)
	Job  int    // the job's index in Config.Jobs (Begin, End)
}

// Final reports whether s ends the run: Exit, Signal and Error do; Ready,
// Begin and End do not.
func (s Status) Final() bool { return s.Kind != Ready && s.Kind != Begin && s.Kind != End }

// String describes s for people.
func (s Status) String() string {
	switch s.Kind {
	case Ready:
		return "init ready"
	case Exit:
		return fmt.Sprintf("exit status %d", s.Code)
	case Signal:
		return fmt.Sprintf("killed by signal %d (%s)", s.Code, s.Msg)
	case Error:
		return "init error: " + s.Msg
	case Begin:
		return fmt.Sprintf("job %d begins", s.Job)
	case End:
		if s.Msg != "" {
			return fmt.Sprintf("job %d ended with exit status %d (%s)", s.Job, s.Code, s.Msg)
		}
		return fmt.Sprintf("job %d ended with exit status %d", s.Job, s.Code)
	}
	return fmt.Sprintf("unknown status %q", string(s.Kind))
}

// MaxRecord is the longest record line (after the prefix) that is accepted.
const MaxRecord = 4096

// MarkerPrefix returns the bytes that start every status record of the run
// with the given nonce.
func MarkerPrefix(nonce string) []byte {
	return []byte("\x00vmrun:" + nonce + ":")
}

// Format encodes s as a complete record (prefix, text, newline).
func Format(nonce string, s Status) []byte {
	var b bytes.Buffer
	b.Write(MarkerPrefix(nonce))
	b.WriteString(string(s.Kind))
	switch s.Kind {
	case Exit:
		fmt.Fprintf(&b, " %d", s.Code)
	case Signal:
		fmt.Fprintf(&b, " %d %s", s.Code, oneLine(s.Msg))
	case Error:
		b.WriteString(" " + oneLine(s.Msg))
	case Begin:
		fmt.Fprintf(&b, " %d", s.Job)
	case End:
		fmt.Fprintf(&b, " %d %d", s.Job, s.Code)
		if s.Msg != "" {
			b.WriteString(" " + oneLine(s.Msg))
		}
	}
	b.WriteByte('\n')
	line := b.Bytes()
	if max := len(MarkerPrefix(nonce)) + MaxRecord; len(line) > max {
		line = append(line[:max-1], '\n')
	}
	return line
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == 0 {
			return ' '
		}
		return r
	}, s)
}

// Parse decodes the text of a record: what follows the prefix, without the
// newline.
func Parse(text string) (Status, error) {
	kind, rest, _ := strings.Cut(text, " ")
	switch Kind(kind) {
	case Ready:
		if rest != "" {
			return Status{}, fmt.Errorf("status record %q: unexpected text after %q", text, kind)
		}
		return Status{Kind: Ready}, nil
	case Exit:
		code, err := strconv.Atoi(rest)
		if err != nil || code < 0 || code > 255 {
			return Status{}, fmt.Errorf("status record %q: exit status must be a number from 0 to 255", text)
		}
		return Status{Kind: Exit, Code: code}, nil
	case Signal:
		num, name, _ := strings.Cut(rest, " ")
		code, err := strconv.Atoi(num)
		if err != nil || code < 1 || code > 64 {
			return Status{}, fmt.Errorf("status record %q: signal must be a number from 1 to 64", text)
		}
		return Status{Kind: Signal, Code: code, Msg: name}, nil
	case Error:
		return Status{Kind: Error, Msg: rest}, nil
	case Begin:
		job, err := strconv.Atoi(rest)
		if err != nil || job < 0 {
			return Status{}, fmt.Errorf("status record %q: job must be a number from 0", text)
		}
		return Status{Kind: Begin, Job: job}, nil
	case End:
		num, rest, _ := strings.Cut(rest, " ")
		code, msg, _ := strings.Cut(rest, " ")
		job, err := strconv.Atoi(num)
		if err != nil || job < 0 {
			return Status{}, fmt.Errorf("status record %q: job must be a number from 0", text)
		}
		c, err := strconv.Atoi(code)
		if err != nil || c < 0 || c > 255 {
			return Status{}, fmt.Errorf("status record %q: exit status must be a number from 0 to 255", text)
		}
		return Status{Kind: End, Job: job, Code: c, Msg: msg}, nil
	}
	return Status{}, fmt.Errorf("status record %q: unknown kind %q", text, kind)
}
