package main

import (
	"bytes"
	"fmt"
	"io"

	"github.com/netdev-go/busypolltest/vm/vminit"
)

// statusFilter forwards the payload port's bytes to out, minus the status
// records of vminit, which it decodes and hands to onStatus. Output is
// forwarded as soon as it arrives, except for a trailing part that could be
// the start of a record (a NUL byte at least), which waits for more.
type statusFilter struct {
	out      io.Writer
	prefix   []byte
	onStatus func(vminit.Status)
	onError  func(error)
	pending  []byte
}

func newStatusFilter(out io.Writer, nonce string, onStatus func(vminit.Status), onError func(error)) *statusFilter {
	return &statusFilter{out: out, prefix: vminit.MarkerPrefix(nonce), onStatus: onStatus, onError: onError}
}

// Write implements io.Writer. It fails only when out fails.
func (f *statusFilter) Write(p []byte) (int, error) {
	f.pending = append(f.pending, p...)
	for {
		i := bytes.Index(f.pending, f.prefix)
		if i < 0 {
			break
		}
		if err := f.emit(f.pending[:i]); err != nil {
			return 0, err
		}
		rest := f.pending[i+len(f.prefix):]
		nl := bytes.IndexByte(rest, '\n')
		if nl < 0 {
			if len(rest) > vminit.MaxRecord {
				f.onError(fmt.Errorf("status record longer than %d bytes (it starts %.60q)", vminit.MaxRecord, rest))
				f.pending = rest
				continue
			}
			f.pending = f.pending[i:]
			return len(p), nil
		}
		if st, err := vminit.Parse(string(rest[:nl])); err != nil {
			f.onError(err)
		} else {
			f.onStatus(st)
		}
		f.pending = rest[nl+1:]
	}
	keep := partialPrefix(f.pending, f.prefix)
	if err := f.emit(f.pending[:len(f.pending)-keep]); err != nil {
		return 0, err
	}
	f.pending = append(f.pending[:0], f.pending[len(f.pending)-keep:]...)
	return len(p), nil
}

func (f *statusFilter) emit(b []byte) error {
	if len(b) == 0 {
		return nil
	}
	_, err := f.out.Write(b)
	return err
}

// Close forwards what is still held back (an unfinished record is output,
// not a status).
func (f *statusFilter) Close() error {
	err := f.emit(f.pending)
	f.pending = nil
	return err
}

// partialPrefix returns the length of the longest suffix of b that is a
// proper prefix of prefix.
func partialPrefix(b, prefix []byte) int {
	n := min(len(b), len(prefix)-1)
	for ; n > 0; n-- {
		if bytes.HasSuffix(b, prefix[:n]) {
			return n
		}
	}
	return 0
}
